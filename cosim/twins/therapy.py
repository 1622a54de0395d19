"""Therapy comparison on a (personalised) twin: two or more device programmings run side by
side — as the labelled members of one cohort (``method: table``), so they run over MPI ranks
like any cohort — and compared on capture margin, capture, pacing percentage, cardiac output and
projected battery longevity, each with a verdict (``docs/twins.md``, worked example).

Figures per programming, over ``window`` (s):
- capture margin: programmed amplitude / the patient's capture threshold at the programmed
  pulse width (measured at the interrogation, ``threshold``); at least ``limits.margin``
  (2: the usual 2:1 amplitude safety margin);
- capture: fraction of ventricular paces followed within 100 ms by a myocyte upstroke
  (``response_ratio``), at least ``limits.capture``;
- pacing percentage: 100 · paces / beats of the heart (information, no verdict);
- cardiac output: its time average, at least ``limits.cardiac_output`` L/min;
- battery longevity: the generator's projection at the window's end, at least
  ``limits.longevity`` years.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cosim.results.output import claim, commit
from cosim.results.recorder import COMPLETED
from cosim.running.pipeline import default_output, prepare, run_into, strategy
from cosim.running.strategies import member_id
from cosim.scenario.cohort import Cohort
from cosim.scenario.criteria import Criterion, evaluate


@dataclass(frozen=True)
class Signals:
    """Where the figures are read (the instance names of the model library's closed loop)."""

    amplitude: str = "pacemaker.v_amplitude"
    paces: str = "pacemaker.vp_count"
    heart_beats: str = "heart.beat_count"
    cell_beats: str = "myocyte.beat_count"
    cardiac_output: str = "heart.cardiac_output"
    longevity: str = "pacemaker.battery_longevity"


@dataclass(frozen=True)
class Limits:
    margin: float = 2.0
    capture: float = 0.95
    cardiac_output: float = 4.0  # L/min
    longevity: float = 5.0  # years


@dataclass
class Figure:
    name: str
    unit: str
    values: dict[str, float]  # programming -> value
    limit: float | None = None  # a minimum; None: information only

    def passed(self, programming: str) -> bool | None:
        if self.limit is None:
            return None
        value = self.values[programming]
        return bool(not math.isnan(value) and value >= self.limit)


@dataclass
class Comparison:
    programmings: tuple[str, ...]
    figures: list[Figure]
    results: Path | None
    failed: dict[str, str] = field(default_factory=dict)  # programming -> why it did not run

    def passed(self, programming: str) -> bool:
        return programming not in self.failed and all(
            f.passed(programming) is not False for f in self.figures)

    def text(self) -> str:
        width = max(14, *(len(p) + 2 for p in self.programmings))
        head = f"{'':34}" + "".join(f"{p:>{width}}" for p in self.programmings)
        lines = [head]
        for figure in self.figures:
            cells = []
            for p in self.programmings:
                mark = {True: " ok", False: " FAIL", None: ""}[figure.passed(p)]
                cells.append(f"{figure.values[p]:.3g}{mark}".rjust(width))
            limit = f" (≥ {figure.limit:g})" if figure.limit is not None else ""
            lines.append(f"{figure.name + ' [' + figure.unit + ']' + limit:34}" + "".join(cells))
        lines.append(f"{'verdict':34}" + "".join(
            ("PASS" if self.passed(p) else "FAIL").rjust(width) for p in self.programmings))
        return "\n".join(lines)

    def summary(self) -> dict[str, Any]:
        return {"programmings": list(self.programmings),
                "figures": {f.name: {"unit": f.unit, "limit": f.limit, "values": f.values}
                            for f in self.figures},
                "verdicts": {p: self.passed(p) for p in self.programmings},
                "failed": self.failed}


def compare_therapies(path: str | Path, programmings: Mapping[str, Mapping[str, float]],
                      output: str | Path | None = None, *, threshold: float,
                      window: tuple[float, float] | None = None, limits: Limits = Limits(),
                      signals: Signals = Signals()) -> Comparison:
    """Run the scenario at ``path`` once per programming (``{label: {"instance.parameter":
    value}}``) as one cohort into ``output`` and compare them; ``threshold``: the patient's
    capture threshold (V) at the programmed pulse width. On every MPI rank (the comparison
    on rank 0, None elsewhere)."""
    path = Path(path)
    labels = tuple(programmings)
    names = tuple(sorted({n for p in programmings.values() for n in p}))
    if signals.amplitude not in names:
        names = (*names, signals.amplitude)
    how = strategy()
    prepared = how.prepare(path, prepare)
    default_amplitude = prepared.graph.fmu(signals.amplitude.partition(".")[0]).variables[
        signals.amplitude.partition(".")[2]].start
    table = [[float(programmings[label].get(n, default_amplitude if n == signals.amplitude
                                            else _start(prepared, n))) for n in names]
             for label in labels]
    record = {k: list(v) for k, v in prepared.settings.record.items()}
    for signal in (signals.paces, signals.heart_beats, signals.cell_beats,
                   signals.cardiac_output, signals.longevity):
        instance, _, variable = signal.partition(".")
        if variable not in record.setdefault(instance, []):
            record[instance].append(variable)
    settings = dataclasses.replace(prepared.settings,
                                   record={k: tuple(v) for k, v in record.items()})
    run = dataclasses.replace(prepared, settings=settings,
                              cohort=Cohort(names, np.array(table), "table", None, labels))
    target = Path(output) if output else default_output(path.with_name(f"{path.stem}.therapy.yaml"))
    # results/<stem>.therapy.h5: never the scenario's own results (a fit's run of it)
    claimed = how.claim(lambda: claim(target))
    results = how.share(claimed.partial if how.leader else None)
    run_into(run, results, strategy=how)
    if not how.leader:
        return how.share(None)
    kept = commit(claimed, status=COMPLETED)
    window = window or (settings.start, settings.stop)
    comparison = _figures(kept, labels, [dict(zip(names, row, strict=True)) for row in table],
                          threshold, window, limits, signals)
    return how.share(comparison)


def _start(prepared: Any, name: str) -> float:
    instance, _, variable = name.partition(".")
    given = prepared.graph.parameters(instance).get(variable)
    return given if given is not None else prepared.graph.fmu(instance).variables[variable].start


def _figures(results: Path, labels: tuple[str, ...], settings: list[dict[str, float]],
             threshold: float, window: tuple[float, float], limits: Limits,
             s: Signals) -> Comparison:
    def figure(group: h5py.Group, signal: str, measure: str, per: str | None = None) -> float:
        t = group["time"][()]
        values = {x: group["instances"][x.partition(".")[0]][x.partition(".")[2]][()]
                  for x in (signal, per) if x}
        outcome = evaluate(Criterion("f", signal, measure, window, min=-math.inf, per=per), t,
                           values)
        return outcome.value

    margin = Figure("capture margin", "× threshold", {}, limits.margin)
    capture = Figure("capture", "fraction of paces", {}, limits.capture)
    pacing = Figure("pacing", "% of beats", {})
    output = Figure("cardiac output", "L/min", {}, limits.cardiac_output)
    longevity = Figure("battery longevity", "years", {}, limits.longevity)
    failed = {}
    with h5py.File(results, "r") as f:
        for i, label in enumerate(labels):
            margin.values[label] = settings[i][s.amplitude] / threshold
            group = f.get(f"members/{member_id(i)}")
            if group is None or group.attrs.get("status") != COMPLETED:
                failed[label] = str(group.attrs.get("error", "not run")) if group else "not run"
                for fig in (capture, pacing, output, longevity):
                    fig.values[label] = math.nan
                continue
            capture.values[label] = figure(group, s.cell_beats, "response_ratio", s.paces)
            paces = figure(group, s.paces, "increase")
            beats = figure(group, s.heart_beats, "increase")
            pacing.values[label] = 100.0 * paces / beats if beats else math.nan
            output.values[label] = figure(group, s.cardiac_output, "mean")
            longevity.values[label] = figure(group, s.longevity, "final")
    return Comparison(labels, [margin, capture, pacing, output, longevity], results, failed)
