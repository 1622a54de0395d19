"""Multirate: instances that take communication steps of their own, a whole multiple of the
master's (``Settings.rates``: instance -> multiple; scenario ``instances.<i>.step``).

An instance of multiple m is *due* at a communication point t when its last step has ended
there; it then steps at once over m times the step the master takes from t (``Settings.step``
at a fixed step, the controlled step under ``simulation.adaptive``; never past the stop time),
and is left alone until the master reaches the end of that step (both masters land there).
Between its own points:

- **its outputs, read by the others**: its continuous Float64 outputs are interpolated
  linearly between the values at the start and the end of its step (it ran ahead, so both are
  known); an instance reading one over a step [t', t' + h] gets the value at t' + h/2 (held
  over the step, that is exact for a linear output up to O(h^3) per step), and at each
  communication point the signal array holds the value there (what a results file records).
  In the step where it is due, a reader stepping with it (Jacobi, or an earlier Gauss-Seidel
  level) gets the line through its last step extrapolated to t' + h/2. Discrete outputs,
  Integer, Boolean and announced event times hold the value of the step's end.
- **its inputs**: each is the line through the values its source had at the last two
  communication points, evaluated at the middle of the instance's own step (order 1; the
  value at t itself after an event or at the start).
- it settles (``cosim.master.master``: direct feedthrough outputs computed again from the
  inputs at the communication point) only at the end of its own step, where its FMU is.

``Rates`` keeps that bookkeeping; ``FixedStepMaster`` wraps the FMI calls of a multirate
instance with ``guard`` and calls ``begin``/``after_stage``/``accept``; a step rejected by the
adaptive master is undone with ``undo``. ``state``/``set_state`` carry it through a checkpoint.
Every rank keeps the same bookkeeping for every multirate instance (the interpolation of a
value made on another rank is the same arithmetic on the same values), so a run is identical
whatever the rank count.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping

import numpy as np

from cosim.coupling.system import System
from cosim.fmi.fmu_file import FLOAT64_TYPES


class Rates:
    """The steps of the multirate instances (``multiples`` > 1) of ``system``."""

    def __init__(self, system: System, multiples: Mapping[str, int], start: float, base: float,
                 levels: tuple[tuple[str, ...], ...], first_step_stage: int):
        graph, layout = system.graph, system.layout
        self.signals = system.signals
        self.multiples = {name: int(m) for name, m in multiples.items() if m > 1}
        self.local = [name for name in self.multiples if name in system.local]
        self.start, self.base, self.tolerance = start, base, 1e-9 * base
        level = {name: i for i, names in enumerate(levels) for name in names}
        self.stage = {name: first_step_stage + level[name] for name in self.multiples}
        self.last_stage = first_step_stage + len(levels) - 1
        events = set(layout.event_slots.values())
        self.slots: dict[str, np.ndarray] = {}  # interpolated: continuous Float64 outputs
        for name in self.multiples:
            fmu = graph.fmu(name)
            self.slots[name] = np.array(
                [slot for v in layout.variables[name]
                 if fmu.variables[v].type in FLOAT64_TYPES
                 and fmu.variables[v].variability == "continuous"
                 for slot in layout.indices(name, v) if slot not in events], dtype=np.intp)
        self.inputs: dict[str, np.ndarray] = {}  # the slots a multirate instance reads
        for c in graph.connections():
            if c.target in self.multiples:
                self.inputs[c.target] = np.union1d(
                    self.inputs.get(c.target, np.empty(0, dtype=np.intp)),
                    np.fromiter(layout.indices(c.source, c.output), dtype=np.intp))
        read = [s for s in self.inputs.values()]
        self.read = np.unique(np.concatenate(read)) if read else np.empty(0, dtype=np.intp)
        self.position = {name: np.searchsorted(self.read, slots)
                         for name, slots in self.inputs.items()}
        self.stop = float("inf")
        self.time, self.step = 0.0, 0.0  # the master's step under way
        self.stepping: set[str] = set()  # the instances due in it
        self.undoable = False  # ``undo`` is called (the adaptive master rolls steps back)
        self._undo: dict | None = None
        self._first: dict[str, np.ndarray] = {}  # at the start of the step under way
        self.state_ = {  # everything a checkpoint keeps (``state``)
            "ends": dict.fromkeys(self.multiples, -float("inf")),  # due from then on
            "sizes": dict.fromkeys(self.multiples, 0.0),  # its step under way
            "began": dict.fromkeys(self.multiples, 0.0),
            "first": {name: np.zeros(len(s)) for name, s in self.slots.items()},  # at began
            "last": {name: np.zeros(len(s)) for name, s in self.slots.items()},  # at the end
            "known": dict.fromkeys(self.multiples, False),  # a step of its own taken
            "steps": dict.fromkeys(self.multiples, 0),  # FMU steps taken
            "times": [], "values": [],  # the read values at the last two points
        }

    # -- the master's calls ------------------------------------------------------------------
    def begin(self, time: float, step: float) -> None:
        """Before the stages of a step from ``time`` over ``step``: who is due, and the
        outputs of the others set to their value in the middle of the step."""
        state, signals = self.state_, self.signals
        if self.undoable:
            self._undo = copy.deepcopy(state)
        self.time, self.step = time, step
        self.stepping = {name for name, end in state["ends"].items()
                         if time >= end - self.tolerance}
        middle = time + 0.5 * step
        self._first = {}
        for name, slots in self.slots.items():
            if name in self.stepping:
                self._first[name] = state["last"][name].copy() if state["known"][name] \
                    else signals[slots].copy()  # the values at ``time``
                if state["known"][name]:  # the line through its last step, on
                    signals[slots] = self._line(name, middle)
        for name in self.stepping:  # every rank alike
            size = min(max(self.multiples[name] * self.base, step), self.stop - time)
            end = time + size
            on_grid = self.start + round((end - self.start) / self.base) * self.base
            if abs(end - on_grid) <= self.tolerance:  # the master's point there, exactly
                end = on_grid
            state["ends"][name], state["sizes"][name] = end, size
            state["began"][name] = time
            state["steps"][name] += 1
        for name, slots in self.slots.items():
            if name not in self.stepping:
                signals[slots] = self._line(name, middle)

    def after_stage(self, stage: int) -> None:
        """After the exchange of ``stage``: the outputs of the instances that stepped in it
        taken as their step's end, then set to the middle of the master's step; after the
        last step stage, every interpolated output set to its value at the step's end."""
        state, signals = self.state_, self.signals
        middle = self.time + 0.5 * self.step
        for name in self.stepping:
            if self.stage[name] == stage:
                slots = self.slots[name]
                state["first"][name] = self._first[name]
                state["last"][name] = signals[slots].copy()
                state["known"][name] = True
                signals[slots] = self._line(name, middle)
        if stage == self.last_stage:
            reached = self.time + self.step
            for name, slots in self.slots.items():
                if state["known"][name]:
                    signals[slots] = self._line(name, reached)

    def accept(self, time: float) -> None:
        """The step to ``time`` is kept: the values multirate instances read, remembered."""
        state, signals = self.state_, self.signals
        for name, slots in self.slots.items():  # settled at the end of its step: that value
            if state["known"][name] and abs(state["ends"][name] - time) <= self.tolerance:
                state["last"][name] = signals[slots].copy()
        if len(self.read):
            state["times"].append(time)
            state["values"].append(self.signals[self.read])
            if len(state["times"]) > 2:
                del state["times"][0], state["values"][0]
        self._undo = None

    def undo(self) -> None:
        """The step under way is rejected (the adaptive master): as before ``begin``."""
        if self._undo is not None:
            self.state_ = self._undo
            self._undo = None

    def forget(self, time: float) -> None:
        """After an event: no line through values across it."""
        state = self.state_
        state["times"].clear()
        state["values"].clear()
        self.accept(time)

    def next_end(self, time: float) -> float:
        """The first end of a multirate step after ``time`` (a master lands on it)."""
        return min((end for end in self.state_["ends"].values()
                    if end > time + self.tolerance), default=float("inf"))

    def in_step(self, name: str) -> bool:
        """Whether ``name`` takes the master's step under way with the others (due, and its
        step is the master's)."""
        return name in self.stepping and \
            abs(self.state_["sizes"][name] - self.step) <= self.tolerance

    @property
    def steps(self) -> dict[str, int]:
        """FMU steps each multirate instance has taken."""
        return dict(self.state_["steps"])

    # -- the FMI calls of a multirate instance ------------------------------------------------
    def guard(self, name: str, set_inputs: Callable[[], None], do_step: Callable,
              get_outputs: Callable[[], None]) -> tuple[Callable, Callable, Callable]:
        """``name``'s three calls, made only where it is due: inputs from the line through
        their sources' last values, one step of its own, outputs."""
        signals, stepping = self.signals, self.stepping_of
        slots = self.inputs.get(name, np.empty(0, dtype=np.intp))
        position = self.position.get(name, np.empty(0, dtype=np.intp))
        state = self.state_of

        def guarded_set() -> None:
            if name not in stepping():
                return
            values = state()["values"]
            if len(values) < 2 or not len(slots):
                set_inputs()
                return
            times = state()["times"]
            middle = self.time + 0.5 * state()["sizes"][name]
            slope = (values[-1][position] - values[-2][position]) / (times[-1] - times[-2])
            held = signals[slots]
            signals[slots] = values[-1][position] + slope * (middle - times[-1])
            try:
                set_inputs()
            finally:
                signals[slots] = held

        def guarded_step(time: float, step: float) -> bool:
            if name not in stepping():
                return False
            return do_step(time, state()["sizes"][name])

        def guarded_get() -> None:
            if name in stepping():
                get_outputs()
        return guarded_set, guarded_step, guarded_get

    def settle_guard(self, name: str, set_inputs: Callable[[], None], do_step: Callable,
                     get_outputs: Callable[[], None]) -> tuple[Callable, Callable, Callable]:
        """``name``'s calls in a settle stage, made only where the master's step ends where
        its own step does (its FMU is at that time): its direct feedthrough outputs computed
        from the inputs there, and kept as its step's end (``accept``)."""
        def at_its_end() -> bool:
            return abs(self.state_["ends"][name] - (self.time + self.step)) <= self.tolerance

        def guarded_set() -> None:
            if at_its_end():
                set_inputs()

        def guarded_get() -> None:
            if at_its_end():
                get_outputs()
        return guarded_set, do_step, guarded_get

    def stepping_of(self) -> set[str]:
        return self.stepping

    def state_of(self) -> dict:
        return self.state_

    # -- checkpoints ---------------------------------------------------------------------------
    def state(self) -> dict:
        """What a checkpoint keeps, as JSON-able values: ``common`` (alike on every rank) and
        ``tables`` keyed by slot, each rank giving the values valid on it (the outputs of its
        multirate instances and the values they read), merged over the ranks by union."""
        state = self.state_
        common = {key: dict(state[key]) for key in ("ends", "sizes", "began", "known", "steps")}
        common["times"] = list(state["times"])
        first, last, read = {}, {}, {}
        for name in self.local:
            for i, slot in enumerate(self.slots[name].tolist()):
                first[str(slot)] = float(state["first"][name][i])
                last[str(slot)] = float(state["last"][name][i])
            for slot in self.inputs.get(name, np.empty(0, dtype=np.intp)).tolist():
                k = int(np.searchsorted(self.read, slot))
                read[str(slot)] = [float(v[k]) for v in state["values"]]
        return {"common": common, "tables": {"first": first, "last": last, "read": read}}

    def set_state(self, saved: Mapping) -> None:
        """Go on from ``state()`` (merged over the ranks)."""
        common, tables = saved["common"], saved["tables"]
        state = {key: dict(common[key]) for key in ("ends", "sizes", "began", "known", "steps")}
        state["times"] = list(common["times"])
        for key in ("first", "last"):
            state[key] = {name: np.array([tables[key].get(str(s), 0.0) for s in slots.tolist()])
                          for name, slots in self.slots.items()}
        state["values"] = [np.array([tables["read"].get(str(s), [0.0] * len(state["times"]))[k]
                                     for s in self.read.tolist()])
                           for k in range(len(state["times"]))]
        self.state_ = state

    def _line(self, name: str, at: float) -> np.ndarray:
        """``name``'s interpolated outputs at ``at``: the line through its last step."""
        state = self.state_
        first, last = state["first"][name], state["last"][name]
        began, size = state["began"][name], state["sizes"][name]
        if size <= 0.0:
            return last.copy()
        return first + (last - first) * ((at - began) / size)
