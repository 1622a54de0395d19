"""What FMUs say and print goes to the results file's log, bounded, never to the terminal
(issue 14 §6). Before: fmi2Warning was kept only in memory (the last 50 lines, quoted if the run
failed), log messages likewise, and an FMU printing 100 000 lines printed them all to the
user's terminal.

``chatty.fmu`` (tests/fixtures/chatty_c) prints, logs and warns on request; ``PrintingModel``
is a pythonfmu FMU whose ``print`` goes through Python's ``sys.stdout``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import hostile_kit as hk  # tests/hostile_kit.py
import pytest

from cosim.fmi.capture import KEEP_LINES
from cosim.fmi.fmu import KEEP_MESSAGES
from cosim.results.reader import open_results
from cosim.running.pipeline import run_scenario

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fmu_output")
    hk.build_chatty(folder)
    hk.build_printing_model(folder)
    return folder


def scenario(folder: Path, name: str, instances: str, stop: float = 0.1, extra: str = ""
             ) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text("version: 1\nfmus:\n  chatty: chatty.fmu\n  printer: PrintingModel.fmu\n"
                    f"instances:\n{instances}"
                    f"simulation: {{start: 0, stop: {stop}, step: 0.01}}\n{extra}",
                    encoding="utf-8")
    return path


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_warnings_reach_the_log_with_their_time(folder, tmp_path, isolation):
    path = scenario(folder, f"warning_{isolation}", "  noisy: {fmu: chatty, isolation: "
                    f"{isolation}, parameters: {{warn: true}}}}\n")
    run_scenario(path, tmp_path / "warning.h5", plot=False)
    with open_results(tmp_path / "warning.h5") as res:
        assert res.status == "completed"  # a warning is not an error
        messages = res.messages("noisy")
        category = "fmi2DoStep" if isolation == "none" else ""  # relayed as text by the child
        assert [m[1:3] for m in messages] == [("warning", category)] * 10
        assert [round(m[0], 9) for m in messages] == [round(0.01 * n, 9) for n in range(10)]
        assert messages[0][3] == "fmi2DoStep returned fmi2Warning"
        assert res.file["log/instances/noisy"].attrs["messages"] == 10


def test_a_log_flood_is_kept_within_bounds_and_escaped(folder, tmp_path):
    path = scenario(folder, "log_flood", "  noisy: {fmu: chatty, parameters: {log_lines: 100}}\n"
                    "  quiet: {fmu: chatty}\n", stop=1.0)
    run_scenario(path, tmp_path / "log_flood.h5", plot=False)
    with open_results(tmp_path / "log_flood.h5") as res:
        messages = res.messages("noisy")
        attrs = res.file["log/instances/noisy"].attrs
        assert (attrs["messages"], attrs["dropped"]) == (10_000, 10_000 - 2 * KEEP_MESSAGES)
        assert len(messages) == 2 * KEEP_MESSAGES
        assert messages[0][0] == 0.0 and messages[-1][0] == pytest.approx(0.99)
        text = messages[0][3]
        assert text == "message at t = 0: \\x1b[2J\\x1b[31mred\\x1b[0m"  # no raw escape
        assert (messages[0][1], messages[0][2]) == ("ok", "logAll")
        assert res.messages("quiet") == []


def test_each_cohort_member_keeps_its_own_log(folder, tmp_path):
    path = scenario(folder, "cohort", "  noisy: {fmu: chatty}\n", extra=(
        "cohort:\n  method: grid\n  parameters:\n    noisy.log_lines: {values: [1, 3]}\n"))
    run_scenario(path, tmp_path / "cohort.h5", plot=False)
    with open_results(tmp_path / "cohort.h5") as res:
        counts = []
        for member in res.members:
            with res.member(member) as m:
                counts.append(len(m.messages("noisy")))
    assert counts == [10, 30]


def cosim(args: list[str], ranks: int | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "cosim.cli", *args]
    if ranks:
        command = [str(BIN / "mpiexec"), "-n", str(ranks), *command]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)


def test_a_print_flood_reaches_the_log_not_the_terminal(folder, tmp_path):
    """100 000 lines of printf (half to stderr) and 1000 of Python print during a run."""
    path = scenario(folder, "print_flood",
                    "  noisy: {fmu: chatty, parameters: {print_lines: 1000}}\n"
                    "  printer: {fmu: printer, parameters: {lines: 10}}\n", stop=1.0)
    output = tmp_path / "print_flood.h5"
    result = cosim(["run", str(path), "-o", str(output), "--no-plot"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"results: {output}\n" and result.stderr == ""
    with open_results(output) as res:
        lines = res.output
        printed = int(res.file["log/output"].attrs["lines"])
    assert printed == 100 * 1000 + 100 * 10
    assert len(lines) == 2 * KEEP_LINES + 1 and "lines left out" in lines[KEEP_LINES]
    assert lines[0] == "chatty noisy: t = 0, line 0"
    assert any(line.startswith("printing model: t = 0.99, line") for line in lines[-10:])


@pytest.mark.mpi
def test_under_mpi_every_rank_writes_its_log_into_the_one_file(folder, tmp_path):
    path = scenario(folder, "mpi_flood",
                    "  a: {fmu: chatty, parameters: {print_lines: 20, warn: true}}\n"
                    "  b: {fmu: chatty, parameters: {print_lines: 30, log_lines: 1}}\n",
                    extra="parallel: {group_size: 2}\n")
    output = tmp_path / "mpi_flood.h5"
    result = cosim(["run", str(path), "-o", str(output), "--no-plot"], ranks=2)
    assert result.returncode == 0, result.stderr
    assert "chatty" not in result.stdout + result.stderr
    with open_results(output) as res:
        assert res.attrs["mpi_ranks"] == 2 and res.status == "completed", res.attrs
        assert len(res.messages("a")) == 10 and len(res.messages("b")) == 10
        printed = int(res.file["log/output"].attrs["lines"])
        lines = res.output
    chatty = sorted(line.split(":")[0] for line in lines if line.startswith("chatty"))
    assert chatty == ["chatty a"] * 200 + ["chatty b"] * 300, lines[:5]
    assert printed == len(lines) >= 500  # (anything else a rank printed is kept too)
