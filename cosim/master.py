"""Master algorithms: fixed-step Jacobi and Gauss-Seidel, defined on the coupling graph.

A ``Plan`` is a list of *levels*: instances in one level do not feed each other within a step,
so they can step in any order or on different MPI ranks. Within a step, each level gathers its
inputs (from the signal array), steps, and writes its outputs; then ``exchange(level)`` makes the
values it produced available to other processes (a no-op in one process).

- Jacobi: one level with every instance; all inputs come from the previous communication point.
- Gauss-Seidel: instances in ``CouplingGraph.gauss_seidel_order()``; an instance is placed one
  level after the latest instance that feeds it and comes earlier in that order, so it sees
  values of the current step. Feedback edges (later → earlier) carry the previous step's value.

Because the plan depends only on the graph, results do not depend on how instances are split
over processes. The algorithm knows nothing about files or MPI: the ``exchange`` callable is
handed in.

Call order: ``initialize(start, stop)`` → ``step(n)`` for n = 0 … N-1 → (the caller closes the
system). Communication point n is ``start + n * step_size``, never an accumulated sum.

The master also adds up, per instance, the seconds its calls take (gather, step, outputs):
``busy``. A timed step costs one clock read per call, about 0.6 µs per instance (10 % of the
cheapest C FMU's step), so only every ``time_every``-th step is timed and ``busy`` is scaled up
from those: every step under MPI (balance), every 16th in one process (reports).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter

from cosim import journal
from cosim.graph import CouplingGraph
from cosim.system import System

ALGORITHMS = ("jacobi", "gauss-seidel")


@dataclass(frozen=True)
class Plan:
    """What runs in which order; computed from the graph only."""

    algorithm: str
    levels: tuple[tuple[str, ...], ...]
    init_passes: int

    def level_of(self) -> dict[str, int]:
        return {name: i for i, level in enumerate(self.levels) for name in level}


def make_plan(graph: CouplingGraph, algorithm: str) -> Plan:
    """The levels of ``algorithm`` ("jacobi" or "gauss-seidel") on ``graph``."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm '{algorithm}'; use one of {ALGORITHMS}")
    order = graph.gauss_seidel_order()
    cyclic = len(graph.algebraic_loops()) > 0
    init_passes = 3 if cyclic else 1  # fixed, so every partition does the same arithmetic
    if algorithm == "jacobi":
        return Plan(algorithm, (tuple(order),), init_passes)
    position = {name: i for i, name in enumerate(order)}
    level: dict[str, int] = {}
    for name in order:
        feeding = [level[s] for s, _ in graph.graph.in_edges(name)
                   if s != name and position[s] < position[name]]
        level[name] = 1 + max(feeding) if feeding else 0
    levels = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for name in order:
        levels[level[name]].append(name)
    return Plan(algorithm, tuple(tuple(group) for group in levels), init_passes)


def _no_exchange(level: int) -> None:
    return None


class FixedStepMaster:
    """Steps a ``System`` by ``plan`` with a fixed communication step."""

    def __init__(self, system: System, plan: Plan, start: float, step_size: float,
                 exchange: Callable[[int], None] = _no_exchange, time_every: int = 16,
                 position: memoryview | None = None):
        self.system = system
        self.plan = plan
        self.start = start
        self.step_size = step_size
        self.exchange = exchange
        local = set(system.local)
        self.local_levels = [[system.instances[n] for n in level if n in local]
                             for level in plan.levels]
        self.local_names = [[n for n in level if n in local] for level in plan.levels]
        self.time_every = time_every
        self._seconds = [[0.0] * len(level) for level in self.local_levels]
        # before each FMI call, its code goes into the CALL slot of ``position`` (a supervisor
        # reads it: which instance crashed or hangs in which call; cosim.journal)
        self.position = journal.private_position() if position is None else position
        number = {name: i for i, name in enumerate(system.layout.instances)}
        self.call_codes = {name: tuple(journal.call_code(number[name], call)
                                       for call in range(4)) for name in system.local}
        self._calls = [[(instance, *self.call_codes[instance.name][1:]) for instance in level]
                       for level in self.local_levels]

    @property
    def busy(self) -> dict[str, float]:
        """Seconds each local instance's calls have taken in ``step`` so far (estimated from
        every ``time_every``-th step)."""
        return {instance.name: seconds * self.time_every
                for level, times in zip(self.local_levels, self._seconds, strict=True)
                for instance, seconds in zip(level, times, strict=True)}

    def reset_busy(self) -> None:
        self._seconds = [[0.0] * len(level) for level in self.local_levels]

    def initialize(self, stop: float | None) -> None:
        """Consistent initialisation: outputs propagated to inputs in plan order."""
        system, position, codes = self.system, self.position, self.call_codes
        for name, instance in system.instances.items():
            position[journal.CALL] = codes[name][0]
            instance.setup_experiment(self.start, stop)
            instance.enter_initialization_mode()
        for _ in range(self.plan.init_passes):
            for index, names in enumerate(self.local_names):
                for name in names:
                    position[journal.CALL] = codes[name][journal.SET_INPUTS]
                    system.gather(name)
                    position[journal.CALL] = codes[name][journal.GET_OUTPUTS]
                    system.instances[name].get_outputs()
                position[journal.CALL] = 0
                self.exchange(index)
        for name, instance in system.instances.items():
            position[journal.CALL] = codes[name][0]
            instance.exit_initialization_mode()
        for index, level in enumerate(self.local_levels):  # outputs after initialisation
            for instance in level:
                position[journal.CALL] = codes[instance.name][journal.GET_OUTPUTS]
                instance.get_outputs()
            position[journal.CALL] = 0
            self.exchange(index)

    def step(self, n: int) -> None:
        """Advance every instance from communication point n to n + 1."""
        if n % self.time_every == 0:
            self._timed_step(n)
            return
        time = self.start + n * self.step_size
        step_size = self.step_size
        gather, position, slot = self.system.gather, self.position, journal.CALL
        for index, calls in enumerate(self._calls):
            for instance, set_code, _, _ in calls:
                position[slot] = set_code
                gather(instance.name)
            for instance, _, step_code, _ in calls:
                position[slot] = step_code
                instance.do_step(time, step_size)
            for instance, _, _, get_code in calls:
                position[slot] = get_code
                instance.get_outputs()
            position[slot] = 0
            self.exchange(index)

    def _timed_step(self, n: int) -> None:
        """``step`` (same calls, same order) adding each instance's seconds to ``busy``."""
        time = self.start + n * self.step_size
        step_size = self.step_size
        gather, clock = self.system.gather, perf_counter
        position, slot = self.position, journal.CALL
        for index, calls in enumerate(self._calls):
            seconds = self._seconds[index]
            then = clock()
            for i, (instance, set_code, _, _) in enumerate(calls):
                position[slot] = set_code
                gather(instance.name)
                now = clock()
                seconds[i] += now - then
                then = now
            for i, (instance, _, step_code, _) in enumerate(calls):
                position[slot] = step_code
                instance.do_step(time, step_size)
                now = clock()
                seconds[i] += now - then
                then = now
            for i, (instance, _, _, get_code) in enumerate(calls):
                position[slot] = get_code
                instance.get_outputs()
                now = clock()
                seconds[i] += now - then
                then = now
            position[slot] = 0
            self.exchange(index)
