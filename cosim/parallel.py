"""MPI: running one scenario distributed over ranks, or a cohort of members over rank groups.

Where a value crosses ranks: ``Exchange.__call__`` — after each stage of the master's plan, the
signals produced by this rank's instances that another rank's instances read are sent to that
rank (a plan computed once from the graph, the partition and the signal layout; nothing else
travels, nothing goes through rank 0).

Balance: the partition (``cosim.partition``) weighs each instance by the ``cost:`` declared in
the scenario, or, with ``parallel: {balance: measured}``, by the seconds its FMI calls took in a
pilot run of the first steps (then discarded: the run itself starts again from the start time).
Every distributed run times its instances and its exchanges and writes the figures into the
results file, so a user sees how well the ranks were balanced.

Files: rank 0 claims the target (``cosim.output``: lock, partial file) and writes the partial
main file; every rank writes what it computes to its own part file
``<partial>.parts/rank-NNNN.h5`` (the folder belongs to this run's partial file), in SWMR mode
while rows are appended. The main file links to the parts while the run goes; when it ends,
rank 0 copies them in, removes the folder and commits the file over the target, so the user
gets one self-contained file.

Failure: under ``cosim run`` each rank's supervisor sees its worker fail and tells the others;
rank 0's supervisor completes the partial main file (``complete_after_failure``) and says
where it is; the target is untouched. Without supervisors a failing rank prints one message and
calls ``MPI_Abort``, which stops every rank at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import h5py
import numpy as np

from cosim.checkpoint import Checkpointer, checkpoint_path, checkpoint_to_resume
from cosim.errors import CosimError, Interrupted, ScenarioError, SimulationError
from cosim.execution import Execution
from cosim.graph import CouplingGraph
from cosim.launcher import launched_by_mpi
from cosim.master import Plan
from cosim.output import COMPLETED, INTERRUPTED, RUNNING, kept_note, parts_folder
from cosim.partition import partition
from cosim.recorder import (
    Recorder,
    create_file,
    create_results_file,
    cut_to_common_length,
    error_text,
    is_recorded,
    merge_parts,
    open_for_writing,
    record_end,
    write_status,
    writing,
)
from cosim.system import System

TAG_REQUEST, TAG_MEMBER = 901, 902
POLL_EVERY = 32  # steps between two looks for work requests on rank 0
MEASURE_STEPS = 100  # default length of the pilot run that measures the instances' costs
WARM_UP = 5  # pilot steps not counted: first calls load code and fill caches


def world():
    if not launched_by_mpi():
        return None
    from mpi4py import MPI

    return MPI.COMM_WORLD


def size() -> int:
    comm = world()
    return comm.Get_size() if comm is not None else 1


def rank() -> int:
    comm = world()
    return comm.Get_rank() if comm is not None else 0


class Exchange:
    """Moves the signals that cross ranks after each stage of the plan."""

    def __init__(self, comm, graph: CouplingGraph, plan: Plan, system: System,
                 owner: dict[str, int]):
        from mpi4py import MPI

        self.comm = comm
        self.signals = system.signals
        self._waitall = MPI.Request.Waitall
        me = comm.Get_rank()
        stages = plan.stages
        members = [set(stage.instances) for stage in stages]
        crossing: dict[tuple[int, int, int], set[int]] = {}
        for c in graph.connections():
            src, dst = owner[c.source], owner[c.target]
            if src == dst:
                continue
            for stage, names in enumerate(members):  # every stage that reads c's output
                if c.source in names:
                    key = (stage, src, dst)
                    crossing.setdefault(key, set()).update(
                        system.layout.indices(c.source, c.output))  # every element of an array
        self.sends: list[list] = [[] for _ in stages]
        self.recvs: list[list] = [[] for _ in stages]
        for (stage, src, dst), indices in sorted(crossing.items()):
            index = np.array(sorted(indices), dtype=np.intp)
            if src == me:
                self.sends[stage].append((dst, index, np.empty(len(index))))
            elif dst == me:
                self.recvs[stage].append((src, index, np.empty(len(index))))
        steps = range(len(stages) - len(plan.step), len(stages))
        self.values_per_step = sum(len(i) for k in steps for _, i, _ in self.sends[k])
        self.seconds = 0.0  # spent here: sending, and waiting for the other ranks' values

    def __call__(self, stage: int) -> None:
        sends, recvs = self.sends[stage], self.recvs[stage]
        if not sends and not recvs:
            return
        started = time.perf_counter()
        comm, signals = self.comm, self.signals
        requests = [comm.Irecv(buffer, source=peer, tag=stage) for peer, _, buffer in recvs]
        for peer, index, buffer in sends:
            np.take(signals, index, out=buffer)
            requests.append(comm.Isend(buffer, dest=peer, tag=stage))
        self._waitall(requests)
        for _, index, buffer in recvs:
            signals[index] = buffer
        self.seconds += time.perf_counter() - started


def part_path(results: Path, index: int) -> Path:
    return parts_folder(results) / f"rank-{index:04d}.h5"


def run_scenario(path: Path, output: Path | None, *, plot: bool = True, journal=None,
                 resume: bool | Path = False):
    """``run_scenario`` under MPI: prepare (every rank), claim (rank 0), run (every rank),
    commit (rank 0). Every rank returns the same report.

    ``journal``: this rank's ``cosim.journal.Journal`` when a supervisor watches it; a failure
    then ends this rank's worker (its supervisor tells the others, see ``cosim.supervise``)
    instead of aborting every rank at once.
    """
    from cosim.output import claim, commit
    from cosim.run import Prepared, default_output, plotted
    from cosim.scenario import build, load_scenario

    comm = world()
    me, ranks = comm.Get_rank(), comm.Get_size()
    if journal is not None:  # the ranks' supervisors meet under this name (cosim.peers)
        journal.announce_run(comm.bcast(uuid.uuid4().hex if me == 0 else None, root=0))
    scenario = _collective(comm, lambda: load_scenario(path))
    if me == 0:
        _prebuild_library(scenario)
    comm.Barrier()
    graph, settings = _collective(comm, lambda: build(scenario))
    if journal is not None:
        journal.describe_instances(list(graph.instances))
        journal.limit_calls(settings.call_timeout)
    cohort = None
    if scenario.cohort is not None:
        from cosim.cohort import sample_cohort

        cohort = _collective(comm, lambda: sample_cohort(scenario.cohort, path.parent))
    _group_size(scenario, ranks, cohort is not None)  # a scenario error: before claiming
    prepared = Prepared(scenario, graph, settings, cohort)
    claimed = _collective(comm, lambda: claim(output or default_output(path), resume)
                          if me == 0 else None)
    results = comm.bcast(claimed.partial if me == 0 else None, root=0)
    if journal is not None and me == 0:
        journal.announce_results(results)  # rank 0's supervisor completes it after a failure
    report = run_into(comm, prepared, results, journal, bool(resume))
    if me == 0:
        try:
            report.results = commit(claimed, status=COMPLETED)
            report = plotted(report, scenario, report.results if plot else None)
        except BaseException as error:  # noqa: BLE001 - the other ranks wait for the report
            _abort(comm, error, results, supervised=journal is not None)
    return comm.bcast(report, root=0)


def run_into(comm, prepared, results: Path, journal=None, resume: bool = False):
    """Run a prepared scenario over the ranks of ``comm`` into ``results`` (rank 0 writes it,
    every rank its part file in ``<results>.parts/``); rank 0 returns the report, the others
    None. Knows nothing of locks or renames. A failure on any rank stops every rank.

    ``resume``: go on with the run in ``results``, at any rank count: a distributed run from
    its last checkpoint (``cosim.checkpoint``; the part files then hold the rows after it,
    appended to the main file's at the end), a cohort with its unfinished members.
    """
    from cosim.run import Report, judge, member_id, provenance, write_summary

    me, ranks = comm.Get_rank(), comm.Get_size()
    supervised = journal is not None
    scenario, graph, settings, cohort = (prepared.scenario, prepared.graph, prepared.settings,
                                         prepared.cohort)
    group_size = _group_size(scenario, ranks, cohort is not None)
    checkpoint = None
    if resume and cohort is None:
        checkpoint = _collective(comm, lambda: checkpoint_to_resume(results, scenario))
    todo = list(range(len(cohort))) if cohort is not None else []
    if me == 0:
        try:
            if resume:
                done = _consolidate(results, ranks, checkpoint, settings)
                todo = [i for i in todo if member_id(i) not in done]
            else:
                info = provenance(scenario, graph, settings)
                info["mpi_ranks"] = ranks
                info["group_size"] = group_size
                parts_folder(results).mkdir(parents=True)  # new: it belongs to this run
                with writing(create_results_file(results, info)) as main:
                    main.attrs["parts_folder"] = parts_folder(results).name
        except BaseException as error:  # noqa: BLE001 - the other ranks wait at the barrier
            _abort(comm, error, results, supervised)
    todo = comm.bcast(todo, root=0)
    comm.Barrier()
    started = time.perf_counter()
    timing, owner, measured = None, None, None
    try:
        if cohort is None:
            owner, measured = balanced_partition(comm, graph, settings, scenario.parallel)
            if me == 0 and not resume:
                _link_instances(results, graph, settings, owner)
            if journal is not None:
                journal.begin(part_path(results, me), "/")
            saving = None
            if scenario.checkpoint_every:
                saving = (checkpoint_path(results), scenario.checkpoint_every, scenario.sha256)
            timing = _run_distributed(comm, graph, settings, owner, part_path(results, me),
                                      journal, checkpoint, saving)
        else:
            _run_cohort(comm, group_size, scenario, graph, settings, cohort,
                        part_path(results, me), todo, journal)
    except BaseException as error:  # noqa: BLE001 - every failure must stop every rank
        _abort(comm, error, results, supervised)
    timings = comm.gather(timing, root=0)
    if me != 0:
        return None
    try:
        with writing(open_for_writing(results)) as main:
            merge_parts(main, [part_path(results, r) for r in range(ranks)])
            main.attrs["run_seconds"] = (time.perf_counter() - started  # merging included
                                         + float(main.attrs.get("run_seconds", 0.0)))
            if cohort is None:
                balance = write_balance(main, owner, measured, timings)
                outcomes = judge(main, scenario)
                write_status(main, None)
                report = Report(results, outcomes, balance=balance)
            else:
                members = [cohort.member(i) for i in range(len(cohort))]
                for i in range(len(cohort)):
                    group = main.get(f"members/{member_id(i)}")
                    if group is not None and group.attrs.get("status") == COMPLETED:
                        judge(group, scenario)
                verdict = write_summary(main, scenario, cohort.names, members)
                write_status(main, None)
                report = Report(results, members=len(members), cohort=verdict)
        shutil.rmtree(parts_folder(results), ignore_errors=True)
        checkpoint_path(results).unlink(missing_ok=True)  # completed: nothing to resume
    except BaseException as error:  # noqa: BLE001
        _abort(comm, error, results, supervised)
    return report


def _consolidate(results: Path, ranks: int, checkpoint, settings) -> set[str]:
    """Rank 0, resuming: the main file takes what the stopped run's part files hold (a run
    killed outright left them linked), cut to the checkpoint's rows; a new parts folder.
    Returns the cohort members it holds finished (the others are removed, to run again)."""
    from cosim.h5clear import clear_writer_flags
    from cosim.run import finished_members, reopen

    old = sorted(parts_folder(results).glob("rank-*.h5"))
    for path in old:
        clear_writer_flags(path)
    with writing(reopen(results)) as main:
        merge_parts(main, old)
        done = finished_members(main)
        if checkpoint is not None:
            _cut(main, checkpoint.rows)
        main.attrs["mpi_ranks"] = ranks
    shutil.rmtree(parts_folder(results), ignore_errors=True)
    parts_folder(results).mkdir(parents=True)
    return done


def _cut(group: h5py.Group, rows: int) -> None:
    """Every recorded dataset of a distributed run's main file cut to ``rows`` rows."""
    series = [group["time"]] + [dataset for instance in group.get("instances", {}).values()
                                for dataset in instance.values() if is_recorded(dataset)]
    for dataset in series:  # the time linked into each instance is /time: resized once more
        dataset.resize((rows, *dataset.shape[1:]))


def complete_after_failure(results: Path, ranks: int, status: str, error: str
                           ) -> float | None:
    """After a rank failed or the run was interrupted: the (partial) main file ``results``
    gets what every part file holds, cut to the communication points every rank reached, and
    says how the run ended; the parts folder goes (its data is in the main file).

    Runs in rank 0's supervisor (no MPI: the workers are gone). Returns the last row's time.
    """
    from cosim.h5clear import clear_writer_flags

    results = Path(results)
    if not results.exists():
        return None
    parts = [part_path(results, r) for r in range(ranks)]
    for path in [results, *parts]:
        if path.exists():
            clear_writer_flags(path)
    with writing(open_for_writing(results)) as main:
        merge_parts(main, [path for path in parts if path.exists()])
        last = cut_to_common_length(main)
        main.attrs["status"] = status
        main.attrs["error"] = error
        for member in main.get("members", {}).values():
            if member.attrs.get("status") == RUNNING:
                cut_to_common_length(member)
                member.attrs["status"] = status
                member.attrs["error"] = error
    shutil.rmtree(parts_folder(results), ignore_errors=True)
    return last


def balanced_partition(comm, graph: CouplingGraph, settings, parallel: Mapping
                       ) -> tuple[dict[str, int], dict[str, float] | None]:
    """``({instance: rank}, measured costs or None)``: the same on every rank.

    ``balance: declared`` (default): the ``cost:`` of each instance. ``balance: measured``: a
    pilot run of the first steps, distributed on the declared costs, times every instance's FMI
    calls over ``measure_steps`` steps after ``WARM_UP``; the partition is computed on those
    seconds, and the run proper starts again from the start time with fresh instances.
    """
    owner = partition(graph, comm.Get_size())
    if parallel.get("balance", "declared") != "measured" or comm.Get_size() == 1:
        return owner, None
    steps = min(settings.steps, WARM_UP + parallel.get("measure_steps", MEASURE_STEPS))
    pilot = dataclasses.replace(settings, stop=settings.start + steps * settings.step,
                                record={})
    execution = _distributed_execution(comm, graph, pilot, owner)
    execution.run([_WarmUp(execution.master, min(WARM_UP, steps - 1))])
    measured: dict[str, float] = {}
    for busy in comm.allgather(execution.master.busy):
        measured.update(busy)
    return partition(graph, comm.Get_size(), cost=measured), measured


class _WarmUp:
    """Pilot observer: forgets the seconds of the first steps."""

    def __init__(self, master, steps: int):
        self.master, self.steps = master, steps

    def started(self, run) -> None:
        self.run = run

    def stepped(self, time: float) -> None:
        if self.run.steps == self.steps:
            self.master.reset_busy()

    def finished(self, error) -> None:
        pass


def _distributed_execution(comm, graph: CouplingGraph, settings, owner: dict[str, int],
                           position: memoryview | None = None) -> Execution:
    me = comm.Get_rank()
    return Execution(graph, settings, local=[n for n in graph.instances if owner[n] == me],
                     time_every=1, position=position, exchange=exchanging(comm, graph, owner))


def exchanging(comm, graph: CouplingGraph, owner: dict[str, int]):
    """The exchange factory of an ``Execution`` whose instances ``owner`` spreads over the
    ranks of ``comm``."""
    return lambda plan, system: Exchange(comm, graph, plan, system, owner)


def _run_distributed(comm, graph: CouplingGraph, settings, owner: dict[str, int],
                     part: Path, journal=None, resume=None, saving=None) -> dict[str, object]:
    """Run this rank's instances into its part file; returns its timing (busy seconds per
    instance, exchange). ``resume``: a checkpoint to go on from (the part file then holds the
    rows after it); ``saving``: ``(path, every, scenario hash)`` of the checkpoints to write."""
    execution = _distributed_execution(comm, graph, settings, owner,
                                       None if journal is None else journal.position)
    execution.resume = resume
    file = create_file(part)
    recorder = Recorder(file, scales=False, journal=journal)
    observers = [recorder]
    if saving is not None:
        path, every, sha256 = saving
        observers.append(Checkpointer(path, every, sha256, recorder,
                                      gather=_gather_state(comm, execution, owner)))
    try:
        with writing(file):
            execution.run(observers)
    except BaseException as error:
        record_end(part, "/", error, execution)
        raise
    record_end(part, "/", None, execution)
    return {"busy": execution.master.busy, "exchange": execution.exchange.seconds}


def write_balance(main: h5py.File, owner: dict[str, int], measured: dict[str, float] | None,
                  timings: list[dict]) -> str:
    """Write the partition and the ranks' timing into the results file; one line for users."""
    busy = [sum(t["busy"].values()) for t in timings]
    waited = [t["exchange"] for t in timings]
    main.attrs["partition"] = json.dumps(owner)
    main.attrs["balance"] = "declared" if measured is None else "measured"
    if measured is not None:
        main.attrs["measured_cost_seconds"] = json.dumps(measured)
    main.attrs["instance_busy_seconds"] = json.dumps(
        {name: seconds for t in timings for name, seconds in t["busy"].items()})
    main.attrs["rank_busy_seconds"] = busy
    main.attrs["rank_exchange_seconds"] = waited
    ratio = sum(busy) / len(busy) / max(busy) if max(busy) > 0 else 1.0
    main.attrs["load_balance"] = ratio
    return (f"{len(busy)} ranks, load balance {ratio:.0%} (busy {min(busy):.2f}–"
            f"{max(busy):.2f} s, exchanging and waiting {min(waited):.2f}–{max(waited):.2f} s)")


def _gather_state(comm, execution: Execution, owner: dict[str, int]):
    """A checkpoint's ``gather`` under MPI: every rank's serialised states and its instances'
    slices of the signal array, on rank 0 (None on the others)."""
    layout, me = execution.layout, comm.Get_rank()

    def gather(states, signals):
        everyone = comm.gather((states, signals), root=0)
        if me != 0:
            return None
        merged, full = {}, np.array(signals)
        for rank, (their_states, their_signals) in enumerate(everyone):
            merged.update(their_states)
            for name, slot in layout.slices.items():
                if owner[name] == rank:
                    full[slot] = their_signals[slot]
        return merged, full

    return gather


def _run_cohort(comm, group_size: int, scenario, graph: CouplingGraph, settings, cohort,
                part: Path, todo: list[int], journal=None) -> None:
    """Run the members of ``todo`` this rank's group is handed into ``part``, one after the
    other (each member: groups created, rows in SWMR mode, status written after
    reopening). Supervised (``journal``) with one rank per member, a child process runs them
    (``cosim.runner``): a member whose FMU crashes or hangs fails alone."""
    from cosim.run import member_id, member_parameters

    me, ranks = comm.Get_rank(), comm.Get_size()
    group = comm.Split(me // group_size, me)
    leaders = (ranks + group_size - 1) // group_size
    queue = (WorkQueue(comm, len(todo), leaders, me // group_size)
             if group.Get_rank() == 0 else None)
    owner = partition(graph, group.Get_size())
    local = [n for n in graph.instances if owner[n] == group.Get_rank()]
    create_file(part).close()
    runner = None
    if journal is not None and group.Get_size() == 1:
        from cosim.run import Prepared
        from cosim.runner import MemberRunner

        runner = MemberRunner(Prepared(scenario, graph, settings, cohort), part,
                              queue.serve if queue and queue.coordinator else None,
                              journal.position)
    while True:
        position = queue.next() if queue else None
        position = group.bcast(position, root=0)
        if position < 0:
            break
        index = todo[position]
        if runner is not None:
            if runner.run(index) == INTERRUPTED:
                runner.close()
                raise Interrupted("stop requested")
            continue
        parameters = cohort.member(index)
        name = f"members/{member_id(index)}"
        error = None
        with open_for_writing(part) as file:
            node = file.create_group(name)
            node.attrs["member"] = index
            node.attrs["parameters"] = json.dumps(parameters)
            node.attrs["status"] = RUNNING
            execution = Execution(graph, settings, member_parameters(graph, parameters),
                                  local=local, exchange=(exchanging(group, graph, owner)
                                                         if group.Get_size() > 1 else None))
            observers = [Recorder(node, scales=False)]
            if queue and queue.coordinator:
                observers.append(queue)
            try:
                execution.run(observers)
            except CosimError as caught:
                if group.Get_size() > 1:
                    raise  # the other ranks of the group cannot go on alone
                error = caught  # one failing virtual patient is a finding
        record_end(part, name, error, execution)
    if runner is not None:
        runner.close()
    if queue:
        queue.finish()
    group.Free()


class WorkQueue:
    """Hands out member indices: dynamic balancing without an idle master.

    Leader i (the first rank of group i) starts with member i, without asking. After that,
    world rank 0 holds the counter and answers the other leaders between its own steps (it is
    an observer of its own executions and looks for requests every ``POLL_EVERY`` steps). So
    that no leader waits for that look, a leader asks for its next member as soon as it starts
    one: the answer is there when it finishes.
    """

    def __init__(self, comm, count: int, leaders: int, leader: int):
        self.comm = comm
        self.count = count
        self.coordinator = comm.Get_rank() == 0
        self.leaders = leaders
        self.next_index = leaders  # leaders 0 … leaders-1 start with their own number
        self.leaders_done = sum(1 for i in range(1, leaders) if i >= count)  # none for them
        self._first = leader if leader < count else -1
        self._asked: list | None = None  # the request for the next member, once sent

    def next(self) -> int:
        if self._first is not None:
            index, self._first = self._first, None
        elif self.coordinator:
            self.serve()
            index = self._take()
        else:
            from mpi4py import MPI

            _, index = MPI.Request.waitall(self._asked)
            self._asked = None
        if index >= 0 and not self.coordinator:
            self._asked = [self.comm.isend(None, dest=0, tag=TAG_REQUEST),
                           self.comm.irecv(source=0, tag=TAG_MEMBER)]
        return index

    def _take(self) -> int:
        if self.next_index >= self.count:
            return -1
        self.next_index += 1
        return self.next_index - 1

    def serve(self) -> None:
        """Rank 0: answer the requests waiting (never blocks)."""
        from mpi4py import MPI

        status = MPI.Status()
        while self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=TAG_REQUEST, status=status):
            self._answer(status.Get_source())

    def _answer(self, source: int) -> None:
        self.comm.recv(source=source, tag=TAG_REQUEST)
        index = self._take()
        if index < 0:
            self.leaders_done += 1
        self.comm.send(index, dest=source, tag=TAG_MEMBER)

    def finish(self) -> None:
        """Rank 0: answer every other leader until each has been told there is no more."""
        if not self.coordinator:
            return
        from mpi4py import MPI

        status = MPI.Status()
        while self.leaders_done < self.leaders - 1:
            self.comm.probe(source=MPI.ANY_SOURCE, tag=TAG_REQUEST, status=status)
            self._answer(status.Get_source())

    # observer hooks: rank 0 serves requests while it runs its own members
    def started(self, run) -> None:
        self.run = run

    def stepped(self, time: float) -> None:
        if self.run.steps % POLL_EVERY == 0:
            self.serve()

    def finished(self, error) -> None:
        pass


def _group_size(scenario, ranks: int, cohort: bool) -> int:
    requested = scenario.parallel.get("group_size")
    if requested is None:
        return 1 if cohort else ranks
    if ranks % requested:  # a whole number ≥ 1: checked with the scenario
        raise ScenarioError(scenario.source("parallel", "group_size").problem(
            f"group_size {requested!r} does not divide the {ranks} ranks",
            "choose a group size that divides the number of ranks"))
    return requested


def _collective(comm, action):
    """Run ``action`` on every rank; if it fails anywhere, raise on every rank (once printed)."""
    result, error = None, None
    try:
        result = action()
    except CosimError as caught:
        error = caught
    errors = comm.allgather(None if error is None else str(error))
    if any(errors):
        if error is None:
            error = _Quiet(next(e for e in errors if e))
        error.every_rank = True  # every rank raises it: the ranks may end MPI together
        raise error
    return result


class _Quiet(CosimError):
    """The same error as on another rank; only rank 0 prints errors raised before the run."""


def _prebuild_library(scenario) -> None:
    from cosim.build import library_fmu

    for path in scenario.fmus.values():
        if str(path).startswith("library:"):
            try:
                library_fmu(str(path).split(":", 1)[1])
            except CosimError:
                pass  # build() reports it on every rank


def _link_instances(results: Path, graph: CouplingGraph, settings, owner: dict[str, int]
                    ) -> None:
    """External links so the main file shows the parts' data while the run goes (a reader
    opening the main file in SWMR mode opens the parts in SWMR mode too)."""
    with writing(open_for_writing(results)) as main:
        folder = main.attrs["parts_folder"]  # relative to the main file
        main["time"] = h5py.ExternalLink(f"{folder}/{part_path(results, 0).name}", "/time")
        instances = main.create_group("instances")
        for name in graph.instances:
            if settings.record.get(name):
                part = f"{folder}/{part_path(results, owner[name]).name}"
                instances[name] = h5py.ExternalLink(part, f"/instances/{name}")


def _abort(comm, error: BaseException, results: Path, supervised: bool = False) -> None:
    """Stop every rank after ``error`` on this one: one message (with where the partial
    results are), then MPI_Abort.

    ``supervised``: the error goes up to this rank's worker instead; its supervisor tells the
    other ranks' supervisors, which stop their workers, and rank 0's completes the partial main
    file (``cosim.supervise``).
    """
    from cosim.cli import EXIT_ERROR, EXIT_INTERRUPTED

    message = str(error)
    if isinstance(error, KeyboardInterrupt):
        message = error_text(error)
    elif not isinstance(error, CosimError):
        message = f"{type(error).__name__}: {error}"
    if getattr(error, "rank", None) is None and not isinstance(error, _Quiet):
        message = f"rank {comm.Get_rank()}: {message}"
    if supervised:
        if isinstance(error, (CosimError, KeyboardInterrupt)):
            raise error
        raise SimulationError(message) from error
    print(f"error: {message}\n{kept_note(results)}", file=sys.stderr, flush=True)
    _wait_until_read(sys.stderr)
    comm.Abort(EXIT_INTERRUPTED if isinstance(error, KeyboardInterrupt) else EXIT_ERROR)


def _wait_until_read(stream, timeout: float = 2.0) -> None:
    """Wait until the launcher has read what this rank wrote to ``stream`` (a pipe), at most
    ``timeout`` seconds.

    MPI_Abort tears the job down at once, and mpiexec (hydra) sometimes handles the abort
    before the bytes still waiting in the rank's stderr pipe: the run then ended with exit code 1
    and no message at all (1 run in 25 of test_a_failing_rank_stops_every_rank_quickly). The
    number of unread bytes in a pipe is ``FIONREAD`` on either end (Linux); not a pipe (a
    terminal, a file): nothing to wait for.
    """
    import fcntl
    import stat
    import struct
    import termios

    try:
        fd = stream.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return
        deadline = time.monotonic() + timeout
        while struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0] > 0:
            if time.monotonic() > deadline:
                return
            time.sleep(0.001)
    except (AttributeError, OSError, ValueError):
        return


