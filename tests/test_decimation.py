"""Recording at an interval keeps one-step events (cosim.scenario.decimation, ``record.reduce``).

The pacemaker alone, VOO at a 999 ms interval: a pace every 999 steps of 1 ms, so at a 2 ms
record interval every other pace falls between two recorded points. ``marker == 3`` during the
step of a pace and ``V_pace_v`` > 0 during it are one-step events.
"""

from __future__ import annotations

import numpy as np
import pytest

from cosim.errors import ScenarioError
from cosim.results.reader import open_results
from cosim.running.pipeline import run_scenario
from cosim.scenario import decimation
from cosim.scenario.scenario import build, load_scenario

PACES = 22
SCENARIO = """\
version: 1
fmus: {generator: generator}
instances:
  pacemaker: {fmu: generator, parameters: {mode: 1, lower_rate: 60.06006006006006}}
simulation: {stop: 22.0, step: 0.001}
record:
  interval: 0.002
  variables: [pacemaker.marker, pacemaker.vp_count, pacemaker.V_pace_v, pacemaker.pacing_rate]
"""


def run(tmp_path, reduce: str = "", name: str = "pace") -> dict:
    scenario = tmp_path / f"{name}.yaml"
    scenario.write_text(SCENARIO + (f"  reduce: {reduce}\n" if reduce else ""),
                        encoding="utf-8")
    with open_results(run_scenario(scenario, tmp_path / f"{name}.h5", plot=False).results) as res:
        return {v.partition(".")[2]: res[v] for v in res.variables} | {
            "time": res.time, "reduction": {v.partition(".")[2]: res.file[
                f"instances/pacemaker/{v.partition('.')[2]}"].attrs.get("reduction")
                for v in res.variables}}


def test_discrete_outputs_keep_every_one_step_event_by_default(tmp_path):
    default = run(tmp_path)
    assert default["vp_count"][-1] == PACES
    assert np.count_nonzero(default["marker"] == 3) == PACES  # each pace in its interval
    assert default["reduction"]["marker"] == "event"
    np.testing.assert_array_equal(np.diff(default["vp_count"]) >= 0, True)  # counter intact
    assert default["reduction"]["pacing_rate"] is None  # continuous: sampled ("last")
    assert default["reduction"]["V_pace_v"] == "event"  # a pulse, declared discrete
    assert np.count_nonzero(default["V_pace_v"]) == PACES  # every pulse kept
    plain = run(tmp_path, "{discrete: last}", "plain")  # what a plain sample keeps
    assert np.count_nonzero(plain["marker"] == 3) == PACES // 2
    assert np.count_nonzero(plain["V_pace_v"]) == PACES // 2  # a sampled pulse: half lost
    np.testing.assert_array_equal(plain["vp_count"], default["vp_count"])


def test_max_any_and_precedence_of_a_named_variable(tmp_path):
    reduced = run(tmp_path, "{pacemaker.V_pace_v: max, pacemaker.*: any, discrete: last}")
    assert reduced["reduction"] == {"marker": "any", "vp_count": "any", "V_pace_v": "max",
                                    "pacing_rate": "any"}
    assert np.count_nonzero(reduced["V_pace_v"]) == PACES  # every pulse, at its amplitude
    assert set(reduced["V_pace_v"]) == {0.0, 3.5}
    assert np.count_nonzero(reduced["marker"]) == PACES and set(reduced["marker"]) == {0, 1}


def test_reductions_over_an_interval_of_steps():
    """Each mode over the points of one interval (the recorder's calls, by hand)."""
    series = np.array([[0.0, 3.0, 0.0, 4.0, 0.0],  # an event channel
                       [1.0, -2.0, 5.0, 0.5, 2.0]])  # a continuous value
    row = np.zeros(2)
    expected = {"max": [4.0, 5.0], "min": [0.0, -2.0], "any": [1.0, 1.0], "event": [4.0, 2.0]}
    for mode, want in expected.items():
        (reduction,) = decimation.reductions({mode: ([0, 1], [0, 1])})
        for point in series.T:
            decimation.accumulate(reduction, point)
        decimation.emit(reduction, row)
        np.testing.assert_array_equal(row, want, err_msg=mode)
        decimation.accumulate(reduction, np.zeros(2))  # the next interval starts afresh
        decimation.emit(reduction, row)
        np.testing.assert_array_equal(row, [0.0, 0.0], err_msg=mode)


def test_every_step_recorded_reduces_nothing(tmp_path):
    scenario = tmp_path / "every.yaml"
    scenario.write_text(SCENARIO.replace("interval: 0.002", "interval: 0.001")
                        + "  reduce: {discrete: max}\n", encoding="utf-8")
    _, settings = build(load_scenario(scenario))
    assert settings.record_every == 1
    with open_results(run_scenario(scenario, tmp_path / "every.h5", plot=False).results) as res:
        assert "reduction" not in res.file["instances/pacemaker/marker"].attrs
        assert np.count_nonzero(res["pacemaker.marker"] == 3) == PACES


@pytest.mark.parametrize("reduce, message", [
    ("{pacemaker.marker: mean}", "record.reduce.pacemaker.marker: unknown reduction 'mean'"),
    ("{discret: max}", "'discret' is not 'instance.variable', 'instance.*' or a kind"),
    ("{heart.*: max}", "record.reduce.heart.*: unknown instance 'heart'"),
    ("{pacemaker.nope: max}", "has no variable 'nope'"),
    ("[max]", "record.reduce: must be a mapping"),
])
def test_reduce_mistakes_are_named_with_their_line(tmp_path, reduce, message):
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(SCENARIO + f"  reduce: {reduce}\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        build(load_scenario(scenario))
    text = str(caught.value)
    assert message in text and ":9" in text, text
