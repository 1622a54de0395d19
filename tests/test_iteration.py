"""Iterative coupling (cosim/master/iteration.py): the gain loop y = k·u + 1 (tests/fakes.py),
whose one-step delay converges slowly for k = 0.5 and diverges for k = 2, solved in every step
to its algebraic solution 1 / (1 - k)."""

from __future__ import annotations

import fakes  # tests/fakes.py
import h5py
import numpy as np
import pytest

from cosim.coupling.graph import CouplingGraph
from cosim.errors import ScenarioError, SimulationError
from cosim.master.description import Iteration, Settings
from cosim.master.execution import Execution
from cosim.results.recorder import write_master
from cosim.scenario.scenario import load_scenario


def loop(k: float, **options) -> CouplingGraph:
    graph = CouplingGraph()
    model = fakes.gain("g", k)
    if options:
        model = fakes.FakeModel(model.name, inputs=model.inputs, outputs=model.outputs,
                                parameters=model.parameters, feedthrough=model.feedthrough,
                                compute=model.compute, **options)
    graph.add_instance("g", fakes.fmu(model))
    graph.connect("g.y", "g.u")
    graph.validate()
    return graph


def run_loop(graph: CouplingGraph, iteration: Iteration | None) -> tuple[Execution, list]:
    values = []

    class Trace:
        def started(self, run: Execution) -> None:
            self.signals, self.slot = run.system.signals, run.layout.index("g", "y")

        def stepped(self, time: float) -> None:
            values.append(self.signals[self.slot])

        def finished(self, error) -> None:
            pass

    execution = Execution(graph, Settings(0.0, 0.5, 0.01, iteration=iteration),
                          instances=fakes.instances)
    execution.run([Trace()])
    return execution, values


@pytest.mark.parametrize("method", ["aitken", "iqn-ils"])
@pytest.mark.parametrize("k", [0.5, 2.0])
def test_the_gain_loop_converges_to_its_algebraic_solution_in_every_step(method, k):
    execution, values = run_loop(loop(k), Iteration(method=method, tolerance=1e-10))
    solution = 1.0 / (1.0 - k)
    after_steps = np.array(values[1:])  # the first point: initialisation (3 passes)
    assert len(after_steps) == 50
    np.testing.assert_allclose(after_steps, solution, rtol=0, atol=1e-10 * abs(solution))
    log = execution.master.log
    assert len(log.iterations) == 50 and min(log.iterations) >= 1
    assert max(log.errors) <= 1e-10 * max(1.0, abs(solution))
    if method == "iqn-ils":  # a linear loop: exact after one secant update
        assert max(log.iterations) <= 3
    assert list(write_master_columns(execution)["iterations"]) == log.iterations


def write_master_columns(execution: Execution) -> dict:
    with h5py.File("in-memory.h5", "w", driver="core", backing_store=False) as file:
        write_master(file, execution)
        return {name: file["master"][name][:] for name in file["master"]}


def test_the_one_step_delay_is_what_iteration_replaces():
    """Without iteration the loop with k = 0.5 approaches its solution only through the
    delay (halving the distance per step: off by more than 1e-3 after 3 steps), and k = 2
    grows without bound."""
    _, slow = run_loop(loop(0.5), None)
    assert abs(slow[4] - 2.0) > 1e-3
    _, wild = run_loop(loop(2.0), None)
    assert abs(wild[-1]) > 1e15  # doubled every step


def test_plain_fixed_point_iteration_of_a_gain_of_2_stops_with_a_message():
    with pytest.raises(SimulationError, match=r"g\.y = .* did not converge|did not converge "
                       r"in 50 iterations \(constant\): g\.y"):
        run_loop(loop(2.0), Iteration(method="constant", relaxation=1.0))


def test_an_fmu_without_state_is_named_before_the_run():
    with pytest.raises(SimulationError, match="cannot get and set its state") as caught:
        run_loop(loop(0.5, can_get_and_set_state=False), Iteration())
    assert caught.value.instance == "g"


def test_the_iteration_section_is_read_and_its_mistakes_named(tmp_path):
    path = tmp_path / "s.yaml"

    def write(iteration: str) -> None:
        path.write_text(f"""\
version: 1
fmus: {{generator: generator}}
instances:
  pacemaker: {{fmu: generator}}
simulation: {{start: 0, stop: 1, step: 0.001, iteration: {iteration}}}
""")

    write("{method: aitken, tolerance: 1e-9, max_iterations: 20, relaxation: 0.3}")
    assert load_scenario(path).settings.iteration == Iteration("aitken", 1e-9, 20, 0.3)
    write("{method: newton, max_iterations: 0}")
    with pytest.raises(ScenarioError, match="simulation.iteration.method: unknown method "
                                            "'newton'"):
        load_scenario(path)
