"""The adaptive master: the communication step chosen from an error estimate, inputs
extrapolated, steps rejected and repeated through FMU state rollback, events landed on.

It runs the same plan (Jacobi or Gauss-Seidel stages) as ``FixedStepMaster``; what differs is
the step and the inputs:

- **Extrapolation**: every input that still holds a value of t when its instance steps (all of
  them under Jacobi; under Gauss-Seidel those fed from the same or a later level) is set to
  the polynomial through the last 1, 2 or 3 accepted values of its source (order 0, 1, 2;
  ``Adaptive.extrapolation``, or ``orders`` per output) evaluated at the middle of the step,
  t + h/2: held over the step, that value is exact for a linear input up to O(h^3) per step,
  so order 1 makes the coupling error of order 2 in h (order 0 at t is the fixed-step
  master's zero-order hold). An input fed from an earlier level (Gauss-Seidel) knows its
  source's values at t and t + h when it is set: it takes their middle (interpolated; order
  0: the value at t + h, as the fixed-step master). Only continuous Real outputs are
  extrapolated; discrete ones (FMI variability ``discrete``, Integer, Boolean) hold.
- **Error estimate**: after a step, each continuous coupling value against the same
  polynomial evaluated at t + h (the deviation from its extrapolation: of order h^(p+1)),
  relative to ``tolerance`` times the largest magnitude the value has had so far; the
  largest ratio is the error ``e``. A step with ``e > 1`` is rejected while it is longer than
  ``Settings.step``: every instance is put back (``System.restore``) and the step retried at
  ``h * max(0.2, 0.9 e^(-1/(p+1)))``; an accepted one proposes ``h * min(2, 0.9
  e^(-1/(p+1)))`` for the next step, at most ``max_step``. Steps are whole multiples of
  ``Settings.step`` from the start (the grid), except a step that ends on an event.
- **Events**: a step ends on the next event an FMU announces (``cosim.coupling.event_times``;
  one smallest step before it first: under Gauss-Seidel the instances after the announcer
  react within the step that ends on it) and on ``until`` (a scenario event, the stop time);
  the values of the FMU announcing the event are not judged in the step that ends on it (the
  event changes them), and after an event the step starts again at ``Settings.step`` with no
  history to extrapolate from.
- **Discarded steps** (fmi2Discard): rolled back and retried at half the step.
- **Fallbacks**, each said once in ``log.notes``: an FMU that cannot get and set its state
  (``canGetAndSetFMUstate``, ``canSerializeFMUstate`` false): no rollback, a step whose error
  is too large is kept and the next one is shorter; an FMU that cannot handle a variable
  communication step (``canHandleVariableCommunicationStepSize`` false): the fixed step.

Everything it decides goes into ``log`` (``MasterLog``): every accepted step (time reached,
size, error, why that size) and every rejection, which ``cosim.results.recorder`` writes to the
results file (``/master``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from cosim.coupling.event_times import next_event
from cosim.coupling.system import System
from cosim.errors import StepDiscarded
from cosim.fmi.fmu_file import FLOAT64_TYPES
from cosim.master.description import Adaptive
from cosim.master.master import FixedStepMaster, Plan, _no_exchange

# Why a step had the size it had (``MasterLog.reasons``; /master/step_reason in results).
CONTROLLED, LIMITED, EVENT, UNTIL, FIXED, BEFORE_EVENT, RATE = 0, 1, 2, 3, 4, 5, 6
REASONS = ("controlled by the error estimate", "limited by max_step",
           "ends on an event an FMU announced", "ends on a scenario event or the stop time",
           "the fixed step (simulation.step)", "ends one smallest step before an announced "
           "event", "ends where a multirate instance's own step ends")
REJECTED_ERROR, REJECTED_DISCARD = 0, 1
REJECTIONS = ("error estimate above the tolerance", "an FMU discarded the step")
_LOG_COLUMNS = ("times", "sizes", "errors", "reasons", "rejected_times", "rejected_sizes",
                "rejected_kinds", "iterations")  # MasterLog's lists kept by a checkpoint
GROWTH, SHRINK, SAFETY = 2.0, 0.2, 0.9  # bounds of the step change, and the safety factor
FLOOR = 1e-12  # magnitude below which a value's tolerance stops shrinking


@dataclass
class MasterLog:
    """What the master did: accepted steps (time reached, size, error, reason), rejections
    (time, size tried, kind), FMU steps per instance, and notes (fallbacks)."""

    times: list[float] = field(default_factory=list)
    sizes: list[float] = field(default_factory=list)
    errors: list[float] = field(default_factory=list)
    reasons: list[int] = field(default_factory=list)
    rejected_times: list[float] = field(default_factory=list)
    rejected_sizes: list[float] = field(default_factory=list)
    rejected_kinds: list[int] = field(default_factory=list)
    instance_steps: dict[str, int] = field(default_factory=dict)
    iterations: list[int] = field(default_factory=list)  # per accepted step (iterative)
    notes: list[str] = field(default_factory=list)

    def datasets(self) -> dict[str, np.ndarray]:
        """The log as columns (``/master`` of a results file: docs/results-format.md)."""
        return {"time": np.array(self.times, dtype=float),
                "step": np.array(self.sizes, dtype=float),
                "error": np.array(self.errors, dtype=float),
                "reason": np.array(self.reasons, dtype=np.int8),
                "rejected_time": np.array(self.rejected_times, dtype=float),
                "rejected_step": np.array(self.rejected_sizes, dtype=float),
                "rejected_kind": np.array(self.rejected_kinds, dtype=np.int8),
                **({"iterations": np.array(self.iterations, dtype=np.int32)}
                   if self.iterations else {})}

    def attributes(self) -> dict[str, str | int]:
        """Counts, the meaning of the codes, steps per instance and notes (JSON where not a
        number)."""
        return {"accepted": len(self.times), "rejected": len(self.rejected_times),
                "reasons": json.dumps(REASONS), "rejection_kinds": json.dumps(REJECTIONS),
                "instance_steps": json.dumps(self.instance_steps),
                "notes": json.dumps(self.notes)}


class AdaptiveMaster(FixedStepMaster):
    """``FixedStepMaster``'s plan and stage loop with the step and inputs chosen as above."""

    def __init__(self, system: System, plan: Plan, start: float, step_size: float,
                 exchange: Callable[[int], None] = _no_exchange, time_every: int = 16,
                 position: memoryview | None = None, *, control: Adaptive,
                 rates: Mapping[str, int] | None = None):
        super().__init__(system, plan, start, step_size, exchange, time_every, position,
                         rates=rates)
        self.control = control
        self._rollback = self._can_roll_back = False  # an early return continues inside the
        # FMU (Instance3.do_step)
        self.log = MasterLog(instance_steps=dict.fromkeys(system.local, 0))
        self.max_multiple = max(1, math.floor(control.max_step / step_size + 1e-9))
        graph, layout = system.graph, system.layout
        level = {name: i for i, names in enumerate(plan.levels) for name in names}
        # slot -> (order, read by a later level or its own, read by an earlier one, owner)
        watched: dict[int, tuple[int, bool, bool, str]] = {}
        local = set(system.local)
        for c in graph.connections():
            variable = graph.fmu(c.source).variables[c.output]
            if variable.type not in FLOAT64_TYPES or variable.variability != "continuous":
                continue
            if c.source not in local and c.target not in local:
                continue  # under MPI: neither made nor read here
            order = control.orders.get(f"{c.source}.{c.output}", control.extrapolation)
            behind = level[c.source] >= level[c.target]  # holds a value of t when stepped
            for slot in layout.indices(c.source, c.output):
                _, was_behind, was_ahead, _ = watched.get(slot, (order, False, False, ""))
                watched[slot] = (order, was_behind or behind, was_ahead or not behind,
                                 c.source)
        slots = sorted(watched)
        self.slots = np.array(slots, dtype=np.intp)
        orders = np.array([watched[s][0] for s in slots], dtype=int)
        self.exponents = 1.0 / (orders + 1.0)
        self.linear = orders >= 1
        self.quadratic = orders >= 2
        self.extrapolated = np.array([watched[s][1] for s in slots], dtype=bool) & (orders > 0)
        self.extrapolated_slots = self.slots[self.extrapolated]
        # Gauss-Seidel: a value read by a later level is known at t and t + h when it is read:
        # the input takes the middle of the two (interpolated), after the source's stage
        ahead = np.array([watched[s][2] for s in slots], dtype=bool) & (orders > 0)
        first_step = len(plan.initial) + len(plan.start)
        self._interpolated: dict[int, np.ndarray] = {}  # stage index -> positions in slots
        for position in np.flatnonzero(ahead):
            stage = first_step + level[watched[slots[position]][3]]
            self._interpolated.setdefault(stage, []).append(position)
        self._interpolated = {stage: np.array(p, dtype=np.intp)
                              for stage, p in self._interpolated.items()}
        self._restore_after = first_step + len(plan.levels) - 1  # the last step stage
        self._ahead = np.flatnonzero(ahead)
        self._actual = np.zeros(len(slots))  # the values at t + h of the interpolated ones
        self._inner_exchange = self.exchange
        if len(self._ahead):
            self.exchange = self._interpolating_exchange
        owners = [watched[s][3] for s in slots]
        # the error of the values made here; every rank takes the largest (``agree``)
        self.made_here = np.array([o in local for o in owners], dtype=bool)
        # a multirate instance's values, judged only in a step it takes with the others
        # (over a longer step of its own they are a line, whose error no shorter controlled
        # step reduces: cosim.master.multirate)
        self.multirate_owned = {} if self.rates is None else {
            name: np.array([o == name for o in owners], dtype=bool)
            for name in self.rates.multiples}
        self.agree = getattr(self.handed_exchange, "maximum", None)
        self.owned = {name: np.array([o == name for o in owners], dtype=bool)
                      for name in layout.event_slots}
        self.event_owner = {slot: name for name, slot in layout.event_slots.items()}
        self.scale = np.full(len(slots), FLOOR)
        self.times: list[float] = []  # accepted communication points, the last 3
        self.values: list[np.ndarray] = []  # the watched values there
        self.multiple = 1  # the next step, in steps of ``step_size``
        fmus = {name: graph.fmu(name) for name in layout.instances}  # every rank alike
        self.rollback = all(f.can_get_and_set_state and f.can_serialize_state
                            for f in fmus.values())
        if self.rates is not None:
            self.rates.undoable = self.rollback
        self.variable = all(f.can_handle_variable_step for f in fmus.values())
        for name, fmu in fmus.items():
            if not fmu.can_handle_variable_step:
                self.log.notes.append(
                    f"'{name}' cannot handle a variable communication step "
                    "(canHandleVariableCommunicationStepSize is false): every step is "
                    f"simulation.step = {step_size:g} s")
            elif not (fmu.can_get_and_set_state and fmu.can_serialize_state):
                self.log.notes.append(
                    f"'{name}' cannot get and set its state (canGetAndSetFMUstate / "
                    "canSerializeFMUstate false): no step is rejected; a step whose error "
                    "is too large is kept and the next one is shorter")

    def landing(self, time: float) -> float:
        """Something due at ``time`` happens there: the master lands on it (``until``)."""
        return time

    def initialize(self, stop: float | None) -> None:
        super().initialize(stop)
        self.restart(self.start)

    def advance(self, time: float, until: float) -> float:
        """One accepted step from ``time``: its size from the error estimate, ending on the
        next announced event or ``until`` if it comes first."""
        if not self.variable:
            reached = super().advance(time, until)
            self._accepted(reached, reached - time, 0.0, FIXED)
            return reached
        base, start, signals = self.step_size, self.start, self.system.signals
        n = math.floor((time - start) / base + 1e-9)
        event = next_event(signals, self._event_slots, time)
        announcer = self._announcer(event)
        stages = self._timed[2] if len(self.log.times) % self.time_every == 0 \
            else self._plain[2]
        rates = self.rates
        own_end = math.inf if rates is None else rates.next_end(time)
        while True:
            k = self.multiple
            reached, reason = start + (n + k) * base, (
                LIMITED if k == self.max_multiple else CONTROLLED)
            if own_end < reached - 1e-9 * base:
                reached, reason = own_end, RATE
            if until <= reached + 1e-9 * base:  # a step ends on it, also where the grid does
                reached, reason = until, UNTIL
            if event <= reached + 1e-9 * base:  # reached by one smallest step (Gauss-Seidel:
                # the instances after the announcer react to it within the step that ends on it)
                if event - time > base * (1 + 1e-9):
                    reached, reason = event - base, BEFORE_EVENT
                else:
                    reached, reason = event, EVENT
            step = k * base if reached == start + (n + k) * base and \
                time == start + n * base else reached - time
            saved = self.system.keep() if self.rollback else None
            if len(self.extrapolated_slots):
                signals[self.extrapolated_slots] = self._extrapolate(
                    time + 0.5 * step)[self.extrapolated]
            try:
                self._run(stages, time, step)
            except StepDiscarded:
                if saved is None or step <= base * (1 + 1e-9):
                    raise
                self._reject(saved, time, step, REJECTED_DISCARD)
                self.multiple = max(1, math.floor(0.5 * step / base))
                continue
            for name in self.log.instance_steps:
                if rates is None or name not in rates.multiples or name in rates.stepping:
                    self.log.instance_steps[name] += 1
            error, factor = self._error(reached, announcer if reason == EVENT else None)
            if error > 1.0 and saved is not None and step > base * (1 + 1e-9):
                self._reject(saved, time, step, REJECTED_ERROR)
                self.multiple = max(1, min(k - 1, math.floor(step * max(SHRINK, factor)
                                                             / base)))
                continue
            break
        if not math.isfinite(signals.dot(self._ones)):
            self._check_finite(reached)
        if rates is not None:
            rates.accept(reached)
        self._accepted(reached, step, error, reason)
        if reason in (EVENT, UNTIL):
            self.restart(reached)
        else:
            self._remember(reached)
            self.multiple = max(1, min(self.max_multiple, round(k * min(GROWTH, factor))))
        return reached

    # -- the pieces of a step -------------------------------------------------------------
    def _announcer(self, event: float) -> str | None:
        """The instance announcing ``event`` (the first, if several do)."""
        if not math.isfinite(event):
            return None
        signals = self.system.signals
        return next((name for slot, name in self.event_owner.items()
                     if signals[slot] == event), None)

    def _interpolating_exchange(self, stage: int) -> None:
        """The exchange after ``stage``, then (Gauss-Seidel) the values read by later levels
        set to the middle of the step, and back to their values at t + h after the last
        step stage."""
        self._inner_exchange(stage)
        signals = self.system.signals
        positions = self._interpolated.get(stage)
        if positions is not None:
            slots = self.slots[positions]
            self._actual[positions] = signals[slots]
            signals[slots] = 0.5 * (self._value[positions] + signals[slots])
        if stage == self._restore_after:
            signals[self.slots[self._ahead]] = self._actual[self._ahead]

    def _extrapolate(self, at: float) -> np.ndarray:
        """The watched values extrapolated to ``at`` from the accepted points since the last
        restart (each with its order, as far as those points allow): Newton's form,
        coefficients made once per accepted point (``_fit``)."""
        t2, t1 = self._knots
        dt = at - t2
        return self._value + dt * (self._slope + (at - t1) * self._curvature)

    def _fit(self) -> None:
        """The coefficients of ``_extrapolate`` from the last accepted points."""
        times, values = self.times, self.values
        self._value = values[-1]
        self._knots = (times[-1], times[-2] if len(times) >= 2 else times[-1])
        self._slope = np.zeros_like(values[-1])
        self._curvature = np.zeros_like(values[-1])
        if len(times) >= 2:
            slope = (values[-1] - values[-2]) / (times[-1] - times[-2])
            np.copyto(self._slope, slope, where=self.linear)
            if len(times) >= 3:
                before = (values[-2] - values[-3]) / (times[-2] - times[-3])
                curvature = (slope - before) / (times[-1] - times[-3])
                np.copyto(self._curvature, curvature, where=self.quadratic)

    def _error(self, reached: float, announcer: str | None) -> tuple[float, float]:
        """The error: the largest deviation of a watched value from its extrapolation to
        ``reached`` over ``tolerance`` times its magnitude so far (the announcer's own values
        left out); and the factor the step may change by, ``0.9 e^(-1/(p+1))`` at its least
        over the values (each with its order p)."""
        error, factor = 0.0, GROWTH
        if len(self.slots):
            actual = self.system.signals[self.slots]
            ratio = np.abs(actual - self._extrapolate(reached))
            ratio /= self.control.tolerance * np.maximum(self.scale, np.abs(actual))
            ratio[~self.made_here] = 0.0
            if announcer is not None and announcer in self.owned:
                ratio[self.owned[announcer]] = 0.0
            for name, owned in self.multirate_owned.items():
                if not self.rates.in_step(name):
                    ratio[owned] = 0.0
            error = float(ratio.max())
            if error > 0.0:
                with np.errstate(divide="ignore"):
                    factor = min(GROWTH, float(np.min(SAFETY * ratio ** -self.exponents)))
        if self.agree is not None:  # under MPI: the same decision on every rank
            error, least = self.agree(np.array([error, -factor]))
            factor = -least
        return error, factor

    def _reject(self, saved: object, time: float, step: float, kind: int) -> None:
        self.system.return_to_kept()
        if self.rates is not None:
            self.rates.undo()
        self.ended.clear()
        self.log.rejected_times.append(time)
        self.log.rejected_sizes.append(step)
        self.log.rejected_kinds.append(kind)

    def _accepted(self, reached: float, step: float, error: float, reason: int) -> None:
        log = self.log
        log.times.append(reached)
        log.sizes.append(step)
        log.errors.append(error)
        log.reasons.append(reason)

    def _remember(self, time: float) -> None:
        """Keep the watched values at accepted point ``time`` (the last three)."""
        values = self.system.signals[self.slots]
        np.maximum(self.scale, np.abs(values), out=self.scale)
        self.times.append(time)
        self.values.append(values)
        if len(self.times) > 3:
            del self.times[0], self.values[0]
        self._fit()

    def state(self) -> dict:
        """``FixedStepMaster.state`` and the controller's own: the next step's multiple, the
        accepted points it extrapolates from, each watched value's magnitude so far, the
        log."""
        state = super().state()
        log = self.log
        state["common"].update(
            multiple=self.multiple, times=list(self.times),
            log={key: list(getattr(log, key)) for key in _LOG_COLUMNS})
        slots = self.slots.tolist()
        state["tables"].update(
            scale={str(s): float(v) for s, v in zip(slots, self.scale, strict=True)},
            history={str(s): [float(v[i]) for v in self.values] for i, s in enumerate(slots)},
            instance_steps=dict(log.instance_steps))
        return state

    def set_state(self, saved: Mapping) -> None:
        super().set_state(saved)
        common, tables = saved["common"], saved["tables"]
        self.multiple = int(common["multiple"])
        self.times = [float(t) for t in common["times"]]
        slots = [str(s) for s in self.slots.tolist()]
        self.scale = np.array([tables["scale"][s] for s in slots], dtype=float)
        self.values = [np.array([tables["history"][s][k] for s in slots], dtype=float)
                       for k in range(len(self.times))]
        self._fit()
        for key in _LOG_COLUMNS:
            setattr(self.log, key, list(common["log"][key]))
        for name in self.log.instance_steps:
            self.log.instance_steps[name] = int(tables["instance_steps"][name])

    def restart(self, time: float) -> None:
        """After an event, at the start and where a resumed run goes on (``Execution``): the
        smallest step, extrapolation from the values here."""
        self.times.clear()
        self.values.clear()
        self._remember(time)
        self.multiple = 1
        if self.rates is not None:
            self.rates.forget(time)
