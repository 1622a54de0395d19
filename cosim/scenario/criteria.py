"""Acceptance criteria: declarative measures on recorded signals, evaluated into a verdict.

A criterion names a signal, a measure over a time window, and limits::

    - name: capture ratio
      signal: cell.beat_count          # a recorded instance.variable
      measure: ratio                   # see MEASURES
      per: generator.vp_count          # ratio only: increase of signal / increase of per
      window: [2, 30]                  # seconds; default: the whole run
      min: 0.95                        # limits: min, max or both

The verdict passes when every criterion does. A failing criterion reports its measured figure,
its limits, and — where the measure has one — when it first broke (``broke_at``, seconds). A
criterion that cannot be evaluated (no samples in its window, no ``per`` events for a ratio, a
figure that is not a number) is an outcome too: its ``reason`` says why, and it is not met.

``rate`` is measured from the intervals between increments, not by counting whole events in the
window: with k ≥ 2 increments at t_1 … t_k (increase n between the first and the last),
rate = 60 · n / (t_k − t_1) per minute, so 70 paces per minute read 70 whatever the window's
phase. With fewer than two increments there is no interval: the rate is the count per minute
of the window (0 when nothing happened).

A cohort's verdict (``cohort_verdict``) counts members passed, failed and not completed, and
for each criterion reports the worst member's figure (smallest margin to a limit; a member where
the criterion could not be evaluated is the worst of all).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

MEASURES = {
    "min": "smallest value",
    "max": "largest value",
    "mean": "time average",
    "initial": "value at the window start",
    "final": "value at the window end",
    "increase": "final minus initial value (for counters)",
    "rate": "events per minute of a counter, from the intervals between its increments",
    "ratio": "increase of signal divided by increase of `per`",
    "response_ratio": "fraction of increments of `per` (e.g. paces) followed by an increment of "
                      "signal (e.g. beats) within `within` seconds: the capture ratio",
    "longest_gap": "longest time in seconds between two increments of a counter",
    "first_time": "first time in seconds the signal satisfies `when` (e.g. '> 0.5')",
    "rmse": "root mean square of signal minus `reference` (a measured column) at the measured "
            "samples",
    "max_deviation": "largest |signal - `reference`| at the measured samples",
    "timing": "shift in seconds of signal against `reference` that fits best (within "
              "`within`; > 0: the simulation lags)",
}
COMPARISONS = ("rmse", "max_deviation", "timing")  # measures against a measured reference
_CONDITION = re.compile(r"^\s*(<=|>=|<|>|==|!=)\s*([-+0-9.eE]+)\s*$")
_KEYS = {"name", "signal", "measure", "window", "min", "max", "per", "when", "within",
         "reference", "description"}

Report = Callable[[tuple, str, str], None]


@dataclass(frozen=True)
class Criterion:
    name: str
    signal: str
    measure: str
    window: tuple[float, float] | None = None
    min: float | None = None
    max: float | None = None
    per: str | None = None
    when: str | None = None
    within: float = 0.1
    description: str = ""
    reference: str | None = None  # a measured source's column (cosim.fmi.measured): rmse, …

    def signals(self) -> list[str]:
        return [self.signal] + ([self.per] if self.per else [])


@dataclass(frozen=True)
class Outcome:
    """A criterion evaluated: the figure, the limits and whether it passed.

    ``reason`` is empty when the figure was measured; otherwise it says why the criterion could
    not be evaluated (the figure is then NaN and the criterion is not met).
    """

    name: str
    signal: str
    measure: str
    value: float
    min: float
    max: float
    passed: bool
    broke_at: float
    window_start: float
    window_stop: float
    description: str = ""
    reason: str = ""

    def __str__(self) -> str:
        return self.text()

    def limits(self) -> str:
        limits = []
        if not math.isnan(self.min):
            limits.append(f">= {self.min:g}")
        if not math.isnan(self.max):
            limits.append(f"<= {self.max:g}")
        return " and ".join(limits)

    def text(self, member: str | None = None) -> str:
        """One line: PASS/FAIL, the figure (``member``: whose figure it is), limits, window."""
        verdict = "PASS" if self.passed else "FAIL"
        where = f" in member {member}" if member is not None else ""
        figure = (f"cannot be evaluated{where}: {self.reason}" if self.reason else
                  f"= {self.value:.4g}{where}")
        text = (f"{verdict}  {self.name}: {self.measure}({self.signal}) {figure} "
                f"(limit {self.limits()}; window {self.window_start:g}-{self.window_stop:g} s)")
        if not self.passed and not math.isnan(self.broke_at):
            text += f"; broke at t = {self.broke_at:.3f} s"
        return text

    def margin(self) -> float:
        """Distance of the figure inside its limits (negative outside; -inf: not evaluated)."""
        if self.reason or math.isnan(self.value):
            return -math.inf
        low = self.value - self.min if not math.isnan(self.min) else math.inf
        high = self.max - self.value if not math.isnan(self.max) else math.inf
        return min(low, high)


class NotEvaluable(Exception):
    """A measure has no figure on these samples; the message says why (a user's sentence)."""


def parse_criteria(items: Any, report: Report) -> list[Criterion]:
    """Criteria from the scenario's ``criteria`` list; every mistake goes to ``report``."""
    if items is None:
        return []
    if not isinstance(items, list):
        report((), "must be a list of criteria", "write '- name: ...' entries")
        return []
    criteria, names = [], set()
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            report((i,), "a criterion is a mapping", "give name, signal, measure and limits")
            continue
        for key in item:
            if key not in _KEYS:
                report((i, key), f"unknown key '{key}'", f"allowed: {', '.join(sorted(_KEYS))}")
        name = item.get("name")
        if not isinstance(name, str) or not name:
            report((i,), "a criterion needs a name", "add 'name: capture ratio'")
            name = f"criterion {i + 1}"
        elif name in names:
            report((i, "name"), f"two criteria are named '{name}'", "give each its own name")
        names.add(name)
        signal = item.get("signal")
        if not isinstance(signal, str) or "." not in signal:
            report((i, "signal"), "needs a signal 'instance.variable'",
                   "e.g. signal: generator.pacing_rate")
            continue
        measure = item.get("measure")
        if measure not in MEASURES:
            report((i, "measure"), f"unknown measure {measure!r}",
                   "one of: " + ", ".join(MEASURES))
            continue
        limits = {}
        for bound in ("min", "max"):
            value = item.get(bound)
            if value is not None and (isinstance(value, bool) or
                                      not isinstance(value, (int, float))):
                report((i, bound), f"'{bound}' must be a number, got {value!r}", "")
            elif value is not None:
                limits[bound] = float(value)
        if not limits:
            report((i,), "a criterion needs a limit", "add 'min:' or 'max:' (or both)")
        if "min" in limits and "max" in limits and limits["min"] > limits["max"]:
            report((i, "min"), f"min {limits['min']:g} is above max {limits['max']:g}", "")
        window = item.get("window")
        if window is not None:
            if (not isinstance(window, list) or len(window) != 2
                    or not all(isinstance(w, (int, float)) and not isinstance(w, bool)
                               for w in window) or window[0] >= window[1]):
                report((i, "window"), f"window must be [start, stop] in seconds, start < stop, "
                       f"got {window!r}", "e.g. window: [5, 30]")
                window = None
            else:
                window = (float(window[0]), float(window[1]))
        per = item.get("per")
        if measure in ("ratio", "response_ratio") and (not isinstance(per, str)
                                                       or "." not in per):
            report((i, "per"), f"{measure} needs 'per: instance.variable'",
                   "e.g. per: generator.vp_count")
        within = item.get("within", 0.1)
        if isinstance(within, bool) or not isinstance(within, (int, float)) or within <= 0:
            report((i, "within"), f"within must be a positive number of seconds, got {within!r}",
                   "e.g. within: 0.1")
            within = 0.1
        reference = item.get("reference")
        if measure in COMPARISONS and (not isinstance(reference, str) or "." not in reference):
            report((i, "reference"), f"{measure} needs 'reference: source.column' (a column "
                   "of the scenario's measured section)", "e.g. reference: bp.P_ao")
        if measure == "timing" and "within" not in item:
            within = 1.0
        when = item.get("when")
        if measure == "first_time" and (not isinstance(when, str) or not _CONDITION.match(when)):
            report((i, "when"), f"first_time needs a condition like '> 0.5', got {when!r}", "")
        criteria.append(Criterion(name=name, signal=signal, measure=measure, window=window,
                                  min=limits.get("min"), max=limits.get("max"),
                                  per=per if measure in ("ratio", "response_ratio") else None,
                                  within=float(within),
                                  when=when if measure == "first_time" else None,
                                  description=str(item.get("description", "")),
                                  reference=reference if measure in COMPARISONS else None))
    return criteria


def evaluate(criterion: Criterion, time: np.ndarray, values: Mapping[str, np.ndarray],
             references: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> Outcome:
    """Evaluate one criterion on recorded signals (``values[name]`` aligned with ``time``);
    ``references[criterion.reference]``: the measured (times, values) it is compared with.

    Never raises on data: a criterion that cannot be evaluated gives an outcome with a reason.
    """
    if criterion.window:
        start, stop = criterion.window
    elif len(time):
        start, stop = float(time[0]), float(time[-1])
    else:
        start = stop = math.nan
    mask = (time >= start - 1e-12) & (time <= stop + 1e-12)
    t = time[mask]
    y = values[criterion.signal][mask]
    per = values[criterion.per][mask] if criterion.per else None
    value, reason = math.nan, ""
    if not len(t):
        reason = ("no samples in the window" + (f" (the run recorded {time[0]:g}-{time[-1]:g} s)"
                                                if len(time) else " (nothing was recorded)"))
    else:
        try:
            if criterion.reference:
                value = _compare_measured(criterion, t, y, *references[criterion.reference])
            else:
                value = _measure(criterion, t, y, per)
        except NotEvaluable as why:
            reason = str(why)
        except Exception as error:  # noqa: BLE001 - a verdict never ends in a traceback
            reason = f"the measure failed ({type(error).__name__}: {error})"
        if not reason and math.isnan(value):
            reason = f"the figure is not a number ({criterion.signal} holds NaN in the window)"
    low = -math.inf if criterion.min is None else criterion.min
    high = math.inf if criterion.max is None else criterion.max
    passed = not reason and bool(low <= value <= high)
    broke_at = math.nan
    if not passed and not reason and not criterion.reference:
        broke_at = _broke_at(criterion, t, y, per, low, high)
    return Outcome(name=criterion.name, signal=criterion.signal, measure=criterion.measure,
                   value=float(value), min=math.nan if criterion.min is None else criterion.min,
                   max=math.nan if criterion.max is None else criterion.max, passed=passed,
                   broke_at=float(broke_at), window_start=start, window_stop=stop,
                   description=criterion.description, reason=reason)


def _measure(c: Criterion, t: np.ndarray, y: np.ndarray, per: np.ndarray | None) -> float:
    m = c.measure
    if m == "min":
        return float(np.min(y))
    if m == "max":
        return float(np.max(y))
    if m == "mean":
        return float(np.trapezoid(y, t) / (t[-1] - t[0])) if len(t) > 1 else float(y[0])
    if m == "initial":
        return float(y[0])
    if m == "final":
        return float(y[-1])
    if m == "increase":
        return float(y[-1] - y[0])
    if m == "rate":
        return _rate(t, y)
    if m == "ratio":
        denominator = per[-1] - per[0]
        if not denominator:
            raise NotEvaluable(f"{c.per} does not change in the window: no ratio")
        return float((y[-1] - y[0]) / denominator)
    if m == "response_ratio":
        causes = t[1:][np.diff(per) > 0]
        if not len(causes):
            raise NotEvaluable(f"{c.per} never increases in the window: nothing to respond to")
        responses = t[1:][np.diff(y) > 0]
        if not len(responses):
            return 0.0  # no cause was answered
        after = np.searchsorted(responses, causes, side="left")  # same step counts
        answered = (after < len(responses)) & (
            responses[np.minimum(after, len(responses) - 1)] <= causes + c.within + 1e-12)
        return float(np.mean(answered))
    if m == "longest_gap":
        increments = t[1:][np.diff(y) > 0]
        marks = np.concatenate(([t[0]], increments, [t[-1]]))
        return float(np.max(np.diff(marks))) if len(marks) > 1 else 0.0
    if m == "first_time":
        op, threshold = _CONDITION.match(c.when).groups()
        hits = np.flatnonzero(_compare(y, op, float(threshold)))
        return float(t[hits[0]]) if len(hits) else math.inf
    raise ValueError(m)


def _compare_measured(c: Criterion, t: np.ndarray, y: np.ndarray, measured_t: np.ndarray,
                      measured: np.ndarray) -> float:
    """A simulated signal (``t``, ``y``: recorded) against measured samples: at the measured
    times inside the window, the simulation interpolated linearly between its points."""
    inside = (measured_t >= t[0] - 1e-12) & (measured_t <= t[-1] + 1e-12)
    mt, my = measured_t[inside], measured[inside]
    if not len(mt):
        raise NotEvaluable(f"{c.reference} has no sample in the window")
    if c.measure == "rmse":
        return float(np.sqrt(np.mean((np.interp(mt, t, y) - my) ** 2)))
    if c.measure == "max_deviation":
        return float(np.max(np.abs(np.interp(mt, t, y) - my)))
    step = float(np.min(np.diff(t))) if len(t) > 1 else c.within
    reach = math.floor(c.within / step + 1e-9)
    lags = np.arange(-reach, reach + 1) * step
    lags = lags[np.argsort(np.abs(lags), kind="stable")]  # of equal fits, the smallest shift
    errors = [np.mean((np.interp(mt + lag, t, y) - my) ** 2) for lag in lags]
    return float(lags[int(np.argmin(errors))])


def _rate(t: np.ndarray, y: np.ndarray) -> float:
    """Events per minute of a counter: from the first to the last increment in the window."""
    increments = np.flatnonzero(np.diff(y) > 0) + 1  # samples where the counter went up
    if len(increments) >= 2:
        first, last = increments[0], increments[-1]
        return float((y[last] - y[first]) * 60.0 / (t[last] - t[first]))
    if t[-1] <= t[0]:
        raise NotEvaluable("the window holds a single sample: no rate")
    return float((y[-1] - y[0]) * 60.0 / (t[-1] - t[0]))


def _broke_at(c: Criterion, t, y, per, low: float, high: float) -> float:
    """When the criterion first failed, for measures where that means something."""
    if c.measure in ("min", "max"):
        bad = np.flatnonzero((y < low) | (y > high))
        return float(t[bad[0]]) if len(bad) else math.nan
    if c.measure == "longest_gap":
        increments = t[1:][np.diff(y) > 0]
        marks = np.concatenate(([t[0]], increments, [t[-1]]))
        gaps = np.diff(marks)
        long = np.flatnonzero(gaps > high)
        return float(marks[long[0]] + high) if len(long) else math.nan
    if c.measure == "first_time":
        return float(t[0] + high) if math.isfinite(high) else math.nan
    if c.measure in ("ratio", "response_ratio", "increase"):  # first failing expanding window
        for end in range(1, len(t)):
            if per is not None and per[end] == per[end - 1] and c.measure != "increase":
                continue  # the ratio only changes when `per` does
            if per is not None and (per[end] - per[0]) < 3:
                continue  # too few events for a ratio to mean anything
            try:
                sub = _measure(c, t[:end + 1], y[:end + 1],
                               None if per is None else per[:end + 1])
            except NotEvaluable:
                continue
            if not (low <= sub <= high) and not math.isnan(sub):
                return float(t[end])
    return math.nan


def _compare(y: np.ndarray, op: str, threshold: float) -> np.ndarray:
    return {"<": y < threshold, "<=": y <= threshold, ">": y > threshold,
            ">=": y >= threshold, "==": y == threshold, "!=": y != threshold}[op]


def verdict_text(outcomes: list[Outcome]) -> str:
    passed = all(o.passed for o in outcomes)
    head = "VERDICT: PASS" if passed else "VERDICT: FAIL"
    failed = sum(not o.passed for o in outcomes)
    head += f" ({len(outcomes) - failed} of {len(outcomes)} criteria met)"
    return "\n".join([head] + ["  " + str(o) for o in outcomes])


def write_verdict(group, outcomes: list[Outcome]) -> None:
    """Store the verdict under ``group/verdict``: one subgroup per criterion with its figures."""
    if "verdict" in group:
        del group["verdict"]
    node = group.create_group("verdict")
    node.attrs["passed"] = all(o.passed for o in outcomes)
    node.attrs["summary"] = verdict_text(outcomes)
    for i, outcome in enumerate(outcomes):
        sub = node.create_group(f"{i:03d}")
        sub.attrs["index"] = i
        for key, value in asdict(outcome).items():
            sub.attrs[key] = value


def read_outcomes(group) -> list[Outcome]:
    """The outcomes stored by ``write_verdict`` under ``group/verdict`` (none: empty list)."""
    if "verdict" not in group:
        return []
    node = group["verdict"]
    names = [f.name for f in fields(Outcome)]
    outcomes = []
    for key in sorted(node, key=lambda k: int(node[k].attrs.get("index", 0))):
        attrs = node[key].attrs
        values = {n: attrs[n] for n in names if n in attrs}
        values = {n: v.decode() if isinstance(v, bytes) else
                  v.item() if isinstance(v, np.generic) else v for n, v in values.items()}
        outcomes.append(Outcome(**values))
    return outcomes


@dataclass(frozen=True)
class Worst:
    """One criterion over a cohort: its worst member's outcome, and how many members met it."""

    member: str | None  # None: no member was judged
    outcome: Outcome | None
    met: int
    judged: int


@dataclass(frozen=True)
class CohortVerdict:
    """Members passed / failed / not completed, and the worst figure of each criterion."""

    members: int
    passed: int
    failed: int
    errors: tuple[tuple[str, str], ...]  # (member id, error) of members that did not complete
    worst: tuple[Worst, ...]
    criteria: tuple[str, ...] = ()

    @property
    def all_passed(self) -> bool:
        return self.passed == self.members

    def text(self) -> str:
        head = "COHORT VERDICT: " + ("PASS" if self.all_passed else "FAIL")
        head += (f" ({self.passed} of {self.members} members passed, {self.failed} failed their "
                 f"criteria, {len(self.errors)} did not complete)")
        lines = [head]
        if self.worst:
            judged = max(w.judged for w in self.worst)
            lines.append(f"  worst member per criterion ({judged} members judged):")
        for name, worst in zip(self.criteria, self.worst, strict=True):
            if worst.outcome is None:
                lines.append(f"  ----  {name}: no member completed")
                continue
            lines.append(f"  {worst.outcome.text(worst.member)}; met by {worst.met} of "
                         f"{worst.judged}")
        for member, error in self.errors[:5]:
            lines.append(f"  member {member} did not complete: {error.splitlines()[0]}")
        if len(self.errors) > 5:
            lines.append(f"  … and {len(self.errors) - 5} more members that did not complete "
                         "(status in /summary)")
        return "\n".join(lines)


def cohort_verdict(criteria: Sequence[Criterion],
                   members: Sequence[tuple[str, str, str, list[Outcome]]]) -> CohortVerdict:
    """The verdict of a cohort from ``(member id, status, error, outcomes)`` per member.

    A member passes when it completed and met every criterion; a completed member that missed
    one (or where one could not be evaluated) failed; any other status did not complete.
    """
    judged = [(m, outcomes) for m, status, _, outcomes in members if status == "completed"]
    passed = sum(all(o.passed for o in outcomes) for _, outcomes in judged)
    errors = tuple((m, error or status) for m, status, error, _ in members
                   if status != "completed")
    worst = []
    for j, _criterion in enumerate(criteria):
        scored = [(outcomes[j].margin(), m, outcomes[j]) for m, outcomes in judged
                  if len(outcomes) > j]
        if not scored:
            worst.append(Worst(None, None, 0, 0))
            continue
        _, member, outcome = min(scored, key=lambda s: s[0])
        worst.append(Worst(member, outcome, sum(o.passed for _, _, o in scored), len(scored)))
    return CohortVerdict(members=len(members), passed=passed, failed=len(judged) - passed,
                         errors=errors, worst=tuple(worst),
                         criteria=tuple(c.name for c in criteria))


def write_cohort_verdict(group, verdict: CohortVerdict) -> None:
    """Store a cohort's verdict under ``group/verdict``: counts, text, worst member per
    criterion (the criterion's outcome attributes plus ``worst_member``, ``met``, ``judged``)."""
    if "verdict" in group:
        del group["verdict"]
    node = group.create_group("verdict")
    node.attrs["passed"] = verdict.all_passed
    node.attrs["summary"] = verdict.text()
    node.attrs["members"] = verdict.members
    node.attrs["members_passed"] = verdict.passed
    node.attrs["members_failed"] = verdict.failed
    node.attrs["members_not_completed"] = len(verdict.errors)
    for i, (name, worst) in enumerate(zip(verdict.criteria, verdict.worst, strict=True)):
        sub = node.create_group(f"{i:03d}")
        sub.attrs["index"] = i
        sub.attrs["name"] = name
        if worst.outcome is not None:
            for key, value in asdict(worst.outcome).items():
                sub.attrs[key] = value
        sub.attrs["worst_member"] = worst.member or ""
        sub.attrs["met"] = worst.met
        sub.attrs["judged"] = worst.judged
