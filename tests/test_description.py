"""The description of a run (``cosim.master.description``): frozen, typed, made once from a
scenario file
and completed once with what only the FMUs tell; problems of every section in one collector."""

from __future__ import annotations

import dataclasses

import pytest

from cosim.errors import Problems, ScenarioError
from cosim.master.description import FmuSource, Parallel, Settings
from cosim.scenario.cohort import check_cohort, sample_cohort
from cosim.scenario.scenario import build, parse_scenario

SCENARIO = """\
version: 1
fmus:
  oscillator: oscillator
instances:
  left: {fmu: oscillator, parameters: {x0: 1.0}}
  right: {fmu: oscillator}
connections: [left.x -> right.x_other]
simulation: {start: 0, stop: 1, step: 0.01, algorithm: gauss-seidel}
record: {interval: 0.05, variables: [left.*]}
events: [{time: 0.5, set: {left.x_other: 0.5}}]
parallel: {balance: measured, measure_steps: 20}
"""


def test_a_scenario_is_read_into_frozen_typed_values():
    scenario = parse_scenario(SCENARIO)
    assert scenario.fmus == {"oscillator": FmuSource(model="oscillator")}
    assert scenario.parallel == Parallel(balance="measured", measure_steps=20)
    settings = scenario.settings
    assert (settings.start, settings.stop, settings.step, settings.algorithm,
            settings.record_interval) == (0.0, 1.0, 0.01, "gauss-seidel", 0.05)
    assert [(e.time, e.instance, dict(e.values)) for e in settings.events] == [
        (0.5, "left", {"x_other": 0.5})]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.stop = 2.0  # type: ignore[misc]


def test_build_completes_the_settings_with_what_the_fmus_tell_only(tmp_path):
    """``left.*`` becomes the oscillator's outputs; everything else is the file's, as read."""
    scenario = parse_scenario(SCENARIO)
    _, settings = build(scenario)
    assert dict(settings.record) == {"left": ("x", "v")}
    assert dataclasses.replace(settings, record={}, record_reduce={}) == scenario.settings


def test_every_section_reports_into_one_collector_at_its_line():
    text = SCENARIO.replace("step: 0.01", "step: -1").replace(
        "parallel:", "cohort: {method: random, size: 0, seed: 1, parameters: {}}\nparallel:")
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text)
    found = {p.key: p.line for p in caught.value.problems}
    assert found["simulation.step"] == 8
    assert found["cohort.size"] == 11 and "cohort.parameters" in found


def test_a_cohort_checked_alone_reports_the_same_problems():
    problems = check_cohort({"method": "grid", "size": 3}, ".")
    assert isinstance(problems, Problems) and {p.key for p in problems} >= {"cohort.size"}
    with pytest.raises(ScenarioError) as caught:
        sample_cohort({"method": "grid", "size": 3}, ".")
    assert caught.value.problems == list(problems)


def test_settings_are_values():
    one = Settings(0.0, 1.0, 0.1, record={"a": ("x",)})
    assert one == Settings(0.0, 1.0, 0.1, record={"a": ("x",)}) and one.steps == 10
