"""Acceptance criteria: declarative measures on recorded signals, evaluated into a verdict.

A criterion names a signal, a measure over a time window, and limits::

    - name: capture ratio
      signal: cell.beat_count          # a recorded instance.variable
      measure: ratio                   # see MEASURES
      per: generator.vp_count          # ratio only: increase of signal / increase of per
      window: [2, 30]                  # seconds; default: the whole run
      min: 0.95                        # limits: min, max or both

The verdict passes when every criterion does. A failing criterion reports its measured figure,
its limits, and — where the measure has one — when it first broke (``broke_at``, seconds).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MEASURES = {
    "min": "smallest value",
    "max": "largest value",
    "mean": "time average",
    "initial": "value at the window start",
    "final": "value at the window end",
    "increase": "final minus initial value (for counters)",
    "rate": "increase per minute (for counters: events per minute)",
    "ratio": "increase of signal divided by increase of `per`",
    "response_ratio": "fraction of increments of `per` (e.g. paces) followed by an increment of "
                      "signal (e.g. beats) within `within` seconds: the capture ratio",
    "longest_gap": "longest time in seconds between two increments of a counter",
    "first_time": "first time in seconds the signal satisfies `when` (e.g. '> 0.5')",
}
_CONDITION = re.compile(r"^\s*(<=|>=|<|>|==|!=)\s*([-+0-9.eE]+)\s*$")
_KEYS = {"name", "signal", "measure", "window", "min", "max", "per", "when", "within",
         "description"}

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

    def signals(self) -> list[str]:
        return [self.signal] + ([self.per] if self.per else [])


@dataclass(frozen=True)
class Outcome:
    """A criterion evaluated: the figure, the limits and whether it passed."""

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

    def __str__(self) -> str:
        limits = []
        if not math.isnan(self.min):
            limits.append(f">= {self.min:g}")
        if not math.isnan(self.max):
            limits.append(f"<= {self.max:g}")
        verdict = "PASS" if self.passed else "FAIL"
        text = (f"{verdict}  {self.name}: {self.measure}({self.signal}) = {self.value:.4g} "
                f"(limit {' and '.join(limits)}; window {self.window_start:g}-"
                f"{self.window_stop:g} s)")
        if not self.passed and not math.isnan(self.broke_at):
            text += f"; broke at t = {self.broke_at:.3f} s"
        return text


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
        when = item.get("when")
        if measure == "first_time" and (not isinstance(when, str) or not _CONDITION.match(when)):
            report((i, "when"), f"first_time needs a condition like '> 0.5', got {when!r}", "")
        criteria.append(Criterion(name=name, signal=signal, measure=measure, window=window,
                                  min=limits.get("min"), max=limits.get("max"),
                                  per=per if measure in ("ratio", "response_ratio") else None,
                                  within=float(within),
                                  when=when if measure == "first_time" else None,
                                  description=str(item.get("description", ""))))
    return criteria


def evaluate(criterion: Criterion, time: np.ndarray, values: Mapping[str, np.ndarray]
             ) -> Outcome:
    """Evaluate one criterion on recorded signals (``values[name]`` aligned with ``time``)."""
    start, stop = criterion.window or (float(time[0]), float(time[-1]))
    mask = (time >= start - 1e-12) & (time <= stop + 1e-12)
    t = time[mask]
    y = values[criterion.signal][mask]
    per = values[criterion.per][mask] if criterion.per else None
    value = _measure(criterion, t, y, per) if len(t) else math.nan
    low = -math.inf if criterion.min is None else criterion.min
    high = math.inf if criterion.max is None else criterion.max
    passed = bool(low <= value <= high)
    broke_at = math.nan if passed or not len(t) else _broke_at(criterion, t, y, per, low, high)
    return Outcome(name=criterion.name, signal=criterion.signal, measure=criterion.measure,
                   value=float(value), min=math.nan if criterion.min is None else criterion.min,
                   max=math.nan if criterion.max is None else criterion.max, passed=passed,
                   broke_at=float(broke_at), window_start=start, window_stop=stop,
                   description=criterion.description)


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
        return float((y[-1] - y[0]) * 60.0 / (t[-1] - t[0])) if len(t) > 1 else math.nan
    if m == "ratio":
        denominator = per[-1] - per[0]
        return float((y[-1] - y[0]) / denominator) if denominator else math.nan
    if m == "response_ratio":
        causes = t[1:][np.diff(per) > 0]
        if not len(causes):
            return math.nan
        responses = t[1:][np.diff(y) > 0]
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
            sub = _measure(c, t[:end + 1], y[:end + 1], None if per is None else per[:end + 1])
            if per is not None and (per[end] - per[0]) < 3:
                continue  # too few events for a ratio to mean anything
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
