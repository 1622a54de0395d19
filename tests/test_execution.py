"""The execution: what it builds (plan, system, master, exchange) and how it drives them."""

from __future__ import annotations

import itertools

import fmu_kit as kit  # tests/fmu_kit.py
import numpy as np
import pytest

from cosim.description import Event, Settings
from cosim.execution import Execution
from cosim.graph import CouplingGraph


@pytest.fixture(scope="module")
def two_mass(tmp_path_factory) -> CouplingGraph:
    folder = tmp_path_factory.mktemp("execution")
    graph = CouplingGraph()
    graph.add_instance("m1", kit.build_c_model("mass1", folder), parameters={"x1_0": 1.0})
    graph.add_instance("m2", kit.build_c_model("mass2", folder))
    graph.connect("m1.x1", "m2.x1")
    graph.connect("m1.v1", "m2.v1")
    graph.connect("m2.F", "m1.F")
    graph.validate()
    return graph


@pytest.fixture(scope="module")
def stopper(tmp_path_factory):
    return kit.build_c_model("stopper", tmp_path_factory.mktemp("stopper"))


def test_the_exchange_is_made_with_the_execution_and_follows_every_stage(two_mass):
    """The exchange (MPI: the values crossing ranks) is built from the execution's plan and
    system when the execution is, and called after every stage, in the plan's order."""
    made, exchanged = [], []

    def exchange(plan, system):
        made.append((plan, system))
        return exchanged.append

    execution = Execution(two_mass, Settings(0.0, 0.03, 0.01), exchange=exchange)
    assert made == [(execution.plan, execution.system)]
    execution.run()
    plan = execution.plan
    setup = list(range(len(plan.initial) + len(plan.start)))
    step = list(range(len(setup), len(plan.stages)))
    assert step and exchanged == setup + step * 3


class UnevenMaster:
    """A variable-step master for the test: steps of 3 ms and 7 ms in turn, each shortened to
    land exactly on ``until``; every instance steps with the inputs of the point it starts at."""

    def __init__(self, system, plan, start, step_size, **_):
        self.system, self.plan, self.start, self.ended = system, plan, start, []
        self.sizes = itertools.cycle([0.003, 0.007])
        self.asked: list[float] = []
        self.busy: dict[str, float] = {}

    def reset_busy(self) -> None:
        pass

    def landing(self, time: float) -> float:
        return time

    def initialize(self, stop: float | None) -> None:
        for instance in self.system.instances.values():
            instance.setup_experiment(self.start, stop)
            instance.enter_initialization_mode()
            instance.exit_initialization_mode()
            instance.get_outputs()

    def advance(self, time: float, until: float) -> float:
        self.asked.append(until)
        size = next(self.sizes)
        lands = time + size >= until
        if lands:
            size = until - time
        for name, instance in self.system.instances.items():
            self.system.gather(name)
            instance.do_step(time, size)
            instance.get_outputs()
        return until if lands else time + size


def test_a_master_choosing_its_own_steps_drives_events_and_recording_by_time(tmp_path,
                                                                           stopper):
    """Events, observers and the recorder speak time: a master of uneven steps is asked to
    land on the event's time and does; the input set there acts from that point on; a row is
    recorded at the first point at or after each multiple of the record interval."""
    from cosim.recorder import Recorder, create_results_file
    from cosim.results import open_results

    graph = CouplingGraph()
    graph.add_instance("s", stopper, parameters={"t_end": 10.0})
    settings = Settings(0.0, 0.05, 0.001, record={"s": ("clock", "echo")},
                        record_interval=0.01, events=(Event(0.0105, "s", {"u": 5.0}),))
    times: list[float] = []

    class Times:
        def started(self, run) -> None:
            pass

        def stepped(self, time: float) -> None:
            times.append(time)

        def finished(self, error) -> None:
            assert error is None

    execution = Execution(graph, settings, master=UnevenMaster)
    with create_results_file(tmp_path / "uneven.h5", {}) as file:
        execution.run([Recorder(file), Times()])
    asked = execution.master.asked
    assert asked[:3] == [0.0105] * 3 and set(asked[3:]) == {0.05}
    assert 0.0105 in times and times[-1] == 0.05
    assert np.allclose(np.diff(times)[:2], [0.003, 0.007])
    with open_results(tmp_path / "uneven.h5") as res:
        due = [next(t for t in times if t >= k * 0.01 - 1e-12) for k in range(6)]
        assert list(res.time) == due
        assert np.array_equal(res["s.clock"], res.time)  # the FMU went where the master said
        echo = dict(zip(res.time, res["s.echo"], strict=True))
        assert [echo[t] for t in due] == [0.0, 0.0, 5.0, 5.0, 5.0, 5.0]
