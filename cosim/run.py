"""Running a scenario end to end: scenario file → coupled FMUs → HDF5 file → verdict → plot.

``run_scenario`` runs a scenario in this process: ``prepare`` (read and check everything;
nothing is written if that fails) → ``cosim.output.claim`` (the target, its lock, a partial
file of this run) → ``run_into`` (the run writes the partial file; no lock, no rename) →
``cosim.output.commit`` (the completed file replaces the target; any other stays aside under its
partial name) → plot. ``cosim run`` does the same steps with ``run_into`` in a supervised worker
process (``cosim.supervise``). Under MPI (``cosim.parallel``) the same steps spread instances or
cohort members over ranks.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from cosim.checkpoint import Checkpointer, checkpoint_path, checkpoint_to_resume
from cosim.criteria import (
    CohortVerdict,
    Outcome,
    cohort_verdict,
    evaluate,
    read_outcomes,
    verdict_text,
    write_cohort_verdict,
    write_verdict,
)
from cosim.errors import ResultsWriteError
from cosim.execution import Execution, Settings
from cosim.graph import CouplingGraph
from cosim.h5clear import clear_writer_flags
from cosim.isolation import isolation_by_instance
from cosim.journal import Journal
from cosim.output import claim, commit, kept_note
from cosim.provenance import run_provenance
from cosim.recorder import (
    COMPLETED,
    FAILED,
    RUNNING,
    Recorder,
    create_results_file,
    error_text,
    open_for_writing,
    record_end,
    status_of,
    write_end,
    write_status,
    writing,
)
from cosim.scenario import Scenario, build, load_scenario

if TYPE_CHECKING:
    from cosim.cohort import Cohort


@dataclass
class Report:
    """What a run produced."""

    results: Path
    outcomes: list[Outcome] = field(default_factory=list)
    plot: Path | None = None
    members: int = 0
    html: Path | None = None  # the report (cosim.report)
    balance: str | None = None  # MPI: how the ranks shared the work, one line
    cohort: CohortVerdict | None = None

    @property
    def passed(self) -> bool | None:
        """True: PASS; False: FAIL (a cohort: any member failed or did not complete); None:
        no criteria to judge."""
        if self.cohort is not None:
            return self.cohort.all_passed
        return all(o.passed for o in self.outcomes) if self.outcomes else None

    def text(self) -> str:
        lines = [f"results: {self.results}"]
        if self.plot:
            lines.append(f"plot:    {self.plot}")
        if self.html:
            lines.append(f"report:  {self.html}")
        if self.balance:
            lines.append(f"ranks:   {self.balance}")
        if self.cohort is not None:
            lines.append(self.cohort.text())
        elif self.outcomes:
            lines.append(verdict_text(self.outcomes))
        return "\n".join(lines)


@dataclass
class Prepared:
    """Everything a run needs, read and checked before anything is written."""

    scenario: Scenario
    graph: CouplingGraph
    settings: Settings
    cohort: Cohort | None


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


def prepare(path: str | Path) -> Prepared:
    """Read the scenario, build its coupling graph, draw its cohort: every check of a run."""
    scenario = load_scenario(path)
    graph, settings = build(scenario)
    cohort = None
    if scenario.cohort is not None:
        from cosim.cohort import sample_cohort

        cohort = sample_cohort(scenario.cohort, Path(path).parent)
    return Prepared(scenario, graph, settings, cohort)


def run_scenario(path: str | Path, output: str | Path | None = None, *, plot: bool = True
                 ) -> Report:
    """Run a scenario file in this process (``cosim run`` supervises it: ``cosim.supervise``);
    under ``mpiexec`` with more than one rank, run it in parallel.

    A run that does not complete raises; its results are then kept aside under their partial
    name, which a note on the exception gives.
    """
    from cosim import parallel

    if parallel.size() > 1:
        return parallel.run_scenario(Path(path), Path(output) if output else None, plot=plot)
    prepared = prepare(path)
    claimed = claim(Path(output) if output else default_output(Path(path)))
    try:
        report = run_into(prepared, claimed.partial)
    except BaseException as error:
        kept = commit(claimed, status=status_of(error), error=error_text(error))
        if kept is not None:
            error.add_note(kept_note(kept))
        raise
    report.results = commit(claimed, status=COMPLETED)
    return plotted(report, prepared.scenario, report.results if plot else None)


def plotted(report: Report, scenario: Scenario, results: Path | None,
            png: Path | None = None) -> Report:
    """The report with the PNG of a single run drawn from ``results`` (None: neither) to
    ``png`` (default: beside ``results``), and the HTML report (``cosim.report``, single runs
    and cohorts) beside the PNG."""
    if results is None:
        return report
    png = Path(png) if png else Path(results).with_suffix(".png")
    if report.cohort is None and (scenario.plot or scenario.criteria):
        from cosim.plot import plot_results

        report.plot = plot_results(results, scenario.plot, report.outcomes, png)
    from cosim.report import write_report

    report.html = write_report(results, png.with_suffix(".html"),
                               shown_as=png.with_suffix(".h5").name)
    return report


def run_into(prepared: Prepared, results: Path, *, journal: Journal | None = None,
             resume: bool = False) -> Report:
    """Run a prepared scenario in this process, writing the results file ``results``.

    Knows nothing of locks or renames (``cosim.output``). The file ends with status
    ``completed`` (and the verdict), or ``failed``/``interrupted`` and the error, which is then
    raised again. ``journal``: where a supervising process follows the run
    (``cosim.supervise``). ``resume``: go on with the run in the existing ``results``: a single
    run from its last checkpoint (``cosim.checkpoint``), a cohort with the members it has not
    finished (after a member crashed the process running it, or the run was stopped).
    """
    if journal is not None:
        journal.describe_instances(list(prepared.graph.instances))
        journal.limit_calls(prepared.settings.call_timeout)
        journal.plan(prepared.settings.start, prepared.settings.stop)
    if prepared.cohort is not None:
        return run_cohort_into(prepared, results, journal, resume)
    scenario, graph, settings = prepared.scenario, prepared.graph, prepared.settings
    checkpoint = checkpoint_to_resume(results, scenario) if resume else None
    file = (reopen(results) if resume
            else create_results_file(results, provenance(scenario, graph, settings)))
    if journal is not None:
        journal.begin(results, "/")
    execution = Execution(graph, settings, position=None if journal is None else journal.position,
                          resume=checkpoint)
    recorder = Recorder(file, journal=journal,
                        resume_rows=None if checkpoint is None else checkpoint.rows)
    observers = [recorder]
    if scenario.checkpoint_every:
        observers.append(Checkpointer(checkpoint_path(results), scenario.checkpoint_every,
                                      scenario.sha256, recorder))
    started = time.perf_counter()
    try:
        with writing(file):
            execution.run(observers)
    except BaseException as error:
        record_end(results, "/", error, execution)
        raise
    with writing(open_for_writing(results)) as file:
        file.attrs["run_seconds"] = (time.perf_counter() - started
                                     + float(file.attrs.get("run_seconds", 0.0)))
        file.attrs["instance_busy_seconds"] = json.dumps(execution.master.busy)
        if scenario.checkpoint_every:
            file.attrs["checkpoints"] = observers[-1].saved
            file.attrs["checkpoint_seconds"] = observers[-1].seconds
        outcomes = judge(file, scenario)
        write_end(file, None, execution)
    checkpoint_path(results).unlink(missing_ok=True)  # the run completed: nothing to resume
    return Report(results, outcomes)


def reopen(results: Path):
    """A results file an earlier run left unfinished, open to go on: running again."""
    clear_writer_flags(results)
    file = open_for_writing(results)
    file.attrs["status"] = RUNNING
    file.attrs["error"] = ""
    file.attrs["resumed"] = int(file.attrs.get("resumed", 0)) + 1
    return file


def run_cohort_into(prepared: Prepared, results: Path, journal: Journal | None = None,
                    resume: bool = False) -> Report:
    """Run every cohort member in turn into ``results`` (``resume``: those it does not hold
    yet); a failing member does not stop the cohort."""
    scenario, graph, settings = prepared.scenario, prepared.graph, prepared.settings
    cohort = prepared.cohort
    members = [cohort.member(i) for i in range(len(cohort))]
    if resume:
        with writing(reopen(results)) as file:
            done = finished_members(file)
            earlier = float(file.attrs.get("run_seconds", 0.0))
    else:
        create_results_file(results, provenance(scenario, graph, settings)).close()
        done, earlier = set(), 0.0
    started = time.perf_counter()
    failed = sum(not _member_passed(results, m) for m in done)
    try:
        for i, parameters in enumerate(members):
            if member_id(i) not in done:
                if journal is not None:  # what the supervisor's progress line shows
                    journal.members(len(done), len(members), failed)
                run_member(results, i, scenario, graph, settings, parameters, journal)
                done.add(member_id(i))
                failed += not _member_passed(results, member_id(i))
    except BaseException as error:
        record_end(results, "/", error)
        raise
    with writing(open_for_writing(results)) as file:
        file.attrs["run_seconds"] = earlier + time.perf_counter() - started
        verdict = write_summary(file, scenario, cohort.names, members)
        write_status(file, None)
    return Report(results, members=len(members), cohort=verdict)


def finished_members(file) -> set[str]:
    """The members a cohort file holds with a final status; unfinished ones are removed, to be
    run again."""
    members = file.get("members", {})
    for name in [name for name, group in members.items()
                 if group.attrs.get("status") not in (COMPLETED, FAILED)]:
        del members[name]
    return set(members)


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


def _passed(member) -> bool:
    """A cohort member ran to its end and met every criterion."""
    verdict = member.get("verdict")
    return member.attrs.get("status") != "failed" and (verdict is None
                                                        or bool(verdict.attrs["passed"]))


def _member_passed(results: Path, member: str) -> bool:
    """A cohort member of ``results`` completed and met every criterion."""
    with h5py.File(results, "r", locking=False) as file:
        group = file.get(f"members/{member}")
        if group is None or group.attrs.get("status") != COMPLETED:
            return False
        verdict = group.get("verdict")
        return verdict is None or bool(verdict.attrs["passed"])


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


def run_member(results: Path, index: int, scenario: Scenario, graph: CouplingGraph,
               settings: Settings, parameters: dict[str, float], journal: Journal | None = None,
               scales: bool = True) -> str:
    """Run cohort member ``index`` into ``/members/<id>`` of the file ``results`` and judge it
    (``scales`` False: a part file, whose time scales are attached after the merge);
    returns its status. A failing member is recorded and the cohort goes on; an interruption
    (KeyboardInterrupt) is recorded and raised again."""
    name = f"/members/{member_id(index)}"
    error: BaseException | None = None
    execution = None  # until made: an error before has no FMU log to keep
    try:
        with writing(open_for_writing(results)) as file:
            group = file.create_group(name)
            group.attrs["member"] = index
            group.attrs["parameters"] = json.dumps(parameters)
            group.attrs["status"] = RUNNING
            file.flush()  # the member exists on disk before its FMUs load
            if journal is not None:
                journal.begin(results, name)
            execution = Execution(graph, settings, member_parameters(graph, parameters),
                                  position=None if journal is None else journal.position)
            execution.run([Recorder(group, journal=journal, scales=scales)])
    except ResultsWriteError as caught:  # the disk: no later member could be written either
        record_end(results, name, caught, execution)
        raise
    except Exception as caught:  # noqa: BLE001 - one failing member does not stop a cohort
        error = caught
    except BaseException as caught:  # interrupted: recorded, then the cohort stops
        record_end(results, name, caught, execution)
        raise
    if error is not None:
        record_end(results, name, error, execution)
        return status_of(error)
    with writing(open_for_writing(results)) as file:
        judge(file[name], scenario)
        write_end(file[name], None, execution)
    return COMPLETED


def write_summary(file, scenario: Scenario, names: tuple[str, ...],
                  members: list[dict[str, float]]) -> CohortVerdict:
    """The cohort summary table (member, parameters, status, passed, criteria figures) and the
    cohort's verdict (``/verdict``); returns the verdict."""
    rows, judged = [], []
    for i, _ in enumerate(members):
        group = file.get(f"members/{member_id(i)}")
        status = str(group.attrs.get("status", "missing")) if group is not None else "not run"
        error = str(group.attrs.get("error", "")) if group is not None else ""
        outcomes = read_outcomes(group) if group is not None else []
        figures = [o.value for o in outcomes] if outcomes else [np.nan] * len(scenario.criteria)
        passed = status == COMPLETED and all(o.passed for o in outcomes)
        rows.append((i, *[members[i][n] for n in names], status, passed, *figures))
        judged.append((member_id(i), status, error, outcomes))
    dtype = ([("member", "i8")] + [(n, "f8") for n in names] + [("status", "S16"),
             ("passed", "?")] + [(c.name, "f8") for c in scenario.criteria])
    table = np.array(rows, dtype=dtype)
    for name in ("summary", "member"):
        if name in file:
            del file[name]
    summary = file.create_dataset("summary", data=table)
    member = file.create_dataset("member", data=table["member"])  # its dimension (netCDF)
    member.make_scale("member")
    summary.dims[0].attach_scale(member)
    verdict = cohort_verdict(scenario.criteria, judged)
    file.attrs["summary"] = f"{verdict.passed} of {verdict.members} members passed"
    write_cohort_verdict(file, verdict)
    return verdict
