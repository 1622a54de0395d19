"""Running a scenario end to end: scenario file → coupled FMUs → HDF5 file → verdict → plot.

One pipeline for every kind of run; where the work happens is its strategy
(``cosim.running.strategies``): ``InProcess``, or ``cosim.running.mpi.Distributed`` under
``mpiexec`` with
more than one rank (instances, or cohort members, spread over the ranks).

``run_scenario`` runs a scenario in this process: ``prepare`` (read and check everything;
nothing is written if that fails) → ``cosim.results.output.claim`` (the target, its lock, a partial
file of this run) → ``run_into`` (the run writes the partial file; no lock, no rename) →
``cosim.results.output.commit`` (the completed file replaces the target; any other stays aside
under its
partial name) → plot and HTML report. ``cosim run`` does the same steps with ``run_into`` in a
supervised worker process (``cosim.running.supervise``). ``run_into`` is itself one sequence
whatever
the strategy: ``begin`` (results file made or reopened) → ``run`` → ``end`` (the strategy's
figures) → ``conclude`` (judge, verdict or cohort summary, status: written once here).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from cosim.fmi.measured import store_measured
from cosim.master.journal import Journal
from cosim.results.output import claim, commit, kept_note
from cosim.results.recorder import COMPLETED, open_for_writing, write_status, writing
from cosim.running.checkpoint import checkpoint_path, checkpoint_to_resume
from cosim.running.strategies import (
    InProcess,
    MemberEnd,
    Prepared,
    elapsed_since,
    judge,
    member_id,
)
from cosim.scenario.criteria import (
    CohortVerdict,
    Outcome,
    cohort_verdict,
    read_outcomes,
    verdict_text,
    write_cohort_verdict,
)
from cosim.scenario.scenario import Scenario, build
from cosim.scenario.ssp import load_scenario_or_ssp


@dataclass
class Report:
    """What a run produced."""

    results: Path
    outcomes: list[Outcome] = field(default_factory=list)
    plot: Path | None = None
    members: int = 0
    html: Path | None = None  # the report (cosim.results.report)
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


def default_output(scenario_file: Path | None) -> Path:
    return Path("results") / f"{scenario_file.stem if scenario_file else 'scenario'}.h5"


def prepare(source: str | Path | Scenario) -> Prepared:
    """Read the scenario (a file: YAML, or SSP; or a ``Scenario`` already read or built in
    Python), build its coupling graph, draw its cohort: every check of a run."""
    scenario = source if isinstance(source, Scenario) else load_scenario_or_ssp(source)
    graph, settings = build(scenario)
    cohort = None
    if scenario.cohort is not None:
        from cosim.scenario.cohort import sample_cohort

        cohort = sample_cohort(scenario.cohort,
                               Path(scenario.file).parent if scenario.file else Path.cwd())
    return Prepared(scenario, graph, settings, cohort)


def strategy(journal: Journal | None = None):
    """Where a run started here works: over the MPI ranks when there are several
    (``journal``: this rank's, when a supervisor watches it), else in this process."""
    from cosim.running.mpi import distributed

    return distributed(journal) or InProcess()


def run_scenario(source: str | Path | Scenario, output: str | Path | None = None, *,
                 plot: bool = True, journal: Journal | None = None,
                 resume: bool | Path = False) -> Report:
    """Run a scenario (a file, or a ``Scenario``: ``prepare``): in this process (``cosim
    run`` supervises it: ``cosim.running.supervise``), or under ``mpiexec`` with more than one rank
    over the ranks (each returns the same report; ``journal``: this rank's, when a supervisor
    watches it).

    A run that does not complete raises; its results are then kept aside under their partial
    name, which a note on the exception gives.
    """
    how = strategy(journal)
    if not isinstance(source, Scenario):
        source = Path(source)
    prepared = how.prepare(source, prepare)
    target = Path(output) if output else default_output(prepared.scenario.file)
    claimed = how.claim(lambda: claim(target, resume))
    results = how.share(claimed.partial if how.leader else None)
    if journal is not None and how.leader:
        journal.announce_results(results)  # under MPI, rank 0's supervisor completes it
    try:
        report = run_into(prepared, results, journal=journal, resume=bool(resume),
                          strategy=how)
    except BaseException as error:
        kept = how.keep(claimed, error)
        if kept is not None:
            error.add_note(kept_note(kept))
        raise
    if how.leader:
        try:
            report.results = commit(claimed, status=COMPLETED)
            report = plotted(report, prepared.scenario, report.results if plot else None)
        except BaseException as error:  # noqa: BLE001 - under MPI the others wait for it
            how.stop(error, results)
    return how.share(report)


def plotted(report: Report, scenario: Scenario, results: Path | None,
            png: Path | None = None) -> Report:
    """The report with the PNG of a single run drawn from ``results`` (None: neither) to
    ``png`` (default: beside ``results``), and the HTML report (``cosim.results.report``, single
    runs
    and cohorts) beside the PNG."""
    if results is None:
        return report
    png = Path(png) if png else Path(results).with_suffix(".png")
    if report.cohort is None and (scenario.plot or scenario.criteria):
        from cosim.results.plot import plot_results

        report.plot = plot_results(results, scenario.plot, report.outcomes, png)
    from cosim.results.report import write_report

    report.html = write_report(results, png.with_suffix(".html"),
                               shown_as=png.with_suffix(".h5").name)
    return report


def run_into(prepared: Prepared, results: Path, *, journal: Journal | None = None,
             resume: bool = False, strategy=None) -> Report | None:
    """Run a prepared scenario, writing the results file ``results``; the report (under MPI:
    on rank 0, None on the others).

    Knows nothing of locks or renames (``cosim.results.output``). The file ends with status
    ``completed`` (and the verdict), or ``failed``/``interrupted`` and the error, which is then
    raised again. ``journal``: where a supervising process follows the run
    (``cosim.running.supervise``). ``resume``: go on with the run in the existing ``results``: a
    single
    run from its last checkpoint (``cosim.running.checkpoint``), a cohort with the members it has
    not
    finished (after a member crashed the process running it, or the run was stopped).
    ``strategy``: where the work happens (default: ``InProcess``).
    """
    how = strategy or InProcess()
    settings = prepared.settings
    if journal is not None:
        journal.describe_instances(list(prepared.graph.instances))
        journal.limit_calls(settings.call_timeout)
        journal.plan(settings.start, settings.stop)
    checkpoint = None
    if resume and prepared.cohort is None:
        checkpoint = how.agree(lambda: checkpoint_to_resume(results, prepared.scenario))
    todo = how.begin(prepared, results, resume, checkpoint)
    started = time.perf_counter()
    try:
        timing = how.run(prepared, results, todo, journal, checkpoint)
    except BaseException as error:  # noqa: BLE001 - the strategy records it and raises
        how.fail(error, results)
    if not how.leader:
        return None
    try:
        with writing(open_for_writing(results)) as main:
            balance = how.end(main, timing)
            concluding = time.perf_counter()
            report = conclude(main, prepared, results, how.ended)
            main.attrs["summary_seconds"] = time.perf_counter() - concluding
            main.attrs["run_seconds"] = elapsed_since(started, main)
            report.balance = balance
        checkpoint_path(results).unlink(missing_ok=True)  # completed: nothing to resume
    except BaseException as error:  # noqa: BLE001
        how.fail(error, results)
    return report


def conclude(main: h5py.File, prepared: Prepared, results: Path,
             ended: dict[int, MemberEnd] | None = None) -> Report:
    """After a run that completed: its verdict (and a cohort's summary) and its status, into
    the results file ``main``; the report. ``ended``: how the cohort members run by this run
    ended, judged where they ran; the others (those of an earlier run resumed, members spread
    over ranks) are read here and judged if they were not."""
    scenario, cohort = prepared.scenario, prepared.cohort
    store_measured(main, scenario.measured)  # only the data whose store is full
    if cohort is None:
        outcomes = judge(main, scenario)
        write_status(main, None)
        return Report(results, outcomes)
    members = [cohort.member(i) for i in range(len(cohort))]
    ended = dict(ended or {})
    for i in range(len(cohort)):
        if i not in ended:
            ended[i] = member_end(main, i, scenario)
    verdict = write_summary(main, scenario, cohort.names, members, ended)
    write_status(main, None)
    return Report(results, members=len(members), cohort=verdict)


def member_end(main: h5py.File, index: int, scenario: Scenario) -> MemberEnd:
    """How member ``index`` of the results file ``main`` ended, read there (judged now if it
    completed unjudged)."""
    group = main.get(f"members/{member_id(index)}")
    if group is None:
        return MemberEnd(index, "not run")
    status = str(group.attrs.get("status", "missing"))
    if status == COMPLETED and "verdict" not in group:
        judge(group, scenario)
    return MemberEnd(index, status, str(group.attrs.get("error", "")), read_outcomes(group))


def write_summary(file: h5py.File, scenario: Scenario, names: tuple[str, ...],
                  members: list[dict[str, float]], ended: dict[int, MemberEnd]
                  ) -> CohortVerdict:
    """The cohort summary table (member, parameters, status, passed, criteria figures) from
    how each member ended, and the cohort's verdict (``/verdict``); returns the verdict."""
    rows, judged = [], []
    for i, _ in enumerate(members):
        status, error, outcomes = ended[i].status, ended[i].error, ended[i].outcomes
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


def judged_members(file: h5py.Group, count: int) -> list[tuple[str, str, str, list[Outcome]]]:
    """``(member id, status, error, outcomes)`` of a cohort's ``count`` members as ``file``
    holds them: what its verdict is made of (``cosim.scenario.criteria.cohort_verdict``)."""
    judged = []
    for i in range(count):
        group = file.get(f"members/{member_id(i)}")
        status = str(group.attrs.get("status", "missing")) if group is not None else "not run"
        error = str(group.attrs.get("error", "")) if group is not None else ""
        judged.append((member_id(i), status, error,
                       read_outcomes(group) if group is not None else []))
    return judged
