"""Wrong scenarios: one clear message with file, line and key, from the library and the CLI.

Each case is a complete scenario whose faulty line is marked ``# <-``; the test finds that line
in the text, so the expected line number is where the mistake is written. Every case goes
through ``load_scenario``/``build`` (ScenarioError with one Problem at that line) and through
``cosim check`` (exit code 1, one message naming file:line and key, no traceback).
"""

from __future__ import annotations

from pathlib import Path

import fmu_kit as kit  # tests/fmu_kit.py: FMUs and broken archives for tests
import pytest

from cosim import cli
from cosim.errors import ScenarioError
from cosim.scenario.scenario import build, load_scenario

HEAD = """\
version: 1
fmus:
  osc: c_oscillator.fmu
  typed: typed.fmu
instances:
  left: {fmu: osc}
  right: {fmu: osc}
  t: {fmu: typed}
"""
LINKS = """\
connections:
  - left.x -> right.x_other
  - right.x -> left.x_other
"""
SIMULATION = "simulation: {start: 0, stop: 0.1, step: 0.01}\n"

# case: (scenario text, key, message, stage where it is found)
CASES = {
    "unknown FMU file": (
        HEAD.replace("osc: c_oscillator.fmu", "osc: missing.fmu  # <-") + LINKS + SIMULATION,
        "fmus.osc", "FMU file not found: ", "load"),
    "unknown library model": (
        HEAD.replace("osc: c_oscillator.fmu", "osc: no_such_model  # <-") + LINKS + SIMULATION,
        "fmus.osc", "'no_such_model' is neither an .fmu file nor a model of the library",
        "load"),
    "unknown variable": (
        HEAD + "connections:\n  - left.xx -> right.x_other  # <-\n" + SIMULATION,
        "connections.0", "the FMU COscillator of 'left' has no variable 'xx' (did you mean "
        "'x'?)", "build"),
    "unknown instance": (
        HEAD + "connections:\n  - lft.x -> right.x_other  # <-\n" + SIMULATION,
        "connections.0", "unknown instance 'lft' (did you mean 'left'?)", "build"),
    "input to input": (
        HEAD + "connections:\n  - left.x_other -> right.x_other  # <-\n" + SIMULATION,
        "connections.0", "'left.x_other' is an input, not an output", "build"),
    "type mismatch": (
        HEAD + LINKS + "  - left.x -> t.enable  # <-\n" + SIMULATION,
        "connections.2", "type mismatch: left.x is Real, t.enable is Boolean", "build"),
    "unit mismatch": (
        HEAD + "connections:\n  - left.v -> right.x_other  # <-\n" + SIMULATION,
        "connections.0", "unit mismatch: left.v is in m/s, right.x_other is in m", "build"),
    "double-fed input": (
        HEAD + LINKS + "  - t.x -> right.x_other  # <-\n" + SIMULATION,
        "connections.2", "input right.x_other is fed twice: already by left.x (line 10)",
        "build"),
    "negative step": (
        HEAD + LINKS + "simulation:\n  stop: 1.0\n  step: -0.01  # <-\n",
        "simulation.step", "must be positive, got -0.01", "load"),
    "stop before start": (
        HEAD + LINKS + "simulation:\n  start: 1.0\n  stop: 0.5  # <-\n  step: 0.01\n",
        "simulation.stop", "stop (0.5 s) must be after start (1 s)", "load"),
    "step does not divide the run": (
        HEAD + LINKS + "simulation:\n  stop: 0.1\n  step: 0.03  # <-\n",
        "simulation.step", "is not a whole number of steps of 0.03 s", "load"),
    "YAML syntax error": (
        HEAD.replace("  right: {fmu: osc}", "  right: fmu: osc  # <-") + LINKS + SIMULATION,
        None, "not valid YAML: mapping values are not allowed here", "load"),
    "unknown section": (
        HEAD + LINKS + SIMULATION + "outputs: [left.x]  # <-\n",
        "outputs", "unknown section 'outputs'", "load"),
    "missing version": (
        HEAD.replace("version: 1\nfmus:", "fmus:  # <-") + LINKS + SIMULATION,
        "version", "version must be 1, got None", "load"),
    "duplicate key": (
        HEAD + "  left: {fmu: typed}  # <-\n" + LINKS + SIMULATION,
        "instances.left", "'left' appears twice", "load"),
    "record of an unknown variable": (
        HEAD + LINKS + SIMULATION + "record:\n  - left.x\n  - left.nope  # <-\n",
        "record.1", "the FMU COscillator of 'left' has no variable 'nope'", "build"),
    "record entry that is not a variable": (
        HEAD + LINKS + SIMULATION + "record:\n  interval: 0.02\n  variables:\n"
        "    - left.x\n    - leftx  # <-\n",
        "record.variables.1", "not 'instance.variable': 'leftx'", "load"),
    "event on a connected input": (
        HEAD + LINKS + SIMULATION + "events:\n  - {time: 0.05, set: {right.x_other: 1.0}}  # <-\n",
        "events.0", "'right.x_other' is fed by a connection", "build"),
    "event on a fixed parameter": (
        HEAD + LINKS + SIMULATION + "events:\n  - {time: 0.05, set: {left.m: 2.0}}  # <-\n",
        "events.0", "'left.m' cannot change during a run (parameter, fixed)", "build"),
    "criterion on an unknown signal": (
        HEAD + LINKS + SIMULATION + "criteria:\n  - name: bounded\n"
        "    signal: left.nope  # <-\n    measure: max\n    max: 1.0\n",
        "criteria.0.signal", "the FMU COscillator of 'left' has no variable 'nope'", "build"),
    "criterion with an unknown measure": (
        HEAD + LINKS + SIMULATION + "criteria:\n  - name: bounded\n    signal: left.x\n"
        "    measure: median  # <-\n    max: 1.0\n",
        "criteria.0.measure", "unknown measure 'median'", "load"),
    "unknown parallel key": (
        HEAD + LINKS + SIMULATION + "parallel:\n  group-size: 2  # <-\n",
        "parallel.group-size", "unknown key 'group-size'", "load"),
    "unknown balance": (
        HEAD + LINKS + SIMULATION + "parallel:\n  balance: dynamic  # <-\n",
        "parallel.balance", "unknown balance 'dynamic'", "load"),
    "pilot of no steps": (
        HEAD + LINKS + SIMULATION + "parallel:\n  balance: measured\n  measure_steps: 0  # <-\n",
        "parallel.measure_steps", "measure_steps must be a whole number ≥ 1, got 0", "load"),
}



@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A folder holding c_oscillator.fmu and typed.fmu, where the scenarios are written."""
    folder = tmp_path_factory.mktemp("scenario_errors")
    c_fmu = kit.build_c_oscillator(folder)
    kit.typed_variant(c_fmu, folder / "typed.fmu")
    return folder


def write_case(folder: Path, case: str) -> tuple[Path, int]:
    text = CASES[case][0]
    marked = [i for i, line in enumerate(text.splitlines(), 1) if line.endswith("# <-")]
    assert len(marked) == 1, "a case marks exactly one line"
    path = folder / (case.replace(" ", "_") + ".yaml")
    path.write_text(text, encoding="utf-8")
    return path, marked[0]


def test_the_base_scenario_is_correct(folder, capsys):
    path = folder / "base.yaml"
    path.write_text(HEAD + LINKS + SIMULATION, encoding="utf-8")
    build(load_scenario(path))
    assert cli.main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "OK — 3 instances, 2 connections, 10 steps of 0.01 s (jacobi)" in out
    assert "inputs left unconnected (they keep their start values): t.x_other, t.enable" in out


@pytest.mark.parametrize("case", CASES)
def test_wrong_scenario_raises_one_located_problem(folder, case):
    path, line = write_case(folder, case)
    _, key, message, stage = CASES[case]
    if stage == "load":
        with pytest.raises(ScenarioError) as caught:
            load_scenario(path)
    else:
        scenario = load_scenario(path)
        with pytest.raises(ScenarioError) as caught:
            build(scenario)
    problems = caught.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    problem = problems[0]
    assert (problem.file, problem.line, problem.key) == (str(path), line, key)
    assert message in problem.message
    assert problem.hint  # every message says what to do


@pytest.mark.parametrize("case", CASES)
def test_cosim_check_prints_one_located_message(folder, case, capsys):
    path, line = write_case(folder, case)
    _, key, message, _ = CASES[case]
    assert cli.main(["check", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    head = f"error: {path}:{line}: " + (f"{key}: " if key else "")
    assert captured.err.startswith(head + message) or (
        captured.err.startswith(head) and message in captured.err)
    assert "Traceback" not in captured.err and "problems found" not in captured.err
    assert captured.err.count("error: ") == 1


def test_several_mistakes_are_reported_together(folder, capsys):
    path = folder / "many.yaml"
    path.write_text(HEAD + "connections:\n  - left.xx -> right.x_other\n"
                    "  - left.v -> t.x_other\n" + SIMULATION, encoding="utf-8")
    assert cli.main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 2 problems found:\n  1. ")
    assert f"{path}:10: connections.0:" in err and f"{path}:11: connections.1:" in err


def test_missing_scenario_file(tmp_path, capsys):
    assert cli.main(["check", str(tmp_path / "absent.yaml")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'absent.yaml'}: no such scenario file\n"
