"""FMI 3 events through FMI 3's own mechanism (issue 17 item 4): an FMU returning early from
fmi3DoStep (earlyReturn, lastSuccessfulTime) ends the communication step of every instance
there; the others are rolled back (FMU state) and stepped to the same time.

Two hand-written C bouncing balls (tests/fixtures/fmi3/ball3), at g = 9.81 and g = 5, each
bouncing off the 0.05 s grid (b2 kicked after the run): a step that one ball ended early and the
other took whole, or took twice, would show in the other's flight."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cosim.coupling.graph import CouplingGraph
from cosim.master.description import Settings
from cosim.master.execution import Execution
from cosim.results.reader import open_results
from cosim.results.recorder import Recorder, create_results_file

STEP = 0.05
FIRST = math.sqrt(2 / 9.81)  # b1's first bounce: h = 1 - g t^2 / 2 = 0
SECOND = math.sqrt(2 / 5.0)  # b2's


def run_balls(fmu, tmp_path):
    graph = CouplingGraph()
    graph.add_instance("b1", fmu)
    graph.add_instance("b2", fmu, parameters={"g": 5.0, "t_kick": 5.0})
    graph.validate()
    execution = Execution(graph, Settings(0.0, 0.7, STEP,
                                          record={"b1": ["h", "v"], "b2": ["h", "v"]}))
    path = tmp_path / "balls.h5"
    with create_results_file(path, {}) as file:
        execution.run([Recorder(file)])
    with open_results(path) as results:
        values = {v: np.asarray(results[v]) for v in results.variables}
        time = np.asarray(results.time)
    return time, values, execution.system.instances


def test_an_early_return_ends_every_instances_step_at_the_event(c_test_fmu, tmp_path):
    time, values, instances = run_balls(c_test_fmu("ball3"), tmp_path)
    # the communication points include both bounces, exactly, besides the grid
    assert np.min(np.abs(time - FIRST)) < 1e-12
    assert np.min(np.abs(time - SECOND)) < 1e-12
    assert instances["b1"].event_times[0] == pytest.approx(FIRST, abs=1e-12)
    assert instances["b2"].event_times[0] == pytest.approx(SECOND, abs=1e-12)
    # the bounce is seen at its point: the ball is on the ground, moving up after it
    at = int(np.argmin(np.abs(time - FIRST)))
    assert abs(values["b1.h"][at]) < 1e-12 and values["b1.v"][at] > 0
    # b2, rolled back and stepped to b1's bounce, is still in free fall there: its flight is
    # the closed form at every point before its own bounce (a double step would show)
    before = time < SECOND - 1e-12
    np.testing.assert_allclose(values["b2.h"][before], 1 - 2.5 * time[before] ** 2,
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(values["b2.v"][before], -5 * time[before], rtol=0, atol=1e-12)
