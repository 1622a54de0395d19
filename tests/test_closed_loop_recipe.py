"""docs/closed-loop.md stays true: its connection blocks are the shipped closed loops'."""

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def blocks() -> list[list[str]]:
    text = (REPO / "docs" / "closed-loop.md").read_text(encoding="utf-8")
    return [yaml.safe_load(b)["connections"] for b in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def connections(scenario: str) -> list[str]:
    data = yaml.safe_load((REPO / "scenarios" / scenario).read_text(encoding="utf-8"))
    return [" ".join(c.split()) for c in data["connections"]]


def test_the_recipe_is_the_flagships_and_the_ddd_loops_wiring():
    ventricle, atrium = blocks()
    assert [" ".join(c.split()) for c in ventricle] == connections("vvi_complete_av_block.yaml")
    assert sorted(" ".join(c.split()) for c in ventricle + atrium) == sorted(
        connections("ddd_av_block_sinus.yaml"))
