"""Master algorithms: the ``Master`` interface, and fixed-step Jacobi and Gauss-Seidel.

A ``Plan`` is a sequence of *stages*. A stage is a set of instances that all do the same thing,
first every instance's ``fmi2SetReal`` of its inputs (gathered from the signal array as it was
when the stage began), then its own call(s), then ``exchange(stage)`` makes the values the
stage produced available to other processes (a no-op in one process). No instance of a stage
sees another's value of the same stage, so the arithmetic is the same however the instances
are spread over processes. Three actions:

- ``step``: set inputs, ``fmi2DoStep``, get outputs;
- ``settle``: set inputs, get outputs (no time passes): makes the outputs that depend directly
  on inputs (ModelStructure ``dependencies``) agree with the current inputs;
- ``read``: get outputs.

A run meets the plan's stages in this order:

1. **initial** (in initialisation mode): ``read`` every instance, then ``settle`` stages in
   data-flow order over the InitialUnknowns dependencies, until every connection holds; where
   outputs and inputs form a cycle (an algebraic loop) its instances settle ``INIT_PASSES``
   times (fixed-point iteration, a fixed count so that every partition does the same work);
2. **start** (after ``fmi2ExitInitializationMode``): ``read`` every instance, then the settle
   stages of a Jacobi step (below), so that the outputs at the start time are consistent;
3. **step** (every communication step, t → t + h):

   - Jacobi: one ``step`` stage with every instance: all inputs hold the values of t;
   - Gauss-Seidel: ``step`` stages in ``CouplingGraph.gauss_seidel_order()`` (data flow; an
     instance whose outputs depend directly on an input runs after the instance feeding it);
     an instance steps one stage after the latest instance earlier in that order feeding it,
     so it sees that instance's values at t + h; inputs fed by an instance in the same or a
     later stage hold the values of t;

   then ``settle`` stages: every instance whose outputs depend directly on an input that
   still holds a value of t sets that input to its value at t + h and reads its outputs
   again, in data-flow order. So every output at t + h is computed from the inputs at t + h:
   after ``step(n)`` each connection into a direct-feedthrough input holds, and the outputs
   are those of the states they belong to (an ideal zero-order-hold co-simulation; Broman et
   al., "Determinate composition of FMUs for co-simulation", EMSOFT 2013, propagate values in
   the same order). Inputs without direct feedthrough keep the value they were stepped with
   until the next step sets them. An algebraic loop is not settled after a step: its inputs
   keep the values they were stepped with (a one-step delay), as ``cosim check`` warns.

Because the plan depends only on the graph, results do not depend on how instances are split
over processes. The algorithm knows nothing about files or MPI: ``exchange`` is handed in.

A master is whatever has the methods of ``Master``: ``initialize(stop)`` → ``advance(time,
until)`` from one communication point to the next, which it returns, until the caller stops
(and closes the system). Jacobi and Gauss-Seidel are two plans run by one ``FixedStepMaster``
(``make_master`` chooses by ``plan.algorithm``): communication point n is ``start + n *
step_size``, never an accumulated sum. The stages of every phase go through one loop
(``FixedStepMaster._run``). After each step the signal array is checked for values that are
not finite (NaN, ±inf): the run stops there, naming the first such value in data-flow order.
An FMU that ends the simulation itself (terminateSimulation) is listed in ``ended``; the step
still completes for the others, and the caller ends the run at that communication point.

The master also adds up, per instance, the seconds its calls take: ``busy``. A timed step costs
two clock reads per call, about 0.6 µs per instance (10 % of the cheapest C FMU's step), so only
every ``time_every``-th step is timed (the same loop, each call wrapped in a timer) and ``busy``
is scaled up from those: every step under MPI (balance), every 16th in one process (reports).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from time import perf_counter
from typing import Protocol

import networkx as nx
import numpy as np

from cosim.coupling.event_times import next_event
from cosim.coupling.graph import Connection, CouplingGraph
from cosim.coupling.system import System
from cosim.errors import SimulationError
from cosim.master import journal
from cosim.master.multirate import Rates

ALGORITHMS = ("jacobi", "gauss-seidel")
STEP, SETTLE, READ = "step", "settle", "read"
INIT_PASSES = 3  # settle passes over an algebraic loop in initialisation mode


@dataclass(frozen=True)
class Stage:
    """Instances doing ``action`` (``step``, ``settle`` or ``read``) before one exchange."""

    action: str
    instances: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    """What runs in which order; computed from the graph only."""

    algorithm: str
    initial: tuple[Stage, ...]  # in initialisation mode
    start: tuple[Stage, ...]  # after it, at the start time
    step: tuple[Stage, ...]  # every communication step

    @property
    def stages(self) -> tuple[Stage, ...]:
        """Every stage, in the order a run meets them: ``exchange(i)`` follows stage i."""
        return self.initial + self.start + self.step

    @property
    def levels(self) -> tuple[tuple[str, ...], ...]:
        """The instances of each ``step`` stage: who steps together, in order."""
        return tuple(stage.instances for stage in self.step if stage.action == STEP)


def make_plan(graph: CouplingGraph, algorithm: str) -> Plan:
    """The stages of ``algorithm`` ("jacobi" or "gauss-seidel") on ``graph``."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm '{algorithm}'; use one of {ALGORITHMS}")
    order = graph.gauss_seidel_order()
    if algorithm == "jacobi":
        levels = [order]
    else:
        position = {name: i for i, name in enumerate(order)}
        level: dict[str, int] = {}
        for name in order:
            feeding = [level[s] for s in graph.feeding(name) if position[s] < position[name]]
            level[name] = 1 + max(feeding) if feeding else 0
        levels = [[] for _ in range(max(level.values(), default=-1) + 1)]
        for name in order:
            levels[level[name]].append(name)
    level_of = {name: i for i, names in enumerate(levels) for name in names}
    connections = graph.connections()
    everyone = (Stage(READ, tuple(graph.instances)),)
    behind = [c for c in connections if level_of[c.source] >= level_of[c.target]]
    initial = DataFlow(graph, connections, initial=True)
    stepping = DataFlow(graph, connections, initial=False)
    return Plan(
        algorithm,
        initial=everyone + initial.settle_stages(connections, passes=INIT_PASSES),
        start=everyone + stepping.settle_stages(connections, passes=0),
        step=(tuple(Stage(STEP, tuple(names)) for names in levels)
              + stepping.settle_stages(behind, passes=0)))


class DataFlow:
    """The graph of variables of a coupling graph, in strongly connected groups.

    Edges: each of ``connections`` (the graph's), output → input; inside an instance, input →
    output where the output depends on the input directly (``dependencies``, or
    ``initial_dependencies`` with ``initial``). A group of more than one variable is an
    algebraic loop.
    """

    def __init__(self, graph: CouplingGraph, connections: Iterable[Connection], *,
                 initial: bool):
        self.instances = tuple(graph.instances)
        self.initial = initial
        flow = nx.DiGraph()
        for c in connections:
            flow.add_edge(("out", c.source, c.output), ("in", c.target, c.input))
        for name in self.instances:
            fmu = graph.fmu(name)
            for output, inputs in (fmu.initial_dependencies if initial
                                   else fmu.dependencies).items():
                for input_name in inputs:
                    flow.add_edge(("in", name, input_name), ("out", name, output))
        self.sources = {node: tuple(flow.pred[node]) for node in flow}
        self.feeds_output = {node for node in flow if node[0] == "in" and flow.succ[node]}
        condensed = nx.condensation(flow)
        self.group_of: dict[tuple, int] = condensed.graph["mapping"]
        members: dict[int, list] = {}
        for node, group in self.group_of.items():
            members.setdefault(group, []).append(node)
        self.groups = [members[g] for g in nx.topological_sort(condensed)]
        self.group_of = {node: i for i, nodes in enumerate(self.groups) for node in nodes}

    def settle_stages(self, changed: Iterable[Connection], *, passes: int
                      ) -> tuple[Stage, ...]:
        """``settle`` stages after the connections ``changed`` got new source values.

        A value is *stale* when it comes through a changed connection or from a stale value.
        An instance settles at stage k (1, 2, …; stage 0 is the one before, which read every
        output) for each stale input it needs, k being one more than the stage at which the
        value feeding that input is final. It needs the inputs its outputs depend on; with
        ``initial``, every connected input (all connections hold before the FMUs leave
        initialisation mode). An algebraic loop is settled ``passes`` times, all its instances
        together in each stage; ``passes = 0`` leaves it as it is.
        """
        changed_edges = {(("out", c.source, c.output), ("in", c.target, c.input))
                         for c in changed}
        group_of, final = self.group_of, {}  # stale group -> stage at which it is final
        settles: dict[str, set[int]] = {}
        for group, nodes in enumerate(self.groups):
            earliest, stale = 0, False  # the first stage at which the group can be settled
            for node in nodes:
                for source in self.sources[node]:
                    edge_changed = (source, node) in changed_edges
                    if group_of[source] == group:
                        stale = stale or edge_changed
                        continue
                    before = final.get(group_of[source])
                    if before is None and not edge_changed:
                        continue
                    stale = True
                    # an input is set one stage after its source is final; an output is read
                    # in the stage that sets the input it depends on
                    earliest = max(earliest, (before or 0) + (node[0] == "in"))
            if not stale:
                continue
            if len(nodes) > 1:  # a loop (no variable feeds itself directly)
                if passes:
                    first = max(earliest, 1)
                    for name in {name for kind, name, _ in nodes if kind == "in"}:
                        settles.setdefault(name, set()).update(range(first, first + passes))
                    final[group] = first + passes - 1
                continue
            final[group] = earliest
            node = nodes[0]
            if node[0] == "in" and (self.initial or node in self.feeds_output):
                settles.setdefault(node[1], set()).add(earliest)
        stages = max((max(s) for s in settles.values()), default=0)
        return tuple(Stage(SETTLE, tuple(n for n in self.instances if k in settles.get(n, ())))
                     for k in range(1, stages + 1))


class Master(Protocol):
    """What an ``Execution`` asks of a coupling algorithm.

    The protocol is time, never a step index: ``advance(time, until)`` takes the system from
    communication point ``time`` to the next one, which the master chooses (a fixed step, or a
    step size of its own), never beyond ``until`` when it can land there (the next event or the
    stop time: ``landing`` says where something due at a time happens); it returns the time
    reached. The system's state (every instance's FMU state and the signal array) is saved and
    restored through ``System.snapshot``/``System.restore``, so a master that rejects a step
    restores it and advances again. ``ended`` lists the instances that ended the simulation
    themselves; ``busy`` the seconds each local instance's FMI calls took.
    """

    plan: Plan
    ended: list[str]

    def initialize(self, stop: float | None) -> None:
        """Consistent initialisation, the system instantiated and bound."""

    def advance(self, time: float, until: float) -> float:
        """Every local instance from communication point ``time`` to the next; its time
        (``until`` itself, not a sum that comes near it, when the master lands there)."""

    def landing(self, time: float) -> float:
        """The communication point at which something due at ``time`` happens."""

    @property
    def busy(self) -> dict[str, float]: ...

    def reset_busy(self) -> None: ...


def _no_exchange(stage: int) -> None:
    return None


def make_master(system: System, plan: Plan, start: float, step_size: float, *,
                exchange: Callable[[int], None] = _no_exchange, time_every: int = 16,
                position: memoryview | None = None,
                rates: Mapping[str, int] | None = None) -> Master:
    """The master running ``plan`` (its algorithm: ``ALGORITHMS``) on ``system``; ``rates``:
    instances stepped at a multiple of ``step_size`` (``cosim.master.multirate``)."""
    if plan.algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm '{plan.algorithm}'; use one of {ALGORITHMS}")
    return FixedStepMaster(system, plan, start, step_size, exchange, time_every, position,
                           rates=rates)


class FixedStepMaster:
    """Jacobi or Gauss-Seidel (whichever ``plan`` says) at a fixed communication step:
    communication point n is ``start + n * step_size``, never an accumulated sum; instances
    in ``rates`` step at a multiple of it (``cosim.master.multirate``)."""

    def __init__(self, system: System, plan: Plan, start: float, step_size: float,
                 exchange: Callable[[int], None] = _no_exchange, time_every: int = 16,
                 position: memoryview | None = None, *,
                 rates: Mapping[str, int] | None = None):
        self.system = system
        self.plan = plan
        self.start = start
        self.step_size = step_size
        self.exchange = exchange  # wrapped by multirate and adaptive masters
        self.handed_exchange = exchange  # as handed in (MPI: its ``maximum`` too)
        self.time_every = time_every
        self.ended: list[str] = []  # instances that ended the simulation (terminateSimulation)
        # before each FMI call, its code goes into the CALL slot of ``position`` (a supervisor
        # reads it: which instance crashed or hangs in which call; cosim.master.journal)
        self.position = journal.private_position() if position is None else position
        self.call_codes = journal.call_codes(system.layout.instances, system.local)
        self._seconds = dict.fromkeys(system.local, 0.0)
        self._ones = np.ones(len(system.signals))  # signals · 1 is finite iff all signals are
        # the events FMUs announce (cosim.event_times), landed on when every FMU can take a
        # step of any size (canHandleVariableCommunicationStepSize)
        variable = all(system.graph.fmu(name).can_handle_variable_step
                       for name in system.layout.instances)
        self._event_slots = tuple(system.layout.event_slots.values()) if variable else ()
        # FMI 3 FMUs that may return early from fmi3DoStep: the whole system's step ends
        # there, by rollback (every FMU getting and setting its state); ``_rollback``: on
        # every rank alike, once ``initialize`` has asked the others
        self._can_roll_back = not rates and variable and all(
            system.graph.fmu(name).can_get_and_set_state for name in system.layout.instances)
        self._early = tuple(instance for instance in system.instances.values()
                            if getattr(instance, "early_return_allowed", False)
                            ) if self._can_roll_back else ()
        self._rollback = bool(self._early)
        self._plain: tuple[list[tuple], ...] = ()  # the stages as calls, once bound
        self._timed: tuple[list[tuple], ...] = ()  # the same, each call timed into ``busy``
        self.rates: Rates | None = None
        if rates and any(m > 1 for m in rates.values()):
            self.rates = Rates(system, rates, start, step_size, plan.levels,
                               len(plan.initial) + len(plan.start))
            self.exchange = self._multirate_exchange

    @property
    def busy(self) -> dict[str, float]:
        """Seconds each local instance's calls have taken in ``advance`` so far (estimated
        from every ``time_every``-th step)."""
        return {name: seconds * self.time_every for name, seconds in self._seconds.items()}

    def reset_busy(self) -> None:
        for name in self._seconds:
            self._seconds[name] = 0.0

    def landing(self, time: float) -> float:
        """The first communication point at or after ``time`` (within 1e-9 of a step)."""
        n = max(0, math.ceil((time - self.start) / self.step_size - 1e-9))
        return self.start + n * self.step_size

    def initialize(self, stop: float | None) -> None:
        """Consistent initialisation: the ``initial`` stages, then the ``start`` stages (the
        system is instantiated and bound)."""
        self._plain = tuple(self._calls(stages, offset, timed=False)
                            for stages, offset in self._phases())
        self._timed = tuple(self._calls(stages, offset, timed=True)
                            for stages, offset in self._phases())
        system, position, codes = self.system, self.position, self.call_codes
        agree = getattr(self.handed_exchange, "maximum", None)
        if agree is not None and self._can_roll_back:
            self._rollback = bool(agree(np.array([float(bool(self._early))]))[0])
        if self.rates is not None and stop is not None:
            self.rates.stop = stop
        for name, instance in system.instances.items():
            position[journal.CALL] = codes[name][0]
            instance.setup_experiment(self.start, stop)
            instance.enter_initialization_mode()
        self._run(self._plain[0], self.start)
        for name, instance in system.instances.items():
            position[journal.CALL] = codes[name][0]
            instance.exit_initialization_mode()
        self._run(self._plain[1], self.start)
        position[journal.CALL] = 0
        self._check_finite(self.start)
        if self.rates is not None:
            self.rates.accept(self.start)

    def advance(self, time: float, until: float) -> float:
        """One step from ``time`` (a communication point) to the next (``_next_point``). The
        fixed step goes past ``until`` if it must (scenario events and the stop time fall on
        the grid: ``landing``)."""
        reached, step, n = self._next_point(time)
        stages = self._timed[2] if n % self.time_every == 0 else self._plain[2]
        if self._rollback:
            reached, step = self._step_to_early_return(stages, time, reached, step)
        else:
            self._run(stages, time, step)
        if not math.isfinite(self.system.signals.dot(self._ones)):
            self._check_finite(reached)
        if self.rates is not None:
            self.rates.accept(reached)
        return reached

    def _step_to_early_return(self, stages: list[tuple], time: float, reached: float,
                              step: float) -> tuple[float, float]:
        """The step from ``time`` to ``reached``; where an FMU returns early from fmi3DoStep at
        t_e (its event), every instance is rolled back to ``time`` (FMU state and signals) and
        the step is taken again to t_e, where that FMU handles its event. (reached, step)."""
        system = self.system
        saved = {name: instance.get_state() for name, instance in system.instances.items()}
        signals = system.signals.copy()
        try:
            for instance in self._early:
                instance.stop_at_early_return = True
            self._run(stages, time, step)
            earliest = min((i.returned_at for i in self._early if i.returned_at is not None),
                           default=math.inf)
            agree = getattr(self.handed_exchange, "maximum", None)
            if agree is not None:  # under MPI: the earliest on any rank
                earliest = -float(agree(np.array([-earliest]))[0])
            for instance in self._early:
                instance.stop_at_early_return = False
            if earliest < reached:
                reached = earliest
                for name, instance in system.instances.items():
                    instance.set_state(saved[name])
                    instance.time = time
                system.signals[:] = signals
                step = reached - time
                self._run(stages, time, step)
        finally:
            for instance in self._early:
                instance.stop_at_early_return = False
            for name, instance in system.instances.items():
                instance.free_state(saved[name])
        return reached, step

    def instance_steps(self, steps: int) -> dict[str, int]:
        """FMU steps each local instance took in ``steps`` communication steps."""
        taken = dict.fromkeys(self.system.local, steps)
        if self.rates is not None:
            taken.update((name, count) for name, count in self.rates.steps.items()
                         if name in taken)
        return taken

    def state(self) -> dict:
        """What a checkpoint keeps of the master beyond the FMUs and the signal array:
        ``common`` (alike on every rank) and ``tables`` keyed by slot or instance (each rank
        the entries valid on it; merged over the ranks by union). Empty at a fixed step."""
        if self.rates is None:
            return {"common": {}, "tables": {}}
        rates = self.rates.state()
        return {"common": {"rates": rates["common"]},
                "tables": {f"rates.{key}": table for key, table in rates["tables"].items()}}

    def set_state(self, saved: Mapping) -> None:
        """Go on from ``state()`` (merged over the ranks) at a resumed run's first point."""
        if self.rates is not None:
            self.rates.set_state(_part(saved, "rates"))

    def _multirate_exchange(self, stage: int) -> None:
        self.handed_exchange(stage)
        self.rates.after_stage(stage)

    def _next_point(self, time: float) -> tuple[float, float, int]:
        """(the next communication point, the step to it, the grid index at or before
        ``time``): the next point of the grid, or an event an FMU announced before it
        (``cosim.coupling.event_times``: the step ends there, and the next one goes on to the
        grid). A step from a grid point to the next is ``step_size`` itself."""
        h = self.step_size
        n = math.floor((time - self.start) / h + 1e-9)  # the grid point at or before ``time``
        reached, step = self.start + (n + 1) * h, h
        if self._event_slots:
            event = next_event(self.system.signals, self._event_slots, time)
            if event < reached - 1e-9 * h:
                reached = event
        if self.rates is not None:  # the end of a multirate instance's step
            limit = self.rates.next_end(time)
            if limit < reached - 1e-9 * h:
                reached = limit
        if reached != self.start + (n + 1) * h or time != self.start + n * h:
            step = reached - time
        return reached, step, n

    def _phases(self) -> tuple[tuple[tuple[Stage, ...], int], ...]:
        """(stages, exchange index of the first) of the initial, start and step phases."""
        plan = self.plan
        return ((plan.initial, 0), (plan.start, len(plan.initial)),
                (plan.step, len(plan.initial) + len(plan.start)))

    def _calls(self, stages: tuple[Stage, ...], offset: int, timed: bool) -> list[tuple]:
        """Per stage: (exchange index, sets inputs, steps, [(set inputs, do step, get outputs,
        name, set/step/get call codes)] of the local instances); ``timed``: each call adds
        its seconds to ``busy``."""
        system, local = self.system, set(self.system.local)
        wrap = self._timing if timed else _untimed
        rates = self.rates if offset == len(self.plan.initial) + len(self.plan.start) else None
        out = []
        for i, stage in enumerate(stages):
            calls = []
            for name in stage.instances:
                if name not in local:
                    continue
                instance = system.instances[name]
                three = (system.gatherers[name], instance.do_step, instance.get_outputs)
                if rates is not None and name in rates.multiples:
                    three = (rates.guard if stage.action == STEP else rates.settle_guard)(
                        name, *three)
                calls.append((*(wrap(call, name) for call in three), name,
                              *self.call_codes[name][1:]))
            out.append((offset + i, stage.action != READ, stage.action == STEP, calls))
        return out

    def _timing(self, call: Callable, name: str) -> Callable:
        """``call`` adding the seconds it takes to ``name``'s busy time."""
        seconds, clock = self._seconds, perf_counter

        def timed(*args):
            began = clock()
            result = call(*args)
            seconds[name] += clock() - began
            return result
        return timed

    def _run(self, stages: list[tuple], time: float, step_size: float = 0.0) -> None:
        """The one loop over stages: inputs set, step (step stages) from ``time`` over
        ``step_size``, outputs got, exchange."""
        exchange, ended = self.exchange, self.ended
        position, slot = self.position, journal.CALL
        if step_size and self.rates is not None:
            self.rates.begin(time, step_size)
        for index, sets, steps, calls in stages:
            if sets:
                for set_inputs, _, _, _, set_code, _, _ in (self._running(calls) if ended
                                                             else calls):
                    position[slot] = set_code
                    set_inputs()
            if steps:
                for _, do_step, _, name, _, step_code, _ in calls:
                    position[slot] = step_code
                    if do_step(time, step_size):
                        ended.append(name)
            for _, _, get_outputs, _, _, _, get_code in calls:
                position[slot] = get_code
                get_outputs()
            position[slot] = 0
            exchange(index)

    def _running(self, calls: list[tuple]) -> list[tuple]:
        """``calls`` without the instances that ended (their inputs may no longer be set)."""
        return [call for call in calls if call[3] not in self.ended]

    def _check_finite(self, time: float) -> None:
        """Stop at the first value that is not finite, in data-flow order (its producer)."""
        signals, layout = self.system.signals, self.system.layout
        bad = ~np.isfinite(signals)
        if not bad.any():
            return  # the sum overflowed; every value is finite
        order = [name for stage in self.plan.step for name in stage.instances]
        for name in dict.fromkeys(order):
            where = np.flatnonzero(bad[layout.slices[name]])
            if where.size:
                variable = layout.variables[name][where[0]]
                value = signals[layout.slices[name]][where[0]]
                raise SimulationError(
                    f"{name}.{variable} = {value} is not finite: the run stops here, before it "
                    "spreads to every FMU it feeds (an algebraic loop with a gain of 1 or more, "
                    "a step too large for a stiff coupling, or an FMU driven outside its range; "
                    "try a smaller step, and see the warnings of `cosim check`)",
                    instance=name, time=time)


def _untimed(call: Callable, name: str) -> Callable:
    return call


def _part(saved: Mapping, prefix: str) -> dict:
    """The part of a master's ``state()`` that ``prefix`` (``rates``) wrote."""
    return {"common": saved["common"][prefix],
            "tables": {key[len(prefix) + 1:]: table for key, table in saved["tables"].items()
                       if key.startswith(prefix + ".")}}
