"""One figure a person can look at: the scenario's plotted signals and where criteria broke."""

from __future__ import annotations

import math
from pathlib import Path

from cosim.criteria import Outcome
from cosim.results import open_results


def plot_results(results: Path, signals: list[str], outcomes: list[Outcome],
                 output: Path | None = None) -> Path:
    """Stacked plots of ``signals`` (default: the criteria's signals) against time, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output = output or Path(results).with_suffix(".png")
    signals = list(signals) or list(dict.fromkeys(o.signal for o in outcomes))
    with open_results(results) as res:
        time = res.time
        series = [(s, res[s], res.unit(s), res.description(s)) for s in signals]
        title = str(res.attrs.get("scenario_name", Path(results).stem))
    fig, axes = plt.subplots(len(series), 1, sharex=True, squeeze=False,
                             figsize=(10, 1.9 * len(series) + 1.0))
    for ax, (name, values, unit, _description) in zip(axes[:, 0], series, strict=True):
        ax.plot(time, values, lw=0.8)
        ax.set_ylabel(f"{name}\n[{unit}]" if unit else name, fontsize=8)
        ax.grid(alpha=0.3)
        for outcome in outcomes:
            if not outcome.passed and not math.isnan(outcome.broke_at):
                ax.axvline(outcome.broke_at, color="red", ls="--", lw=0.8)
    axes[-1, 0].set_xlabel("time [s]")
    if outcomes:
        passed = all(o.passed for o in outcomes)
        failed = [o.name for o in outcomes if not o.passed]
        title += "  —  " + ("PASS" if passed else "FAIL: " + ", ".join(failed))
    fig.suptitle(title, fontsize=10, color="black" if not outcomes or passed else "darkred")
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
    return output
