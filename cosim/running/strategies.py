"""Where a run's work happens: the strategy of ``cosim.running.pipeline``'s pipeline, and the
pieces every
strategy shares.

A strategy decides where the instances and the cohort members run and where their rows are
written; the pipeline (``cosim.running.pipeline.run_into``) does the rest the same way whatever the
strategy: ``begin`` (the results file made, or reopened to go on) → ``run`` → on the process
that writes the results file, ``end`` (what only this strategy knows: part files merged, its
timings) → the verdict (``cosim.running.pipeline.conclude``). Two strategies:

- ``InProcess`` (here): every instance in this process, writing the results file directly; a
  cohort's members one after the other;
- ``cosim.running.mpi.Distributed``: instances or cohort members spread over MPI ranks, each
  writing a part file that rank 0 merges.

Shared by both: ``run_one`` (one execution recorded into an HDF5 group, with checkpoints),
``run_member`` (one cohort member into ``/members/<id>``, judged when this process holds all of
it), ``judge`` (the one evaluation of criteria on recorded data), the provenance of a results
file, and reopening a file to go on with it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import h5py

from cosim.coupling.graph import CouplingGraph
from cosim.errors import ResultsWriteError
from cosim.fmi.isolation import isolation_by_instance
from cosim.master.description import Settings
from cosim.master.execution import ExchangeFactory, Execution, Observer
from cosim.master.journal import Journal
from cosim.results.h5clear import clear_writer_flags
from cosim.results.output import Claim, commit
from cosim.results.recorder import (
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
    write_log,
    write_master,
    writing,
)
from cosim.running.checkpoint import Checkpointer, checkpoint_path
from cosim.running.provenance import run_provenance
from cosim.scenario.criteria import Outcome, evaluate, write_verdict

if TYPE_CHECKING:
    from cosim.scenario.cohort import Cohort
    from cosim.scenario.scenario import Scenario

T = TypeVar("T")


@dataclass
class MemberEnd:
    """How a cohort member ended, as the cohort's summary needs it: handed on by the process
    that ran and judged it, so that nobody reads it back from the results file."""

    index: int
    status: str
    error: str = ""
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == COMPLETED and all(o.passed for o in self.outcomes)


@dataclass
class Prepared:
    """Everything a run needs, read and checked before anything is written."""

    scenario: Scenario
    graph: CouplingGraph
    settings: Settings
    cohort: Cohort | None


class InProcess:
    """Every instance in this process, writing the results file itself."""

    leader = True  # this process writes the results file and makes the report

    def __init__(self):
        self.ended: dict[int, MemberEnd] = {}  # how each member run here ended

    def prepare(self, path: Path | Scenario, prepare: Callable[[Path | Scenario], Prepared]
                ) -> Prepared:
        return prepare(path)

    def claim(self, claiming: Callable[[], T]) -> T:
        return claiming()

    def agree(self, action: Callable[[], T]) -> T:
        """``action``, run where the work is (under MPI: on every rank)."""
        return action()

    def share(self, value: T) -> T:
        """``value`` of the leader, on every process."""
        return value

    def begin(self, prepared: Prepared, results: Path, resume: bool, checkpoint) -> list[int]:
        """Make the results file (``resume``: reopen it); the cohort members still to run."""
        if resume:
            with writing(reopen(results)) as file:
                done = finished_members(file)
        else:
            create_results_file(results, provenance(prepared)).close()
            done = set()
        cohort = prepared.cohort
        return [i for i in range(len(cohort)) if member_id(i) not in done] if cohort else []

    def run(self, prepared: Prepared, results: Path, todo: list[int], journal: Journal | None,
            checkpoint) -> dict[str, Any]:
        """The run, or each member of ``todo`` in turn (a failing member does not stop the
        cohort); returns the figures ``end`` writes."""
        if prepared.cohort is None:
            if journal is not None:
                journal.begin(results, "/")
            execution = Execution(prepared.graph, prepared.settings, resume=checkpoint,
                                  position=None if journal is None else journal.position)
            saving = prepared.scenario.checkpoint_every
            return run_one(execution, results, journal=journal,
                           resume_rows=None if checkpoint is None else checkpoint.rows,
                           checkpoints=None if saving is None else (
                               checkpoint_path(results), saving, prepared.scenario.sha256, None))
        total = len(prepared.cohort)
        done = [i for i in range(total) if i not in set(todo)]
        failed = sum(not member_passed(results, member_id(i)) for i in done)
        for index in todo:
            if journal is not None:  # what the supervisor's progress line shows
                journal.members(len(done), total, failed)
            end = run_member(results, index, prepared, journal)
            self.ended[index] = end
            done.append(index)
            failed += not end.passed
        return {}

    def end(self, main: h5py.File, timing: dict[str, Any]) -> str | None:
        """The run's own figures into the results file: busy seconds, checkpoints."""
        for key, value in timing.items():
            main.attrs[key] = json.dumps(value) if isinstance(value, dict) else value
        return None

    def fail(self, error: BaseException, results: Path) -> None:
        """The run failed: the results file says how it ended; the error goes on up."""
        record_end(results, "/", error)
        raise error

    def stop(self, error: BaseException, results: Path) -> None:
        """Something after the run failed (the file committed, the plot): it goes on up."""
        raise error

    def keep(self, claimed: Claim, error: BaseException) -> Path | None:
        """After a failed run: the file, set aside with its status; where it is kept."""
        return commit(claimed, status=status_of(error), error=error_text(error))


def provenance(prepared: Prepared) -> dict[str, Any]:
    """Root attributes that say exactly what produced a results file."""
    scenario, graph, settings = prepared.scenario, prepared.graph, prepared.settings
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


def run_one(execution: Execution, path: Path, *, journal: Journal | None = None,
            scales: bool = True, resume_rows: int | None = None,
            checkpoints: tuple | None = None) -> dict[str, Any]:
    """Run ``execution`` recording into the root of the results (or part) file ``path``; its
    FMUs' log and why it ended are written after it, its status is the caller's to write
    (a failure: written here, and raised again). ``checkpoints``: ``(path, every, scenario
    hash, gather)`` of the checkpoints to save. Returns the busy seconds per instance (and the
    checkpoints' count and seconds)."""
    file = open_for_writing(path)
    recorder = Recorder(file, journal=journal, scales=scales, resume_rows=resume_rows)
    observers: list[Observer] = [recorder]
    if checkpoints is not None:
        target, every, sha256, gather = checkpoints
        observers.append(Checkpointer(target, every, sha256, recorder, gather=gather))
    try:
        with writing(file):
            execution.run(observers)
    except BaseException as error:
        record_end(path, "/", error, execution)
        raise
    with writing(open_for_writing(path)) as file:
        write_log(file, execution)
        write_master(file, execution)
        file.attrs["end_reason"] = execution.end_reason
    timing: dict[str, Any] = {"instance_busy_seconds": execution.master.busy}
    if checkpoints is not None:
        timing["checkpoints"] = observers[-1].saved
        timing["checkpoint_seconds"] = observers[-1].seconds
    return timing


def run_member(results: Path, index: int, prepared: Prepared, journal: Journal | None = None,
               *, scales: bool = True, local: Sequence[str] | None = None,
               exchange: ExchangeFactory | None = None,
               observers: Sequence[Observer] = ()) -> MemberEnd:
    """Run cohort member ``index`` into ``/members/<id>`` of the file ``results``; returns how
    it ended. A failing member is recorded and the cohort goes on (unless its instances are
    spread over processes, ``local``: the others could not go on alone); an interruption
    (KeyboardInterrupt) is recorded and raised again. Judged here when this process holds all
    of its instances (else after the parts are merged: ``cosim.running.pipeline.conclude``).
    ``scales`` False: a part file holding part of the member, whose time scales are attached
    after the merge."""
    name = f"/members/{member_id(index)}"
    parameters = prepared.cohort.member(index)
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
            execution = Execution(prepared.graph, prepared.settings,
                                  member_parameters(prepared.graph, parameters), local=local,
                                  exchange=exchange,
                                  position=None if journal is None else journal.position)
            execution.run([Recorder(group, journal=journal, scales=scales), *observers])
    except ResultsWriteError as caught:  # the disk: no later member could be written either
        record_end(results, name, caught, execution)
        raise
    except Exception as caught:  # noqa: BLE001 - one failing member does not stop a cohort
        if local is not None:
            record_end(results, name, caught, execution)
            raise
        error = caught
    except BaseException as caught:  # interrupted: recorded, then the cohort stops
        record_end(results, name, caught, execution)
        raise
    if error is not None:
        record_end(results, name, error, execution)
        return MemberEnd(index, status_of(error), error_text(error))
    with writing(open_for_writing(results)) as file:
        outcomes = judge(file[name], prepared.scenario) if local is None else []
        write_end(file[name], None, execution)
    return MemberEnd(index, COMPLETED, "", outcomes)


def judge(group: h5py.Group, scenario: Scenario) -> list[Outcome]:
    """Evaluate the scenario's criteria on what ``group`` recorded; store the verdict there.

    The results file is the one source of a verdict: the rows of a resumed run, of a
    distributed run and of a cohort member come together only there."""
    if not scenario.criteria:
        return []
    times = group["time"][()]
    values = {}
    for criterion in scenario.criteria:
        for signal in criterion.signals():
            instance, _, variable = signal.partition(".")
            values[signal] = group["instances"][instance][variable][()]
    references = {}  # measured columns: from the data, whatever the results keep of them
    for criterion in scenario.criteria:
        if criterion.reference:
            source, _, column = criterion.reference.partition(".")
            table = scenario.measured[source]
            instance, _, variable = criterion.signal.partition(".")
            unit = group["instances"][instance][variable].attrs.get("units", "")
            references[criterion.reference] = (table.time, table.column_in(column, unit))
    outcomes = [evaluate(c, times, values, references) for c in scenario.criteria]
    write_verdict(group, outcomes)
    return outcomes


def reopen(results: Path) -> h5py.File:
    """A results file an earlier run left unfinished, open to go on: running again."""
    clear_writer_flags(results)
    file = open_for_writing(results)
    file.attrs["status"] = RUNNING
    file.attrs["error"] = ""
    file.attrs["resumed"] = int(file.attrs.get("resumed", 0)) + 1
    return file


def finished_members(file: h5py.File) -> set[str]:
    """The members a cohort file holds with a final status; unfinished ones are removed, to be
    run again."""
    members = file.get("members", {})
    for name in [name for name, group in members.items()
                 if group.attrs.get("status") not in (COMPLETED, FAILED)]:
        del members[name]
    return set(members)


def member_passed(results: Path, member: str) -> bool:
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


def elapsed_since(started: float, main: h5py.File) -> float:
    """Seconds of this run so far plus those an earlier run of the same file spent."""
    return time.perf_counter() - started + float(main.attrs.get("run_seconds", 0.0))
