"""The adaptive master (cosim/master/adaptive.py): extrapolation order on the two-mass
oscillator (tests/test_master.py's exact references), step-size control against the fixed step
that reaches the same accuracy, rollback, fmi2Discard, the fallbacks, events landed on, the
scenario section, and what the results file keeps of it."""

from __future__ import annotations

import json
import math

import fakes  # tests/fakes.py
import h5py
import numpy as np
import pytest
from test_master import exact, fmus, simulate, two_mass  # noqa: F401 - fmus: a fixture

from cosim.coupling.graph import CouplingGraph
from cosim.errors import ScenarioError
from cosim.master.adaptive import EVENT, REJECTED_DISCARD, REJECTED_ERROR
from cosim.master.description import Adaptive, Settings
from cosim.master.execution import Execution
from cosim.running.pipeline import run_scenario
from cosim.scenario.scenario import load_scenario


def oscillator_error(graph: CouplingGraph, step: float, order: int) -> float:
    """Largest error of x1, x2 against the monolithic solution over 1 s, every step ``step``
    (``max_step`` = ``step``, a tolerance that rejects nothing), inputs extrapolated with
    polynomials of ``order``."""
    trace = simulate_adaptive(graph, Adaptive(max_step=step, tolerance=1e9,
                                              extrapolation=order), step)
    assert np.allclose(np.diff(trace["time"]), step)
    return float(np.max(np.abs(np.c_[trace["m1.x1"], trace["m2.x2"]]
                               - exact(trace["time"]))))


def simulate_adaptive(graph: CouplingGraph, adaptive: Adaptive, step: float,
                      algorithm: str = "jacobi") -> dict[str, np.ndarray]:
    import test_master

    original = test_master.Settings

    def settings(*args, **kwargs):
        return original(*args, **kwargs, adaptive=adaptive)

    test_master.Settings = settings
    try:
        return simulate(graph, algorithm, step)
    finally:
        test_master.Settings = original


@pytest.mark.parametrize(("order", "expected"), [(0, 1.0), (1, 2.0)])
def test_linear_extrapolation_makes_the_two_mass_oscillator_second_order(fmus,  # noqa: F811
                                                                         order, expected):
    """Jacobi on the oscillator split at its spring: holding the inputs (order 0) converges
    with order 1 in h; linear extrapolation to the middle of the step with order 2."""
    graph = two_mass(fmus)
    errors = [oscillator_error(graph, h, order) for h in (0.004, 0.002, 0.001)]
    observed = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all(np.abs(observed - expected) < 0.15), (errors, observed)


# -- fakes: a decaying source feeding a first-order lag ---------------------------------------
def decay(name: str = "source") -> fakes.FakeModel:
    """``x = exp(-t)``, exact."""
    def step(v: dict, t: float, h: float) -> None:
        v["state"] = math.exp(-(t + h))

    def compute(v: dict) -> None:
        v["x"] = v["state"]
    return fakes.FakeModel(name, outputs=("x",), parameters={"state": 1.0}, step=step,
                           compute=compute)


def lag(name: str = "lag", **options) -> fakes.FakeModel:
    """``y' = u - y``, exact for ``u`` held over the step (y(0) = 0)."""
    def step(v: dict, t: float, h: float) -> None:
        v["state"] = v["u"] + (v["state"] - v["u"]) * math.exp(-h)

    def compute(v: dict) -> None:
        v["y"] = v["state"]
    return fakes.FakeModel(name, inputs={"u": 0.0}, outputs=("y",), parameters={"state": 0.0},
                           step=step, compute=compute, **options)


def chain(**options) -> CouplingGraph:
    graph = CouplingGraph()
    graph.add_instance("source", fakes.fmu(decay()))
    graph.add_instance("lag", fakes.fmu(lag(**options)))
    graph.connect("source.x", "lag.u")
    graph.validate()
    return graph


def run_chain(graph: CouplingGraph, step: float, adaptive: Adaptive | None,
              stop: float = 8.0) -> tuple[Execution, float, int]:
    """The execution, the largest error of y against t e^-t at the points, the points."""
    times, values = [], []
    record = {"lag": ("y",)}

    class Trace:
        def started(self, run: Execution) -> None:
            self.signals, self.slot = run.system.signals, run.layout.index("lag", "y")

        def stepped(self, time: float) -> None:
            times.append(time)
            values.append(self.signals[self.slot])

        def finished(self, error) -> None:
            pass

    execution = Execution(graph, Settings(0.0, stop, step, record=record, adaptive=adaptive),
                          instances=fakes.instances)
    execution.run([Trace()])
    t = np.array(times)
    return execution, float(np.max(np.abs(np.array(values) - t * np.exp(-t)))), len(t) - 1


def test_step_size_control_reaches_a_tolerance_with_fewer_steps_than_a_fixed_step():
    """The lag fed by a decaying source, 8 s: the controlled run (steps of 1 ms to 1 s from
    the extrapolation error) against the longest fixed step (same extrapolation, order 1) whose
    error is no larger: the controlled run takes fewer steps."""
    graph = chain()
    execution, error, steps = run_chain(graph, 0.001, Adaptive(max_step=1.0, tolerance=1e-3))
    assert error < 2e-3
    sizes = np.array(execution.master.log.sizes)
    assert sizes.min() < 0.01 and sizes.max() > 0.2, "the step grows as the source decays"
    fixed_steps = None
    for h in (0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.00390625):
        _, fixed_error, count = run_chain(graph, h, Adaptive(max_step=h, tolerance=1e9))
        if fixed_error <= error:
            fixed_steps = count
            break
    assert fixed_steps is not None and steps < fixed_steps, (steps, fixed_steps)


def counter(name: str = "counter", **options) -> fakes.FakeModel:
    """``n``: the steps taken (its state); ``y``: a square wave of period 1 s."""
    def step(v: dict, t: float, h: float) -> None:
        v["count"] += 1
        v["level"] = 1.0 if (t + h) % 1.0 >= 0.5 else 0.0

    def compute(v: dict) -> None:
        v["n"], v["y"] = v["count"], v["level"]
    return fakes.FakeModel(name, outputs=("n", "y"), parameters={"count": 0.0, "level": 0.0},
                           step=step, compute=compute, **options)


def square_wave(**options) -> CouplingGraph:
    graph = CouplingGraph()
    graph.add_instance("counter", fakes.fmu(counter(**options)))
    graph.add_instance("lag", fakes.fmu(lag()))
    graph.connect("counter.y", "lag.u")
    graph.validate()
    return graph


def test_a_rejected_step_is_rolled_back_and_repeated():
    """Every jump of the square wave rejects the step that crosses it; the rejected steps
    leave no trace: the counter's state counts the accepted steps only, although fmi2DoStep
    was called for the rejected ones too."""
    fakes.reset()
    execution = Execution(square_wave(), Settings(0.0, 3.0, 0.001, adaptive=Adaptive(
        max_step=0.5, tolerance=1e-2)), instances=fakes.instances)
    execution.run()
    log = execution.master.log
    assert len(log.rejected_times) >= 5 and set(log.rejected_kinds) == {REJECTED_ERROR}
    accepted = len(log.times)
    calls = sum(1 for name, call, _ in fakes.CALLS if name == "counter" and call == "step")
    assert calls == accepted + len(log.rejected_times)
    assert execution.system.instances["counter"].values["count"] == accepted
    for time, size in zip(log.rejected_times, log.rejected_sizes, strict=True):
        retried = [s for t, s in zip([0.0, *log.times], log.sizes, strict=False) if t == time]
        assert retried and retried[0] < size, "the step from the same point, shorter"


def test_a_discarded_step_is_retried_with_a_smaller_one():
    """fmi2Discard above 4 ms: the run completes with steps of at most 4 ms; each discard is
    in the log."""
    execution = Execution(chain(discards_above=0.004), Settings(
        0.0, 1.0, 0.001, adaptive=Adaptive(max_step=0.1, tolerance=1.0)),
        instances=fakes.instances)
    execution.run()
    log = execution.master.log
    assert REJECTED_DISCARD in log.rejected_kinds
    assert max(log.sizes) <= 0.004 + 1e-12 and math.isclose(log.times[-1], 1.0)


def test_without_state_no_step_is_rejected_and_the_log_says_why():
    execution = Execution(square_wave(can_get_and_set_state=False), Settings(
        0.0, 3.0, 0.001, adaptive=Adaptive(max_step=0.5, tolerance=1e-2)),
        instances=fakes.instances)
    execution.run()
    log = execution.master.log
    assert not log.rejected_times
    assert any("canGetAndSetFMUstate" in note for note in log.notes)


def test_without_variable_steps_every_step_is_the_fixed_one():
    execution = Execution(chain(variable_step=False), Settings(
        0.0, 0.5, 0.01, adaptive=Adaptive(max_step=0.5, tolerance=1.0)),
        instances=fakes.instances)
    execution.run()
    log = execution.master.log
    assert np.allclose(log.sizes, 0.01) and len(log.sizes) == 50
    assert any("canHandleVariableCommunicationStepSize" in note for note in log.notes)


def announcer() -> fakes.FakeModel:
    """Announces events at 0.1234 s and 0.5678 s (``next_event_time``)."""
    def step(v: dict, t: float, h: float) -> None:
        end = t + h
        v["due"] = next((e for e in (0.1234, 0.5678) if e > end + 1e-12), end)

    def compute(v: dict) -> None:
        v["next_event_time"] = v["due"]
    return fakes.FakeModel("clock", outputs=("next_event_time",), parameters={"due": 0.1234},
                           step=step, compute=compute)


@pytest.mark.parametrize("adaptive", [None, Adaptive(max_step=0.5, tolerance=1.0)],
                         ids=["fixed", "adaptive"])
def test_a_step_ends_exactly_on_an_announced_event(adaptive):
    """The fixed-step master and the adaptive one end a step on each announced time, exactly;
    the adaptive one starts again from its smallest step there (to the grid's next point)."""
    graph = CouplingGraph()
    graph.add_instance("clock", fakes.fmu(announcer()))
    graph.add_instance("lag", fakes.fmu(lag()))
    graph.connect("clock.next_event_time", "lag.u")
    graph.validate()
    times = []

    class Times:
        def started(self, run):
            pass

        def stepped(self, time):
            times.append(time)

        def finished(self, error):
            pass

    execution = Execution(graph, Settings(0.0, 1.0, 0.01, adaptive=adaptive),
                          instances=fakes.instances)
    execution.run([Times()])
    assert 0.1234 in times and 0.5678 in times
    if adaptive is not None:
        log = execution.master.log
        at = log.times.index(0.5678)
        assert log.reasons[at] == EVENT
        assert log.times[at + 1] == pytest.approx(0.57), "then the next grid point: restarted"


def scenario(tmp_path, simulation: str):
    path = tmp_path / "s.yaml"
    path.write_text(f"""\
version: 1
fmus: {{generator: generator}}
instances:
  pacemaker: {{fmu: generator, parameters: {{mode: 2, lower_rate: 60.0}}}}
simulation: {simulation}
record: [pacemaker.V_pace_v, pacemaker.vp_count]
""")
    return path


def test_the_adaptive_section_is_read_and_its_mistakes_named(tmp_path):
    settings = load_scenario(scenario(tmp_path, """
  {start: 0, stop: 3.5, step: 0.001,
   adaptive: {max_step: 0.2, tolerance: 0.01,
              extrapolation: {default: 2, pacemaker.V_pace_v: 0}}}""")).settings
    assert settings.adaptive == Adaptive(0.2, 0.01, 2, {"pacemaker.V_pace_v": 0})
    with pytest.raises(ScenarioError) as caught:
        load_scenario(scenario(tmp_path, """
  {start: 0, stop: 3.5, step: 0.001,
   adaptive: {max_step: 0.0001, tolerans: 0.01, extrapolation: {default: 3}}}"""))
    text = str(caught.value)
    assert "simulation.adaptive.max_step: max_step (0.0001 s) is below simulation.step" in text
    assert "simulation.adaptive.tolerans: unknown key" in text
    assert "simulation.adaptive.extrapolation.default: order must be 0, 1 or 2" in text


def test_a_run_records_what_the_adaptive_master_did(tmp_path):
    """Paces at exactly 1, 2, 3 s in an adaptive run; /master holds every accepted step (time,
    size, error, reason) and the counts."""
    report = run_scenario(scenario(tmp_path, """
  {start: 0, stop: 3.5, step: 0.001, adaptive: {max_step: 0.2, tolerance: 0.01}}"""),
        tmp_path / "s.h5", plot=False)
    with h5py.File(report.results) as file:
        master = file["master"]
        times = master["time"][:]
        assert {1.0, 2.0, 3.0} <= set(times.tolist())
        assert master.attrs["accepted"] == len(times) == master.attrs["steps"]
        assert np.isclose(np.sum(master["step"][:]), 3.5)
        assert set(master["reason"][:].tolist()) >= {EVENT}
        assert master["step"][:].max() == pytest.approx(0.2)


# -- checkpoints keep the controller --------------------------------------------------------
def resumed_against_uninterrupted(graph: CouplingGraph, settings: Settings, at: float
                                  ) -> tuple[list, list, Execution, Execution]:
    """Rows (time, signals) after the first point at or after ``at`` of an uninterrupted run
    and of a run resumed from a checkpoint taken there (the master's state through JSON, as
    a checkpoint file keeps it); both executions."""
    from cosim.running.checkpoint import Checkpoint

    saved: list[Checkpoint] = []

    class Rows:
        def __init__(self, take: bool):
            self.rows, self.take = [], take

        def started(self, run: Execution) -> None:
            self.run = run

        def stepped(self, time: float) -> None:
            run = self.run
            if self.take and not saved and time >= at:
                states, signals = run.system.snapshot()
                master = json.loads(json.dumps(run.master.state()))
                saved.append(Checkpoint(run.steps, time, 0, signals, states, "", master))
            elif saved:
                self.rows.append((time, run.system.signals.copy()))

        def finished(self, error) -> None:
            pass

    whole, resumed = Rows(take=True), Rows(take=False)
    first = Execution(graph, settings, instances=fakes.instances)
    first.run([whole])
    second = Execution(graph, settings, instances=fakes.instances, resume=saved[0])
    second.run([resumed])
    return whole.rows, resumed.rows, first, second


def test_a_resumed_adaptive_run_equals_an_uninterrupted_one_bit_for_bit():
    """The lag fed by a decaying source under step-size control (rejections included),
    resumed from a checkpoint at 2 s: the controller goes on with its step, history and
    magnitudes, so every later point and value, and the log, are the same bit for bit."""
    settings = Settings(0.0, 8.0, 0.001, record={"lag": ("y",)},
                        adaptive=Adaptive(max_step=1.0, tolerance=1e-4, extrapolation=2))
    whole, resumed, first, second = resumed_against_uninterrupted(chain(), settings, 2.0)
    assert len(whole) == len(resumed) > 10
    for (t1, v1), (t2, v2) in zip(whole, resumed, strict=True):
        assert t1 == t2 and np.array_equal(v1, v2)
    assert first.master.log.rejected_times, "the controller rejected steps"
    assert first.master.log.times == second.master.log.times
    assert first.master.log.instance_steps == second.master.log.instance_steps
