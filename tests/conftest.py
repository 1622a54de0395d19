"""Shared fixtures: FMUs built from the sources in ``fmus/`` into a temporary folder, once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cosim.build import DEFAULT_DOCS, DEFAULT_SOURCES, build_fmu, model_sources

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def build_model(tmp_path_factory) -> Callable[[str], Path]:
    """``build_model("cell")`` builds ``fmus/cell`` (once per session) and returns the FMU."""
    out = tmp_path_factory.mktemp("fmus")
    cache: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in cache:
            scripts = [s for s in model_sources(DEFAULT_SOURCES) if s.parent.name == name]
            if not scripts:
                raise LookupError(f"no model folder fmus/{name}")
            cache[name] = build_fmu(scripts[0], out, DEFAULT_DOCS / f"{name}.md")
        return cache[name]

    return build
