"""Acceptance criteria (cosim.scenario.criteria): every measure and broke_at on synthetic
signals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cosim.scenario.criteria import (
    MEASURES,
    Criterion,
    Outcome,
    cohort_verdict,
    evaluate,
    parse_criteria,
    verdict_text,
)

T = np.linspace(0.0, 10.0, 1001)  # 10 ms grid
SINE = np.sin(2 * np.pi * 0.5 * T)  # period 2 s
COUNTER = np.floor(T / 0.5)  # one event every 0.5 s: 120 per minute
GAPPY = np.where(T < 4.0, np.floor(T / 0.5), 8.0 + np.floor(np.maximum(T - 7.0, 0.0) / 0.5))
SIGNALS = {"s.sine": SINE, "s.count": COUNTER, "s.gappy": GAPPY, "s.half": np.floor(T / 1.0)}


def outcome(measure: str, signal: str = "s.sine", **limits):
    return evaluate(Criterion(name=measure, signal=signal, measure=measure, **limits), T, SIGNALS)


@pytest.mark.parametrize(("measure", "signal", "extra", "expected"), [
    ("min", "s.sine", {}, -1.0),
    ("max", "s.sine", {}, 1.0),
    ("mean", "s.sine", {}, 0.0),
    ("initial", "s.count", {"window": (2.0, 5.0)}, 4.0),
    ("final", "s.count", {"window": (2.0, 5.0)}, 10.0),
    ("increase", "s.count", {}, 20.0),
    ("rate", "s.count", {}, 120.0),
    ("ratio", "s.half", {"per": "s.count"}, 0.5),
    # paces every 0.5 s, beats every 1 s in the same step as every other pace: half answered
    ("response_ratio", "s.half", {"per": "s.count", "within": 0.1}, 0.5),
    ("response_ratio", "s.half", {"per": "s.count", "within": 0.6}, 1.0),
    ("longest_gap", "s.gappy", {}, 3.5),  # increments at 4.0 s, then none until 7.5 s
    ("first_time", "s.sine", {"when": "> 0.99"}, 0.46),
])
def test_each_measure(measure, signal, extra, expected):
    result = outcome(measure, signal, min=-1e9, **extra)
    assert result.value == pytest.approx(expected, abs=1e-9)
    assert result.passed and math.isnan(result.broke_at)


def test_every_measure_is_tested():
    assert set(MEASURES) == {"min", "max", "mean", "initial", "final", "increase", "rate",
                             "ratio", "response_ratio", "longest_gap", "first_time",
                             # against measured data: tests/test_measured.py
                             "rmse", "max_deviation", "timing"}


def test_window_limits_the_samples():
    result = outcome("max", window=(0.0, 0.25), max=2.0)
    assert result.value == pytest.approx(np.sin(2 * np.pi * 0.5 * 0.25))
    assert (result.window_start, result.window_stop) == (0.0, 0.25)


def test_max_broke_at_first_sample_above():
    result = outcome("max", max=0.5)
    assert not result.passed and result.value == pytest.approx(1.0)
    assert result.broke_at == pytest.approx(T[np.flatnonzero(SINE > 0.5)[0]])
    assert "FAIL  max: max(s.sine) = 1 (limit <= 0.5" in str(result)
    assert f"broke at t = {result.broke_at:.3f} s" in str(result)


def test_min_broke_at_first_sample_below():
    result = outcome("min", min=-0.5)
    assert result.broke_at == pytest.approx(T[np.flatnonzero(SINE < -0.5)[0]])


def test_longest_gap_broke_at_when_the_limit_ran_out():
    result = outcome("longest_gap", "s.gappy", max=1.0)
    assert not result.passed and result.broke_at == pytest.approx(5.0)  # 4.0 s + 1 s


def test_first_time_broke_at_is_the_deadline():
    result = outcome("first_time", "s.sine", when=">= 2", max=3.0)
    assert result.value == math.inf and result.broke_at == pytest.approx(3.0)


def test_ratio_broke_at_first_failing_window_with_enough_events():
    signals = dict(SIGNALS, **{"s.captures": np.minimum(COUNTER, 6.0)})  # captures stop at 3 s
    result = evaluate(Criterion("capture", "s.captures", "ratio", per="s.count", min=0.95),
                      T, signals)
    assert result.value == pytest.approx(6.0 / 20.0) and not result.passed
    assert result.broke_at == pytest.approx(3.5)  # the first pace without a capture


def test_increase_broke_at_when_counter_passes_max():
    result = outcome("increase", "s.count", max=5.0)
    assert result.broke_at == pytest.approx(3.0)


def test_verdict_text():
    good, bad = outcome("max", max=2.0), outcome("min", min=0.0)
    text = verdict_text([good, bad])
    assert text.startswith("VERDICT: FAIL (1 of 2 criteria met)")
    assert verdict_text([good]).startswith("VERDICT: PASS (1 of 1 criteria met)")


def test_parse_criteria_reports_every_mistake():
    reported = []
    items = [{"name": "a", "signal": "s.x", "measure": "max", "max": 1},
             {"name": "a", "signal": "s.x", "measure": "max", "max": 1},
             {"name": "b", "signal": "nodot", "measure": "max", "max": 1},
             {"name": "c", "signal": "s.x", "measure": "ratio", "min": 0.9},
             {"name": "d", "signal": "s.x", "measure": "first_time", "when": "soon", "max": 1},
             {"name": "e", "signal": "s.x", "measure": "max", "window": [5, 1], "max": 1},
             {"name": "f", "signal": "s.x", "measure": "min"},
             {"name": "g", "signal": "s.x", "measure": "max", "min": 2, "max": 1, "colour": 3}]
    criteria = parse_criteria(items, lambda path, message, hint: reported.append((path, message)))
    paths = [path for path, _ in reported]
    assert paths == [(1, "name"), (2, "signal"), (3, "per"), (4, "when"), (5, "window"), (6,),
                     (7, "colour"), (7, "min")]
    assert [c.name for c in criteria] == ["a", "a", "c", "d", "e", "f", "g"]


# -- rate from intervals, not whole beats in the window ---------------------------------------

@pytest.mark.parametrize("phase", [0.0, 0.2, 0.43, 0.8])
def test_rate_is_not_quantised_to_whole_beats(phase):
    """70 events per minute over a 15 s window read 70 whatever the window's phase (counting
    whole events in the window reads 68 for some phases: 17 events in 15 s)."""
    t = np.round(np.arange(0.0, 20.0 + 1e-9, 0.001), 9)
    counter = np.floor(np.maximum(t - phase, 0.0) / (60.0 / 70.0))
    result = evaluate(Criterion("rate", "s.c", "rate", window=(5.0, 20.0), min=69.9, max=70.1),
                      t, {"s.c": counter})
    assert result.passed and result.value == pytest.approx(70.0, abs=0.01)
    counted = (counter[-1] - counter[5000]) * 60 / 15.0  # the former definition
    assert phase != 0.43 or counted == 68.0


def test_rate_with_fewer_than_two_increments_counts_per_minute():
    none = evaluate(Criterion("r", "s.c", "rate", max=5.0), T, {"s.c": np.zeros_like(T)})
    assert none.passed and none.value == 0.0
    one = evaluate(Criterion("r", "s.c", "rate", max=5.0), T, {"s.c": (T > 3.0) * 1.0})
    assert one.value == pytest.approx(6.0) and not one.passed  # 1 event in 10 s


# -- criteria that cannot be evaluated are outcomes, never tracebacks --------------------------

def test_response_ratio_without_any_response_is_zero_not_an_index_error():
    """The DDD case of issue 14: paces (``per``) but no response in the first windows that
    broke_at tries (an AV delay of 250 ms answered within 0.21 s: never)."""
    paces = np.floor(T / 1.0)
    answers = np.floor(np.maximum(T - 0.25, 0.0) / 1.0)  # each pace answered 0.25 s later
    result = evaluate(Criterion("av", "s.v", "response_ratio", per="s.a", within=0.21,
                                min=0.9), T, {"s.v": answers, "s.a": paces})
    assert result.value == 0.0 and not result.passed and result.reason == ""
    assert result.broke_at == pytest.approx(3.0)  # the first window with 3 paces
    silent = evaluate(Criterion("av", "s.v", "response_ratio", per="s.a", within=0.21,
                                min=0.9), T, {"s.v": np.zeros_like(T), "s.a": paces})
    assert silent.value == 0.0 and not silent.passed


@pytest.mark.parametrize(("criterion", "signals", "reason"), [
    (Criterion("late", "s.count", "max", window=(20.0, 30.0), max=1.0), SIGNALS,
     "no samples in the window (the run recorded 0-10 s)"),
    (Criterion("r", "s.count", "ratio", per="s.flat", min=0.5), {"s.flat": 0 * T},
     "s.flat does not change in the window: no ratio"),
    (Criterion("c", "s.count", "response_ratio", per="s.flat", min=0.5), {"s.flat": 0 * T},
     "s.flat never increases in the window: nothing to respond to"),
    (Criterion("n", "s.nan", "mean", min=0.0), {"s.nan": np.full_like(T, np.nan)},
     "the figure is not a number (s.nan holds NaN in the window)"),
    (Criterion("f", "s.count", "rate", window=(2.0, 2.0 + 1e-13), min=0.0), SIGNALS,
     "the window holds a single sample: no rate"),
])
def test_a_criterion_that_cannot_be_evaluated_says_why_and_is_not_met(criterion, signals,
                                                                       reason):
    result = evaluate(criterion, T, {**SIGNALS, **signals})
    assert result.reason == reason and not result.passed and math.isnan(result.value)
    assert f"{criterion.measure}({criterion.signal}) cannot be evaluated: {reason}" in str(result)
    assert verdict_text([result]).startswith("VERDICT: FAIL (0 of 1 criteria met)")


def test_a_measure_that_raises_is_an_outcome(monkeypatch):
    from cosim.scenario import criteria

    def broken(*args):
        raise IndexError("index -1 is out of bounds for axis 0 with size 0")
    monkeypatch.setattr(criteria, "_measure", broken)
    result = outcome("max", max=2.0)
    assert not result.passed and result.reason == (
        "the measure failed (IndexError: index -1 is out of bounds for axis 0 with size 0)")


# -- a cohort's verdict ------------------------------------------------------------------------

def member_outcomes(value: float, reason: str = "") -> list:
    return [evaluate(Criterion("peak", "s.x", "max", min=0.5, max=1.5), T,
                     {"s.x": np.full_like(T, value)}) if not reason else
            Outcome("peak", "s.x", "max", math.nan, 0.5, 1.5, False, math.nan, 0, 10,
                    reason=reason)]


def test_cohort_verdict_counts_members_and_names_the_worst_per_criterion():
    criteria = [Criterion("peak", "s.x", "max", min=0.5, max=1.5)]
    members = [("000000", "completed", "", member_outcomes(1.0)),
               ("000001", "completed", "", member_outcomes(1.4)),  # margin 0.1: the worst
               ("000002", "failed", "instance 'x', t = 2 s: fmi2DoStep failed\n  log", []),
               ("000003", "completed", "", member_outcomes(0.7))]
    verdict = cohort_verdict(criteria, members)
    assert (verdict.members, verdict.passed, verdict.failed, len(verdict.errors)) == (4, 3, 0, 1)
    assert not verdict.all_passed  # a member that did not complete fails the cohort
    assert verdict.worst[0].member == "000001" and verdict.worst[0].met == 3
    assert verdict.text().splitlines() == [
        "COHORT VERDICT: FAIL (3 of 4 members passed, 0 failed their criteria, 1 did not "
        "complete)",
        "  worst member per criterion (3 members judged):",
        "  PASS  peak: max(s.x) = 1.4 in member 000001 (limit >= 0.5 and <= 1.5; window "
        "0-10 s); met by 3 of 3",
        "  member 000002 did not complete: instance 'x', t = 2 s: fmi2DoStep failed"]
    members[3] = ("000003", "completed", "", member_outcomes(math.nan, "no samples"))
    worst = cohort_verdict(criteria, members).worst[0]
    assert worst.member == "000003" and worst.met == 2, "not evaluable is the worst of all"


def test_cohort_verdict_passes_only_when_every_member_passes():
    criteria = [Criterion("peak", "s.x", "max", min=0.5, max=1.5)]
    good = [(f"{i:06d}", "completed", "", member_outcomes(1.0)) for i in range(3)]
    assert cohort_verdict(criteria, good).all_passed
    assert cohort_verdict([], [(m, "completed", "", []) for m, *_ in good]).all_passed
    bad = good + [("000003", "completed", "", member_outcomes(2.0))]
    verdict = cohort_verdict(criteria, bad)
    assert not verdict.all_passed and verdict.failed == 1
    assert "FAIL  peak: max(s.x) = 2 in member 000003" in verdict.text()
