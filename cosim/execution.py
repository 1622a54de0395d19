"""An execution: builds the runtime system from a coupling graph, initialises it, steps it to the
end, and tells observers (results writer, progress, MPI gather…) what happened.

Timed events (``Event``: set these values on that instance before step n) are data applied here
before a step, never tests of the time inside the master. Whatever happens, every instance is
terminated and freed, and observers hear ``finished(error)`` so they can keep what they have.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cosim import journal
from cosim.capture import CapturedOutput, capture_output
from cosim.errors import CosimError, Interrupted, SimulationError
from cosim.graph import CouplingGraph
from cosim.master import Master, Plan, make_master, make_plan
from cosim.system import Layout, System, make_layout

ExchangeFactory = Callable[[Plan, System], Callable[[int], None]]  # MPI: cosim.parallel.Exchange
CALL_TIMEOUT = 60.0  # seconds an FMI call may take, by default, before it counts as a hang


@dataclass(frozen=True)
class Event:
    """Set ``values`` on ``instance`` at ``time`` (applied before the step starting there)."""

    time: float
    instance: str
    values: Mapping[str, Any]


@dataclass
class Settings:
    """What to run: the time grid, the algorithm, what to record, timed events."""

    start: float
    stop: float
    step: float
    algorithm: str = "jacobi"
    record: Mapping[str, Sequence[str]] = field(default_factory=dict)  # instance -> variables
    record_every: int = 1  # record every n-th communication point
    record_reduce: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # instance ->
    # variable -> how a recorded point stands for its interval (cosim.decimation; not "last")
    events: Sequence[Event] = ()
    call_timeout: float = CALL_TIMEOUT  # s an FMI call may take before it counts as a hang

    @property
    def steps(self) -> int:
        """Number of communication steps from start to stop."""
        return steps_between(self.start, self.stop, self.step)


MAX_STEPS = 10**9  # a run of more communication steps is refused (a typo, not a plan)


def steps_between(start: float, stop: float, step: float) -> int:
    """``(stop - start) / step`` as an integer; ValueError if it is not one, or above
    ``MAX_STEPS``."""
    count = (stop - start) / step
    if not math.isfinite(count) or count > MAX_STEPS:
        raise ValueError(f"stop - start = {stop - start:g} s is {count:.3g} steps of {step:g} s,"
                         f" more than the limit of {MAX_STEPS:.0e} steps")
    rounded = round(count)
    if rounded < 1 or not math.isclose(count, rounded, rel_tol=1e-9, abs_tol=1e-9):
        raise ValueError(f"stop - start = {stop - start:g} s is not a whole number of "
                         f"steps of {step:g} s")
    return rounded


class Observer(Protocol):
    """Receives the events of an execution. The three methods are called in this order."""

    def started(self, run: Execution) -> None: ...

    def stepped(self, n: int, time: float) -> None:
        """Called after communication point n (time = start + n·step) has been reached."""

    def finished(self, error: BaseException | None) -> None: ...


class Execution:
    """One run of a coupling graph (or of the part of it this process owns)."""

    def __init__(self, graph: CouplingGraph, settings: Settings,
                 parameters: Mapping[str, Mapping[str, Any]] | None = None,
                 local: Iterable[str] | None = None,
                 exchange: ExchangeFactory | None = None,
                 plan: Plan | None = None, time_every: int = 16,
                 position: memoryview | None = None, resume=None):
        self.graph = graph
        self.settings = settings
        self.parameters = {name: dict(graph.graph.nodes[name]["parameters"])
                           for name in graph.instances}
        for name, values in (parameters or {}).items():
            self.parameters.setdefault(name, {}).update(values)
        self.plan = plan or make_plan(graph, settings.algorithm)
        self.layout: Layout = make_layout(graph, settings.record)
        self.system = System(graph, self.layout, graph.instances if local is None else local)
        # where the run is (phase, step, time, instance and FMI call), for a supervisor to read
        # (cosim.journal); a private array when nobody reads it
        self.position = journal.private_position() if position is None else position
        # ``exchange(stage)`` after each stage moves values between processes (MPI); made for
        # this plan and system by the factory handed in
        self.exchange = None if exchange is None else exchange(self.plan, self.system)
        self.master: Master = make_master(
            self.system, self.plan, settings.start, settings.step,
            **({} if self.exchange is None else {"exchange": self.exchange}),
            time_every=time_every, position=self.position)
        self.resume = resume  # a cosim.checkpoint.Checkpoint to go on from, or None
        self.step_index = 0
        self.end_reason = ""  # why the run ended, once it has: see ``run``
        self._events = self._schedule(settings.events)
        self.output = CapturedOutput()  # what the FMUs printed during ``run``

    @property
    def time(self) -> float:
        return self.settings.start + self.step_index * self.settings.step

    def start(self) -> None:
        """Everything a run does before its first step: load every instance, set its
        parameters, bind the buffers, initialise (``cosim check`` does this much too)."""
        position = self.position
        position[journal.PHASE] = journal.INSTANTIATING
        for name in self.system.local:
            position[journal.CALL] = self.master.call_codes[name][0]
            self.system.instantiate(name, self.parameters.get(name))
        self.system.bind()
        position[journal.PHASE] = journal.INITIALISING
        self.master.initialize(self.settings.stop)
        position[journal.CALL] = 0

    def run(self, observers: Sequence[Observer] = ()) -> None:
        """Initialise, step to the end, close; observers hear everything. What the FMUs print
        meanwhile is captured into ``self.output`` (``cosim.capture``), not the terminal.

        The end is the stop time, or the communication point that ends the step in which an
        FMU ended the simulation itself (terminateSimulation): that point is the last one
        observers hear. ``end_reason`` says which, before observers hear ``finished``.
        """
        self._closing(lambda: self._run(observers), observers)

    def run_start(self) -> None:
        """What ``run`` does before its first step (``start``), then close: ``cosim check``."""
        self._closing(self.start, ())

    def _closing(self, body: Callable[[], None], observers: Sequence[Observer]) -> None:
        """Run ``body`` with output captured; close every instance and tell the observers,
        whatever happens; any failure leaves as a ``CosimError`` (or an interruption)."""
        error: BaseException | None = None
        try:
            with capture_output() as self.output:
                try:
                    body()
                finally:
                    self.system.close()
        except CosimError as caught:
            error = caught
            raise
        except Exception as caught:  # an observer or numpy failing: still a clean error
            error = SimulationError(f"{type(caught).__name__}: {caught}", time=self.time)
            raise error from caught
        except BaseException as caught:  # KeyboardInterrupt: keep results, then stop
            error = caught
            raise
        finally:
            for observer in observers:
                observer.finished(error)

    def _run(self, observers: Sequence[Observer]) -> None:
        position, times = self.position, self.position.cast("B").cast("d")
        self.start()
        first = 0 if self.resume is None else self._restore(self.resume)
        for observer in observers:
            observer.started(self)
        if self.resume is None:  # a resumed run's first point is in the file already
            for observer in observers:
                observer.stepped(0, self.settings.start)
        position[journal.PHASE] = journal.STEPPING
        steps = self.settings.steps
        advance, events, ended = self.master.advance, self._events, self.master.ended
        stepped = [o.stepped for o in observers]
        for n in range(first, steps):
            self.step_index = n
            position[journal.STEP] = n
            times[journal.TIME] = self.settings.start + n * self.settings.step
            if position[journal.STOP]:
                raise Interrupted("stop requested")
            if n in events:
                self._apply(events[n])
            advance(self.settings.start + n * self.settings.step, self.settings.stop)
            position[journal.CALL] = 0
            self.step_index = n + 1
            time = self.settings.start + (n + 1) * self.settings.step
            for callback in stepped:
                callback(n + 1, time)
            if ended:
                break
        position[journal.PHASE] = journal.FINISHING
        self.end_reason = self._ending()

    def _restore(self, checkpoint) -> int:
        """Put every local instance and the signal array back as ``checkpoint`` saved them
        (after the usual initialisation); returns the step to go on from."""
        missing = [name for name in self.system.local if name not in checkpoint.states]
        if missing or checkpoint.signals.shape != self.system.signals.shape:
            raise SimulationError("the checkpoint does not match this scenario (instances "
                                  f"{missing or 'the same'}, {checkpoint.signals.size} signals "
                                  f"saved, {self.system.signals.size} here)")
        for name in self.system.local:
            self.position[journal.CALL] = self.master.call_codes[name][0]
            self.system.instances[name].restore_state(checkpoint.states[name])
        self.position[journal.CALL] = 0
        self.system.signals[:] = checkpoint.signals
        self.step_index = checkpoint.step
        return checkpoint.step

    def _ending(self) -> str:
        """Why the run ended: the stop time, or the FMUs that ended the simulation."""
        instances = self.system.instances
        ended = [f"'{name}' ended the simulation at t = {instances[name].ended_at:.9g} s "
                 "(terminateSimulation)" for name in self.master.ended]
        if not ended:
            return "stop time reached"
        if len(self.system.local) < len(self.graph.instances):  # the other ranks go on
            raise SimulationError(
                f"{ended[0]}: with the instances spread over MPI ranks, the other ranks "
                "cannot learn it at this step; run this scenario in one process (a cohort "
                "may run its members on one rank each: parallel: {group_size: 1})",
                instance=self.master.ended[0], time=self.time)
        return "; ".join(ended)

    def _schedule(self, events: Sequence[Event]) -> dict[int, list[Event]]:
        by_step: dict[int, list[Event]] = {}
        local = set(self.system.local)
        for event in events:
            if event.instance not in local:
                continue
            n = max(0, math.ceil((event.time - self.settings.start) / self.settings.step - 1e-9))
            by_step.setdefault(n, []).append(event)
        return by_step

    def _apply(self, events: list[Event]) -> None:
        for event in events:
            self.system.instances[event.instance].set(event.values)
