"""An execution: builds the runtime system from a coupling graph, initialises it, steps it to the
end, and tells observers (results writer, progress, MPI gather…) what happened.

Time, never a step index, is what passes between the execution, its master, its events and its
observers: the master says which communication point it reached (``Master.advance``), observers
hear each point's time (``stepped(time)``), and a timed event (``Event``: set these values on
that instance at that time) is applied before the master advances from the communication point
at which it falls (``Master.landing``); the master is asked not to go past the next one. Whatever
happens, every instance is terminated and freed, and observers hear ``finished(error)`` so they
can keep what they have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any, Protocol

from cosim.coupling.graph import CouplingGraph
from cosim.coupling.system import Layout, System, make_layout
from cosim.errors import CosimError, Interrupted, SimulationError
from cosim.fmi.capture import CapturedOutput, capture_output
from cosim.fmi.instances import InstanceFactory
from cosim.fmi.isolation import make_instance
from cosim.master import journal
from cosim.master.adaptive import AdaptiveMaster
from cosim.master.description import Event, Settings
from cosim.master.iteration import IterativeMaster
from cosim.master.master import Master, Plan, make_master, make_plan

ExchangeFactory = Callable[[Plan, System], Callable[[int], None]]  # MPI: running.exchange.Exchange
MasterFactory = Callable[..., Master]  # (system, plan, start, step, *, exchange, time_every,
# position) -> Master; cosim.master.master.make_master unless another is handed in
class Observer(Protocol):
    """Receives the events of an execution. The three methods are called in this order."""

    def started(self, run: Execution) -> None: ...

    def stepped(self, time: float) -> None:
        """Called at every communication point, the first (the start, or where a resumed run
        goes on) included, once the system has reached it."""

    def finished(self, error: BaseException | None) -> None: ...


class Execution:
    """One run of a coupling graph (or of the part of it this process owns)."""

    def __init__(self, graph: CouplingGraph, settings: Settings,
                 parameters: Mapping[str, Mapping[str, Any]] | None = None,
                 local: Iterable[str] | None = None,
                 exchange: ExchangeFactory | None = None,
                 plan: Plan | None = None, time_every: int = 16,
                 position: memoryview | None = None, resume=None,
                 master: MasterFactory = make_master,
                 instances: InstanceFactory = make_instance):
        self.graph = graph
        self.settings = settings
        self.parameters = {name: graph.parameters(name) for name in graph.instances}
        for name, values in (parameters or {}).items():
            self.parameters.setdefault(name, {}).update(values)
        self.plan = plan or make_plan(graph, settings.algorithm)
        self.layout: Layout = make_layout(graph, settings.record)
        self.system = System(graph, self.layout, graph.instances if local is None else local,
                             instances)
        # where the run is (phase, step, time, instance and FMI call), for a supervisor to read
        # (cosim.master.journal); a private array when nobody reads it
        self.position = journal.private_position() if position is None else position
        self.call_codes = journal.call_codes(self.layout.instances, self.system.local)
        # ``exchange(stage)`` after each stage moves values between processes (MPI); made for
        # this plan and system by the factory handed in
        self.exchange = None if exchange is None else exchange(self.plan, self.system)
        if settings.adaptive is not None and master is make_master:
            master = partial(AdaptiveMaster, control=settings.adaptive)
        elif settings.iteration is not None and master is make_master:
            master = partial(IterativeMaster, iteration=settings.iteration)
        if settings.rates and settings.iteration is not None:
            raise SimulationError("multirate instances (instances.<name>.step) and "
                                  "simulation.iteration cannot be combined yet: leave one out")
        self.master: Master = master(
            self.system, self.plan, settings.start, settings.step,
            **({} if self.exchange is None else {"exchange": self.exchange}),
            **({"rates": settings.rates} if settings.rates else {}),
            time_every=time_every, position=self.position)
        self.resume = resume  # a cosim.running.checkpoint.Checkpoint to go on from, or None
        self.time = settings.start  # the communication point reached
        self.steps = 0  # communication steps taken to reach it
        self.end_reason = ""  # why the run ended, once it has: see ``run``
        self.output = CapturedOutput()  # what the FMUs printed during ``run``

    def start(self) -> None:
        """Everything a run does before its first step: load every instance, set its
        parameters, bind the buffers, initialise (``cosim check`` does this much too)."""
        position = self.position
        position[journal.PHASE] = journal.INSTANTIATING
        for name in self.system.local:
            position[journal.CALL] = self.call_codes[name][0]
            self.system.instantiate(name, self.parameters.get(name))
        self.system.bind()
        position[journal.PHASE] = journal.INITIALISING
        self.master.initialize(self.settings.stop)
        position[journal.CALL] = 0

    def run(self, observers: Sequence[Observer] = ()) -> None:
        """Initialise, step to the end, close; observers hear everything. What the FMUs print
        meanwhile is captured into ``self.output`` (``cosim.fmi.capture``), not the terminal.

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
        if self.resume is not None:
            self._restore(self.resume)
        for observer in observers:
            observer.started(self)
        if self.resume is None:  # a resumed run's first point is in the file already
            for observer in observers:
                observer.stepped(self.time)
        position[journal.PHASE] = journal.STEPPING
        master, stop = self.master, self.settings.stop
        advance, ended, end = master.advance, master.ended, master.landing(stop)
        events = self._pending(self.time)
        stepped = [o.stepped for o in observers]
        while self.time < end:
            position[journal.STEP] = self.steps
            times[journal.TIME] = self.time
            if position[journal.STOP]:
                raise Interrupted("stop requested")
            while events and events[-1][0] <= self.time:
                self._apply(events.pop()[1])
            self.time = advance(self.time, min(events[-1][1].time, stop) if events else stop)
            self.steps += 1
            position[journal.CALL] = 0
            for callback in stepped:
                callback(self.time)
            if ended:
                break
        position[journal.PHASE] = journal.FINISHING
        self.end_reason = self._ending()

    def _restore(self, checkpoint) -> None:
        """Put every local instance and the signal array back as ``checkpoint`` saved them
        (after the usual initialisation), at its communication point."""
        missing = [name for name in self.system.local if name not in checkpoint.states]
        if missing or checkpoint.signals.shape != self.system.signals.shape:
            raise SimulationError("the checkpoint does not match this scenario (instances "
                                  f"{missing or 'the same'}, {checkpoint.signals.size} signals "
                                  f"saved, {self.system.signals.size} here)")
        codes = self.call_codes

        def calling(name: str) -> None:
            self.position[journal.CALL] = codes[name][0]

        self.system.restore(checkpoint.states, checkpoint.signals, calling)
        self.position[journal.CALL] = 0
        self.time, self.steps = checkpoint.time, checkpoint.step
        if checkpoint.master is not None and hasattr(self.master, "set_state"):
            self.master.set_state(checkpoint.master)  # its step, history, bookkeeping
        elif hasattr(self.master, "restart"):  # a checkpoint without it: the adaptive
            self.master.restart(self.time)  # master's controller starts again here

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

    def _pending(self, time: float) -> list[tuple[float, Event]]:
        """The local events due at or after communication point ``time`` with the point at
        which each falls, the next one last."""
        local, landing = set(self.system.local), self.master.landing
        due = [(landing(event.time), i, event) for i, event in enumerate(self.settings.events)
               if event.instance in local]
        return [(at, event) for at, _, event in sorted(due, reverse=True) if at >= time]

    def _apply(self, event: Event) -> None:
        self.system.instances[event.instance].set(event.values)
