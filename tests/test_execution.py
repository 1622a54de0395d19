"""The execution: what it builds (plan, system, master, exchange) and how it drives them; fake
instances in memory (tests/fakes.py), no FMU build."""

from __future__ import annotations

import itertools

import fakes  # tests/fakes.py
import numpy as np
import pytest

from cosim.coupling.graph import CouplingGraph
from cosim.master.description import Event, Settings
from cosim.master.execution import Execution


@pytest.fixture(autouse=True)
def calls():
    fakes.reset()
    return fakes.CALLS


def loop_of_two() -> CouplingGraph:
    """An integrator driven by a gain that reads the integrator: ``x' = 2 x + 1``."""
    graph = CouplingGraph()
    graph.add_instance("x", fakes.fmu(fakes.integrator(x0=1.0)))
    graph.add_instance("g", fakes.fmu(fakes.gain()))
    graph.connect("x.x", "g.u")
    graph.connect("g.y", "x.u")
    graph.validate()
    return graph


def test_the_exchange_is_made_with_the_execution_and_follows_every_stage():
    """The exchange (MPI: the values crossing ranks) is built from the execution's plan and
    system when the execution is, and called after every stage, in the plan's order."""
    made, exchanged = [], []

    def exchange(plan, system):
        made.append((plan, system))
        return exchanged.append

    execution = Execution(loop_of_two(), Settings(0.0, 0.03, 0.01), exchange=exchange,
                          instances=fakes.instances)
    assert made == [(execution.plan, execution.system)]
    execution.run()
    plan = execution.plan
    setup = list(range(len(plan.initial) + len(plan.start)))
    step = list(range(len(setup), len(plan.stages)))
    assert step and exchanged == setup + step * 3


def test_events_fall_on_the_communication_point_at_or_after_their_time(calls):
    """At a fixed step of 10 ms an event at 25 ms is applied before the step from 30 ms; one
    within 1e-9 of a step of 20 ms, before the step from 20 ms."""
    graph = CouplingGraph()
    graph.add_instance("c", fakes.fmu(fakes.clock("c")))
    events = (Event(0.025, "c", {"u": 1.0}), Event(0.02 + 1e-13, "c", {"u": 2.0}))
    rows = []

    class Echo:
        def started(self, run) -> None:
            self.instance = run.system.instances["c"]

        def stepped(self, time: float) -> None:
            rows.append((time, self.instance.values["u"]))

        def finished(self, error) -> None:
            assert error is None

    Execution(graph, Settings(0.0, 0.05, 0.01, events=events),
              instances=fakes.instances).run([Echo()])
    assert [u for _, u in rows] == [0.0, 0.0, 0.0, 2.0, 1.0, 1.0]
    assert [t for t, _ in rows] == [0.01 * n for n in range(6)]


def test_the_system_state_goes_back_to_a_snapshot_bit_for_bit():
    """``System.snapshot``/``restore`` (checkpoints; a master's rollback): the steps after
    the restored point compute again what they computed the first time."""
    execution = Execution(loop_of_two(), Settings(0.0, 1.0, 0.01), instances=fakes.instances)
    execution.start()
    master, system = execution.master, execution.system
    time = 0.0
    for _ in range(10):
        time = master.advance(time, 1.0)
    saved = system.snapshot()
    later = [(time := master.advance(time, 1.0), system.signals.copy()) for _ in range(5)]
    system.restore(*saved)
    time = later[0][0] - 0.01
    again = [(time := master.advance(time, 1.0), system.signals.copy()) for _ in range(5)]
    assert all(t1 == t2 and np.array_equal(a, b)
               for (t1, a), (t2, b) in zip(later, again, strict=True))
    assert not np.array_equal(saved[1], later[-1][1])


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


def test_a_master_choosing_its_own_steps_drives_events_and_recording_by_time(tmp_path):
    """Events, observers and the recorder speak time: a master of uneven steps is asked to
    land on the event's time and does; the input set there acts from that point on; a row is
    recorded at the first point at or after each multiple of the record interval."""
    from cosim.results.reader import open_results
    from cosim.results.recorder import Recorder, create_results_file

    graph = CouplingGraph()
    graph.add_instance("s", fakes.fmu(fakes.clock("s")))
    settings = Settings(0.0, 0.05, 0.001, record={"s": ("time", "echo")},
                        record_interval=0.01, events=(Event(0.0105, "s", {"u": 5.0}),))
    times: list[float] = []

    class Times:
        def started(self, run) -> None:
            pass

        def stepped(self, time: float) -> None:
            times.append(time)

        def finished(self, error) -> None:
            assert error is None

    execution = Execution(graph, settings, master=UnevenMaster, instances=fakes.instances)
    with create_results_file(tmp_path / "uneven.h5", {}) as file:
        execution.run([Recorder(file), Times()])
    asked = execution.master.asked
    assert asked[:3] == [0.0105] * 3 and set(asked[3:]) == {0.05}
    assert 0.0105 in times and times[-1] == 0.05
    assert np.allclose(np.diff(times)[:2], [0.003, 0.007])
    with open_results(tmp_path / "uneven.h5") as res:
        due = [next(t for t in times if t >= k * 0.01 - 1e-12) for k in range(6)]
        assert list(res.time) == due
        assert np.array_equal(res["s.time"][1:], res.time[1:])  # it went where it was sent
        echo = dict(zip(res.time, res["s.echo"], strict=True))
        assert [echo[t] for t in due] == [0.0, 0.0, 5.0, 5.0, 5.0, 5.0]


def test_a_model_that_ends_the_simulation_ends_the_run_at_that_point(calls):
    graph = CouplingGraph()
    model = fakes.FakeModel("stop", outputs=("y",), ends_at=0.03)
    graph.add_instance("s", fakes.fmu(model))
    execution = Execution(graph, Settings(0.0, 1.0, 0.01), instances=fakes.instances)
    execution.run()
    assert execution.time == 0.03 and execution.steps == 3
    assert execution.end_reason == ("'s' ended the simulation at t = 0.03 s "
                                    "(terminateSimulation)")
    assert calls[-1] == ("s", "close", 0.03)
