"""Running a scenario end to end: scenario file → coupled FMUs → HDF5 file → verdict → plot.

``run_scenario`` is what ``cosim run`` calls. In one process it runs the whole graph; under MPI
(``cosim.parallel``) the same function spreads instances or cohort members over the ranks.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cosim.criteria import Outcome, evaluate, verdict_text, write_verdict
from cosim.execution import Execution, Settings
from cosim.graph import CouplingGraph
from cosim.isolation import isolation_by_instance
from cosim.journal import Journal
from cosim.provenance import run_provenance
from cosim.recorder import Recorder, create_results_file, writing
from cosim.scenario import Scenario, build, load_scenario


@dataclass
class Report:
    """What a run produced."""

    results: Path
    outcomes: list[Outcome] = field(default_factory=list)
    plot: Path | None = None
    members: int = 0
    balance: str | None = None  # MPI: how the ranks shared the work, one line

    @property
    def passed(self) -> bool | None:
        return all(o.passed for o in self.outcomes) if self.outcomes else None

    def text(self) -> str:
        lines = [f"results: {self.results}"]
        if self.plot:
            lines.append(f"plot:    {self.plot}")
        if self.balance:
            lines.append(f"ranks:   {self.balance}")
        if self.outcomes:
            lines.append(verdict_text(self.outcomes))
        return "\n".join(lines)


def default_output(scenario_file: Path) -> Path:
    return Path("results") / f"{scenario_file.stem}.h5"


def provenance(scenario: Scenario, graph: CouplingGraph, settings: Settings) -> dict[str, Any]:
    """Root attributes that say exactly what produced a results file."""
    isolation = isolation_by_instance(graph)
    return {
        **run_provenance(scenario),
        "scenario_name": scenario.name,
        "scenario_text": scenario.text,
        "fmus": {name: {"file": graph.fmu(name).path.name, "sha256": graph.fmu(name).sha256,
                        "model_name": graph.fmu(name).model_name,
                        "generation_tool": graph.fmu(name).generation_tool}
                 for name in graph.instances},
        "isolation": {name: isolation[name].mode if isolation[name] else "none"
                      for name in graph.instances},
        "algorithm": settings.algorithm,
        "start": settings.start,
        "stop": settings.stop,
        "step": settings.step,
        "record_every": settings.record_every,
    }


def run_scenario(path: str | Path, output: str | Path | None = None, *, plot: bool = True,
                 journal: Journal | None = None, resume_cohort: bool = False) -> Report:
    """Run a scenario file; under ``mpiexec`` with more than one rank, run it in parallel.

    ``journal``: where a supervising process can follow the run (``cosim.supervise``).
    ``resume_cohort``: go on with a cohort in an existing ``output``, running only the members
    it does not hold yet (after a member crashed the process running it).
    """
    from cosim import parallel

    if parallel.size() > 1:
        return parallel.run_scenario(Path(path), Path(output) if output else None, plot=plot,
                                     journal=journal)
    scenario = load_scenario(path)
    output = Path(output) if output else default_output(Path(path))
    graph, settings = build(scenario)
    position = None
    if journal is not None:
        journal.describe_instances(list(graph.instances))
        journal.limit_calls(settings.call_timeout)
        position = journal.position
    if scenario.cohort is not None:
        from cosim.cohort import sample_cohort

        cohort = sample_cohort(scenario.cohort, Path(path).parent)
        members = [cohort.member(i) for i in range(len(cohort))]
        file = (h5py.File(output, "r+") if resume_cohort
                else create_results_file(output, provenance(scenario, graph, settings)))
        with writing(file):
            started = time.perf_counter()
            done = set(file.get("members", {}))
            for i, parameters in enumerate(members):
                if member_id(i) not in done:
                    run_member(file, i, scenario, graph, settings, parameters, journal)
            file.attrs["run_seconds"] = (time.perf_counter() - started
                                         + float(file.attrs.get("run_seconds", 0.0)))
            write_summary(file, scenario, cohort.names, members)
            file.attrs["status"] = "completed"
        return Report(output, members=len(members))
    with writing(create_results_file(output, provenance(scenario, graph, settings))) as file:
        if journal is not None:
            journal.begin(output, "/")
        execution = Execution(graph, settings, position=position)
        recorder = Recorder(file, journal=journal, execution=execution)
        started = time.perf_counter()
        execution.run([recorder])
        file.attrs["run_seconds"] = time.perf_counter() - started
        file.attrs["instance_busy_seconds"] = json.dumps(execution.master.busy)
        outcomes = judge(file, scenario)
    figure = None
    if plot and (scenario.plot or scenario.criteria):
        from cosim.plot import plot_results

        figure = plot_results(output, scenario.plot, outcomes)
    return Report(output, outcomes, figure)


def judge(group, scenario: Scenario) -> list[Outcome]:
    """Evaluate the scenario's criteria on what ``group`` recorded; store the verdict there."""
    if not scenario.criteria:
        return []
    time = group["time"][()]
    values = {}
    for criterion in scenario.criteria:
        for signal in criterion.signals():
            instance, _, variable = signal.partition(".")
            values[signal] = group["instances"][instance][variable][()]
    outcomes = [evaluate(c, time, values) for c in scenario.criteria]
    write_verdict(group, outcomes)
    return outcomes


def member_id(index: int) -> str:
    return f"{index:06d}"


def member_parameters(graph: CouplingGraph, parameters: dict[str, float]
                      ) -> dict[str, dict[str, Any]]:
    """A member's drawn ``{"instance.variable": value}`` as typed values per instance."""
    by_instance: dict[str, dict[str, Any]] = {}
    for name, value in parameters.items():
        instance, _, variable = name.partition(".")
        var = graph.fmu(instance).variables[variable]
        by_instance.setdefault(instance, {})[variable] = (
            int(round(value)) if var.type in ("Integer", "Enumeration") else
            bool(value) if var.type == "Boolean" else value)
    return by_instance


def run_member(file, index: int, scenario: Scenario, graph: CouplingGraph, settings: Settings,
               parameters: dict[str, float], journal: Journal | None = None) -> list[Outcome]:
    """Run cohort member ``index`` into ``/members/<id>`` of ``file``; returns its outcomes."""
    group = file.create_group(f"members/{member_id(index)}")
    group.attrs["member"] = index
    group.attrs["parameters"] = json.dumps(parameters)
    group.attrs["status"] = "running"
    if journal is not None:
        file.flush()
        journal.begin(file.filename, group.name)
    execution = Execution(graph, settings, member_parameters(graph, parameters),
                          position=None if journal is None else journal.position)
    try:
        execution.run([Recorder(group, journal=journal, execution=execution)])
    except Exception as error:  # one failing member does not stop a cohort
        group.attrs["status"] = "failed"
        group.attrs["error"] = str(error)
        return []
    return judge(group, scenario)


def write_summary(file, scenario: Scenario, names: tuple[str, ...],
                  members: list[dict[str, float]]) -> None:
    """The cohort summary table: member, parameters, status, verdict, criteria figures."""
    rows = []
    for i, _ in enumerate(members):
        group = file["members"][member_id(i)]
        verdict = group["verdict"] if "verdict" in group else None
        figures = []
        for j, _criterion in enumerate(scenario.criteria):
            figures.append(float(verdict[f"{j:03d}"].attrs["value"]) if verdict else np.nan)
        rows.append((i, *[members[i][n] for n in names], str(group.attrs["status"]),
                     bool(verdict.attrs["passed"]) if verdict else False, *figures))
    dtype = ([("member", "i8")] + [(n, "f8") for n in names] + [("status", "S16"),
             ("passed", "?")] + [(c.name, "f8") for c in scenario.criteria])
    table = np.array(rows, dtype=dtype)
    if "summary" in file:
        del file["summary"]
    file.create_dataset("summary", data=table)
    passed = int(table["passed"].sum())
    file.attrs["summary"] = f"{passed} of {len(table)} members passed"
