"""`cosim fit`: a scenario's ``fit`` section run through the cohort pipeline, then the
personalised twin written and run.

``fit_scenario(path)``: prepare the scenario once (FMUs read once), fit (``cosim.twins.fit``)
with every evaluation batch a cohort of the scenario (``method: table``) run by
``cosim.run.run_into`` with the strategy of this process — in one process ``InProcess``, under
``mpiexec -n N`` the ``Distributed`` one (members dealt over the ranks; every rank gets the
same recorded signals back and takes the same optimiser step) —, then write the personalised
scenario (the original with the fitted values as instance parameters, no ``fit`` section)
beside the original and run it into the results file, to which the fit is added (``/fit``:
``docs/results-format.md``).
"""

from __future__ import annotations

import dataclasses
import json
import time as clock
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cosim.results.output import claim, commit, discard
from cosim.results.recorder import COMPLETED, open_for_writing, writing
from cosim.running.pipeline import Report, default_output, prepare, run_into, run_scenario, strategy
from cosim.running.strategies import Prepared, member_id
from cosim.scenario.cohort import Cohort
from cosim.twins.fit import FitProblem, FitResult, Simulate, read_fit, run_fit, with_references


@dataclass
class FitRun:
    result: FitResult
    problem: FitProblem
    personalised: Path  # the personalised scenario file
    report: Report | None  # its run (None on MPI ranks other than 0)


def cohort_simulator(prepared: Prepared, signals: list[str], folder: Path,
                     make_strategy: Callable[[], Any] = strategy) -> Simulate:
    """Each batch of parameter vectors as one cohort of ``prepared``, recording ``signals``
    only, criteria left out; the batch's results file is read and removed."""
    record: dict[str, list[str]] = {}
    for signal in signals:
        instance, _, variable = signal.partition(".")
        record.setdefault(instance, []).append(variable)
    settings = dataclasses.replace(prepared.settings,
                                   record={k: tuple(v) for k, v in record.items()},
                                   record_reduce={})
    scenario = dataclasses.replace(prepared.scenario, criteria=[], measured={})
    batches = [0]

    def simulate(thetas: np.ndarray, names: tuple[str, ...]) -> list:
        batches[0] += 1
        cohort = Cohort(names, thetas, "table", None)
        run = Prepared(scenario, prepared.graph, settings, cohort)
        how = make_strategy()
        target = folder / f"batch-{batches[0]:05d}.h5"
        claimed = how.claim(lambda: claim(target))
        results = how.share(claimed.partial if how.leader else None)
        run_into(run, results, strategy=how)
        found = None
        if how.leader:
            commit(claimed, status=COMPLETED)
            found = read_members(target, len(thetas), signals)
            discard(target)  # and its part files, under MPI
        return how.share(found)

    return simulate


def read_members(path: Path, count: int, signals: list[str]) -> list:
    """Each member's recorded ``signals`` as (time, values); None for a member that failed."""
    import h5py

    found = []
    with h5py.File(path, "r") as f:
        for i in range(count):
            group = f.get(f"members/{member_id(i)}")
            if group is None or group.attrs.get("status") != COMPLETED:
                found.append(None)
                continue
            t = group["time"][()]
            found.append({s: (t, group["instances"][s.partition(".")[0]][s.partition(".")[2]][()])
                          for s in signals})
    return found


def fit_scenario(path: str | Path, output: str | Path | None = None, *,
                 personalised: str | Path | None = None, plot: bool = True) -> FitRun:
    """Fit the scenario at ``path`` (its ``fit`` section), write the personalised scenario
    (default ``<stem>.personalised.yaml`` beside it) and run it into ``output`` (default
    ``results/<stem>.personalised.h5``) with the fit added; on every MPI rank."""
    path = Path(path)
    how = strategy()
    prepared = how.prepare(path, prepare)
    problem = with_references(read_fit(prepared.scenario), prepared.scenario, prepared.graph)
    personalised = Path(personalised) if personalised else \
        path.with_name(f"{path.stem}.personalised.yaml")
    output = Path(output) if output else default_output(personalised)
    folder = output.with_name(f"{output.name}.fit")
    if how.leader:
        folder.mkdir(parents=True, exist_ok=True)
    how.share(None)
    simulate = cohort_simulator(prepared, problem.signals, folder)
    started = clock.perf_counter()
    result = run_fit(problem, lambda thetas: simulate(thetas, problem.names))
    result.seconds = clock.perf_counter() - started
    if how.leader:
        folder.rmdir()
        personalised.write_text(personalised_text(prepared.scenario, result), encoding="utf-8")
    how.share(None)
    report = run_scenario(personalised, output, plot=False)
    if how.leader:
        with writing(open_for_writing(report.results)) as file:
            write_fit(file, problem, result, prepared.scenario)
        report = _plotted(report, personalised, plot)
    return FitRun(result, problem, personalised, report)


def _plotted(report: Report, personalised: Path, plot: bool) -> Report:
    if not plot:
        return report
    from cosim.running.pipeline import plotted
    from cosim.scenario.scenario import load_scenario
    return plotted(report, load_scenario(personalised), report.results)


def personalised_text(scenario: Any, result: FitResult) -> str:
    """The scenario's text with the fitted values as instance parameters and no ``fit``
    section (YAML rewritten: comments of the original are not kept)."""
    data = yaml.safe_load(scenario.text)
    data.pop("fit", None)
    for name, value in zip(result.names, result.values, strict=True):
        instance, _, parameter = name.partition(".")
        spec = data["instances"][instance]
        if isinstance(spec, str):
            spec = data["instances"][instance] = {"fmu": spec}
        spec.setdefault("parameters", {})[parameter] = float(value)
    head = (f"# Personalised by `cosim fit` from {Path(scenario.file).name} "
            f"(sha256 {scenario.sha256[:16]}…): " + "; ".join(
                f"{n} = {v:.6g} ± {s:.3g}" for n, v, s in zip(result.names, result.values,
                                                              result.sd, strict=True)) + "\n")
    return head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def write_fit(file: Any, problem: FitProblem, result: FitResult, scenario: Any) -> None:
    """``/fit`` of a results file: the summary (attribute ``summary``, JSON), the covariance,
    and per signal target its simulated values at the measured times (``simulated``) and —
    only where the data's store is ``full`` — the measured ones (``measured``)."""
    group = file.require_group("fit")
    group.attrs["summary"] = json.dumps(result.summary())
    group.create_dataset("covariance", data=result.covariance)
    row = 0
    for i, target in enumerate(problem.targets):
        size = 1 if target.reference is None else len(target.reference[0])
        kept = group.create_group(f"targets/{i}")
        kept.attrs.update({"name": target.name, "signal": target.signal,
                           "reference": target.reference_name, "measure": target.measure,
                           "rms": result.target_rms[target.name]})
        scale = (target.sigma or 1.0) / np.sqrt(target.weight)
        if target.reference is not None:
            source = target.reference_name.partition(".")[0]
            t, y = target.reference
            kept.create_dataset("time", data=t)
            kept.create_dataset("simulated", data=y + result.residuals[row:row + size] * scale)
            if scenario.measured[source].store == "full":
                kept.create_dataset("measured", data=y)
        else:
            kept.attrs["value"] = target.value
            kept.attrs["figure"] = target.value + float(result.residuals[row]) * scale
        row += size
