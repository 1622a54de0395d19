"""Figures a person can look at: the scenario's signals against time, with each criterion's
window and limits drawn, and event channels (a pacemaker's ``marker``) as labelled events.

``signal_figure`` draws; ``plot_results`` writes it as the PNG beside a results file;
``cosim.results.report`` embeds the same figure as SVG.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from cosim.results.reader import Results, open_results
from cosim.scenario.criteria import Outcome

LEVEL_MEASURES = ("min", "max", "mean", "initial", "final")  # limits in the signal's units
MAX_POINTS = 4000  # above this a series is drawn as its min/max envelope (peaks kept)
_CODE = re.compile(r"^\s*(-?\d+)\s+(.+?)\s*$")


def event_codes(description: str) -> dict[int, str]:
    """The codes a description lists, ``"event of the step: 0 none, 1 AP (atrial pace), …"``
    -> ``{0: "none", 1: "AP (atrial pace)", …}``; ``{}`` when it lists none."""
    _, colon, listing = description.partition(":")
    if not colon:
        return {}
    codes = {}
    for item in listing.split(","):
        found = _CODE.match(item)
        if found is None:
            return {}
        codes[int(found.group(1))] = found.group(2)
    return codes if len(codes) >= 2 else {}


def envelope(time: np.ndarray, values: np.ndarray, points: int = MAX_POINTS
             ) -> tuple[np.ndarray, np.ndarray]:
    """At most ``points`` points that keep every bin's min and max (a spike stays visible)."""
    if len(time) <= points:
        return time, values
    bins = points // 2
    edges = np.linspace(0, len(time), bins + 1).astype(int)
    t, v = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b <= a:
            continue
        chunk = values[a:b]
        low, high = int(np.argmin(chunk)), int(np.argmax(chunk))
        for i in sorted((low, high)):
            t.append(time[a + i])
            v.append(chunk[i])
    return np.array(t), np.array(v)


def draw_signal(ax, name: str, time: np.ndarray, values: np.ndarray, unit: str,
                description: str, outcomes: list[Outcome]) -> None:
    """One signal on ``ax``: a line, or labelled events for an event channel; the windows and
    limits of the criteria on it; where a criterion broke."""
    codes = event_codes(description)
    if codes and values.ndim == 1:
        _draw_events(ax, time, values, codes)
    else:
        t, v = envelope(time, values) if values.ndim == 1 else (time, values)
        ax.plot(t, v, lw=0.8)
    ax.set_ylabel(f"{name}\n[{unit}]" if unit else name, fontsize=8)
    ax.grid(alpha=0.3)
    for outcome in outcomes:
        if outcome.signal == name:
            start = max(outcome.window_start, float(time[0])) if len(time) else 0.0
            stop = min(outcome.window_stop, float(time[-1])) if len(time) else 0.0
            ax.axvspan(start, stop, color="tab:green" if outcome.passed else "tab:red",
                       alpha=0.07, lw=0)
            if outcome.measure in LEVEL_MEASURES:
                for limit, word in ((outcome.min, "≥"), (outcome.max, "≤")):
                    if not math.isnan(limit):
                        ax.hlines(limit, start, stop, colors="tab:red", linestyles="--",
                                  lw=0.8)
                        ax.annotate(f"{word} {limit:g}: {outcome.name}", (start, limit),
                                    fontsize=6, color="tab:red", va="bottom")
        if not outcome.passed and not math.isnan(outcome.broke_at):
            ax.axvline(outcome.broke_at, color="red", ls="--", lw=0.8)


def _draw_events(ax, time: np.ndarray, values: np.ndarray, codes: dict[int, str]) -> None:
    """Each non-zero code as a row of marks at its times, with the code's meaning in a legend."""
    markers = "v^os+xDP*"
    shown = sorted(int(c) for c in np.unique(values[values != 0]) if float(c).is_integer())
    for i, code in enumerate(shown):
        at = time[values == code]
        ax.plot(at, np.full(len(at), code), ls="none", marker=markers[i % len(markers)],
                ms=4, label=f"{code} {codes.get(code, '?')} ({len(at)})")
    ax.set_yticks(sorted(codes), [f"{c} {codes[c].split()[0]}" for c in sorted(codes)],
                  fontsize=6)
    if shown:
        ax.legend(fontsize=6, loc="upper right", framealpha=0.8)


def signal_figure(res: Results, signals: list[str], outcomes: list[Outcome], title: str):
    """Stacked plots of ``signals`` of ``res`` against time (a matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    time = res.time
    fig, axes = plt.subplots(len(signals), 1, sharex=True, squeeze=False,
                             figsize=(10, 1.9 * len(signals) + 1.0))
    for ax, name in zip(axes[:, 0], signals, strict=True):
        draw_signal(ax, name, time, res[name], res.unit(name), res.description(name), outcomes)
    axes[-1, 0].set_xlabel("time [s]")
    passed = all(o.passed for o in outcomes)
    if outcomes:
        failed = [o.name for o in outcomes if not o.passed]
        title += "  —  " + ("PASS" if passed else "FAIL: " + ", ".join(failed))
    fig.suptitle(title, fontsize=10, color="black" if not outcomes or passed else "darkred")
    fig.tight_layout()
    return fig


def plot_results(results: Path, signals: list[str], outcomes: list[Outcome],
                 output: Path | None = None) -> Path:
    """Stacked plots of ``signals`` (default: the criteria's signals) against time, as PNG."""
    import matplotlib.pyplot as plt

    output = output or Path(results).with_suffix(".png")
    signals = list(signals) or list(dict.fromkeys(o.signal for o in outcomes))
    with open_results(results) as res:
        title = str(res.attrs.get("scenario_name", Path(results).stem))
        fig = signal_figure(res, signals, outcomes, title)
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
