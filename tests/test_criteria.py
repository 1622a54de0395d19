"""Acceptance criteria (cosim.criteria): every measure and broke_at on synthetic signals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cosim.criteria import MEASURES, Criterion, evaluate, parse_criteria, verdict_text

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
                             "ratio", "response_ratio", "longest_gap", "first_time"}


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
