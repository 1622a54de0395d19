"""Model Exchange (FMI 2 and 3) integrated by a solver, FMI 3 early return and event mode in
co-simulation, scheduled execution refused, and FMI 2 + FMI 3 + ME in one MPI run.

The FMUs are hand-written C (tests/fixtures/fmi3): a bouncing ball with a state event (the
bounce), a time event (a kick at t_kick) and a step event (an alarm below h_alarm), as FMI 2
and FMI 3 FMUs with both interfaces. Its co-simulation interface solves each flight in closed
form, so the model exchange results must equal it within the solver's tolerance."""

from __future__ import annotations

import math
import re
import textwrap

import fmu_kit as kit
import numpy as np
import pytest
from test_parallel import cosim, datasets

from cosim.coupling.graph import CouplingGraph
from cosim.describe import check_text, fmu_text
from cosim.errors import ScenarioError
from cosim.fmi.isolation import Isolation
from cosim.fmi.model_exchange import Solver
from cosim.master.description import Settings
from cosim.master.execution import Execution
from cosim.results.reader import open_results
from cosim.results.recorder import Recorder, create_results_file
from cosim.scenario.scenario import build, load_scenario

RECORD = {"b": ["h", "v", "bounces", "alarm"]}
TIGHT = Solver(relative_tolerance=1e-9, absolute_tolerance=1e-12)


def simulate(fmu, tmp_path, name, interface=None, solver=None, isolation=None, stop=3.0):
    graph = CouplingGraph()
    graph.add_instance("b", fmu, interface=interface, solver=solver, isolation=isolation)
    graph.validate()
    execution = Execution(graph, Settings(0.0, stop, 0.01, record=RECORD))
    path = tmp_path / f"{name}.h5"
    with create_results_file(path, {}) as file:
        execution.run([Recorder(file)])
    with open_results(path) as results:  # at the grid: ball3's events add points between
        on_grid = np.abs(np.asarray(results.time) / 0.01 - np.round(np.asarray(results.time)
                                                                    / 0.01)) < 1e-6
        return ({v: np.asarray(results[v])[on_grid] for v in results.variables},
                execution.system.instances["b"])


@pytest.mark.parametrize("name", ["ball2", "ball3"])
def test_model_exchange_equals_the_closed_form_co_simulation(c_test_fmu, tmp_path, name):
    fmu = c_test_fmu(name)
    exact, _ = simulate(fmu, tmp_path, "cs", "co-simulation")
    integrated, instance = simulate(fmu, tmp_path, "me", "model-exchange", TIGHT)
    assert instance.events == {"state": 5, "time": 1, "step": 1, "input": 0}
    np.testing.assert_allclose(integrated["b.h"], exact["b.h"], rtol=0, atol=1e-7)
    np.testing.assert_allclose(integrated["b.v"], exact["b.v"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(integrated["b.bounces"], exact["b.bounces"])
    assert exact["b.bounces"][-1] == 5
    # the step event set the alarm; it is noticed at the end of a solver step, not located
    first = np.argmax(integrated["b.alarm"] > 0)
    assert abs(first - np.argmax(exact["b.alarm"] > 0)) <= 1 and integrated["b.alarm"][-1]


def test_euler_solver_locates_events_to_its_substep(c_test_fmu, tmp_path):
    fmu = c_test_fmu("ball3")
    exact, _ = simulate(fmu, tmp_path, "cs", "co-simulation", stop=1.0)
    coarse, instance = simulate(fmu, tmp_path, "euler", "model-exchange",
                                Solver("euler", max_step=1e-4), stop=1.0)
    assert instance.events["state"] == 1 and instance.events["time"] == 1
    np.testing.assert_allclose(coarse["b.h"], exact["b.h"], rtol=0, atol=2e-3)


def test_fmi3_early_return_and_event_mode_end_the_fmus_step_at_its_events(c_test_fmu,
                                                                          tmp_path):
    early, instance = simulate(c_test_fmu("ball3"), tmp_path, "cs3")
    plain, _ = simulate(c_test_fmu("ball2"), tmp_path, "cs2")  # events handled inside doStep
    assert instance.event_mode_used and instance.early_return_allowed
    times = list(instance.event_times)
    assert times[0] == pytest.approx(math.sqrt(2 / 9.81), abs=1e-12)  # the first bounce
    assert times[1] == 0.6  # the kick, a time event
    assert len(times) == 6 and instance.early_returns >= 4  # within steps, not at their ends
    for name, values in plain.items():
        np.testing.assert_allclose(early[name], values, rtol=0, atol=1e-12)


def test_isolated_model_exchange_equals_in_process(c_test_fmu, tmp_path):
    fmu = c_test_fmu("ball3")
    here, _ = simulate(fmu, tmp_path, "here", "model-exchange", stop=1.0)
    there, _ = simulate(fmu, tmp_path, "there", "model-exchange", stop=1.0,
                        isolation=Isolation("process"))
    for name, values in here.items():
        np.testing.assert_array_equal(there[name], values)


def test_info_describes_model_exchange_and_fmi3_co_simulation(c_test_fmu):
    text = fmu_text(c_test_fmu("ball3"))
    assert "(FMI 3.0 co-simulation, model-exchange)" in text
    assert "model exchange: 2 continuous states, 1 event indicators" in text
    assert "co-simulation: event mode, early return" in text
    assert "(FMI 2.0 co-simulation, model-exchange)" in fmu_text(c_test_fmu("ball2"))


def scenario_file(folder, body: str):
    path = folder / "s.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_scenario_chooses_interface_and_solver(c_test_fmu, tmp_path):
    (tmp_path / "ball.fmu").write_bytes(c_test_fmu("ball2").read_bytes())
    path = scenario_file(tmp_path, """\
        version: 1
        fmus: {ball: ball.fmu}
        instances:
          b:
            fmu: ball
            interface: model-exchange
            solver: {method: euler, max_step: 0.001}
          c: {fmu: ball, interface: model-exchange}
        simulation: {stop: 1, step: 0.1}
        """)
    graph, _ = build(load_scenario(path))
    assert graph.interface("b") == "model-exchange" and graph.interface("c") == "model-exchange"
    assert graph.solver("b") == Solver("euler", max_step=0.001) and graph.solver("c") is None
    bad = scenario_file(tmp_path, """\
        version: 1
        fmus: {ball: ball.fmu}
        instances:
          b:
            fmu: ball
            interface: modelexchange
            solver: {method: rk4, relative_tolerance: -1, order: 2}
        simulation: {stop: 1, step: 0.1}
        """)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(bad)
    text = str(caught.value)
    assert "s.yaml:6: instances.b.interface: unknown interface 'modelexchange'" in text
    assert "s.yaml:7: instances.b.solver.method: unknown solver 'rk4'" in text
    assert "instances.b.solver.relative_tolerance: must be positive" in text
    assert "instances.b.solver.order: unknown key 'order'" in text


def test_scheduled_execution_only_fmu_is_refused_with_the_right_message(c_test_fmu, tmp_path):
    def edit(xml: str) -> str:
        xml = re.sub(r"<ModelExchange.*?/>", "", xml, flags=re.S)
        return re.sub(r"<CoSimulation.*?/>", '<ScheduledExecution modelIdentifier="ball3"/>',
                      xml, flags=re.S)
    kit.rewrite(c_test_fmu("ball3"), tmp_path / "clocked.fmu", edit)
    path = scenario_file(tmp_path, """\
        version: 1
        fmus: {clocked: clocked.fmu}
        instances:
          c: {fmu: clocked}
        simulation: {stop: 1, step: 0.1}
        """)
    with pytest.raises(ScenarioError) as caught:
        build(load_scenario(path))
    text = str(caught.value)
    assert "s.yaml:4" in text and "offers only scheduled execution" in text
    assert "does not support co-simulation" not in text


MIXED = """\
    version: 1
    fmus: {arrays: arrays.fmu, ball2: ball2.fmu, ball3: ball3.fmu}
    instances:
      source: {fmu: arrays, parameters: {f32_in: -0.5, n: 4, u: [1.0, 2.0, 3.0, 4.0]}}
      sink: {fmu: arrays, parameters: {n: 4, gain: 0.5}}
      me2: {fmu: ball2, interface: model-exchange,
            solver: {relative_tolerance: 1.0e-9, absolute_tolerance: 1.0e-12}}
      me3: {fmu: ball3, interface: model-exchange}
      cs2: {fmu: ball2}
      cs3: {fmu: ball3}
    connections:
      - source.y -> sink.u
      - source.f32_out -> me2.a
      - source.f32_out -> me3.a
      - source.f32_out -> cs2.a
      - source.f32_out -> cs3.a
      - cs3.alarm -> sink.flag
    simulation: {stop: 2, step: 0.01, algorithm: gauss-seidel}
    """


def test_fmi2_fmi3_and_model_exchange_mixed_give_identical_results_at_1_and_2_ranks(
        c_test_fmu, tmp_path):
    for name in ("arrays", "ball2", "ball3"):
        (tmp_path / f"{name}.fmu").write_bytes(c_test_fmu(name).read_bytes())
    path = scenario_file(tmp_path, MIXED)
    runs = {}
    for ranks in (None, 2):
        out = tmp_path / f"r{ranks}.h5"
        done = cosim(["run", str(path), "-o", str(out), "--no-plot"], ranks)
        assert done.returncode == 0, done.stderr
        runs[ranks] = datasets(out)
    for name, values in runs[None].items():
        assert np.array_equal(values, runs[2][name]), f"{name} differs with 2 ranks"
    data = runs[None]
    # the grid, and cs3's bounces: its early returns end every instance's step (on both ranks)
    off_grid = np.abs(data["time"] / 0.01 - np.round(data["time"] / 0.01)) > 1e-6
    assert data["sink.y"].shape == (201 + 3, 4) and off_grid.sum() == 3
    np.testing.assert_array_equal(data["sink.y"][-1], [1.0, 2.0, 3.0, 4.0])  # 0.5 * 2 u
    # a = f32_out = -1 m/s2: model exchange (FMI 2) equals the closed form (FMI 2 and 3); the
    # solver restarts at every communication point (a new input value)
    np.testing.assert_allclose(data["me2.h"], data["cs2.h"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(data["cs3.h"], data["cs2.h"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(data["me3.h"], data["cs3.h"], rtol=0, atol=1e-4)
    assert data["cs3.bounces"][-1] >= 3
    text = check_text(path)
    assert "FMI versions: 2.0 (me2, cs2), 3.0 (source, sink, me3, cs3)" in text
    assert "model exchange, integrated by a solver: me2 (cvode), me3 (cvode)" in text
    assert data["sink.not_flag"][0] == 1 and data["sink.not_flag"][-1] == 0  # the alarm arrived
