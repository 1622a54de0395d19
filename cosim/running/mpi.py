"""MPI: running one scenario distributed over ranks, or a cohort of members over rank groups.

Where a value crosses ranks: ``Exchange.__call__`` — after each stage of the master's plan, the
signals produced by this rank's instances that another rank's instances read are sent to that
rank (a plan computed once from the graph, the partition and the signal layout; nothing else
travels, nothing goes through rank 0).

Balance: the partition (``cosim.coupling.partition``) weighs each instance by the ``cost:``
declared in
the scenario, or, with ``parallel: {balance: measured}``, by the seconds its FMI calls took in a
pilot run of the first steps (then discarded: the run itself starts again from the start time);
the pilot also times the exchanges, and a split that costs more in exchanges than it saves in
work keeps each coupled component whole on one rank (``keep_whole_if_cheaper``).
Every distributed run times its instances and its exchanges and writes the figures into the
results file, so a user sees how well the ranks were balanced.

Files: rank 0 claims the target (``cosim.results.output``: lock, partial file) and writes the
partial
main file; every rank writes what it computes to its own part file
``<stem>.data-<run>/rank-NNNN.h5`` (the folder belongs to this run's partial file), in SWMR mode
while rows are appended. The main file links to the parts while the run goes; when it ends,
rank 0 copies them in, removes the folder and commits the file over the target, so the user
gets one self-contained file.

Failure: under ``cosim run`` each rank's supervisor sees its worker fail and tells the others;
rank 0's supervisor completes the partial main file
(``cosim.results.output.complete_after_failure``)
and says where it is; the target is untouched. Without supervisors a failing rank prints one
message and calls ``MPI_Abort``, which stops every rank at once.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import h5py
import numpy as np

from cosim.coupling.graph import CouplingGraph
from cosim.coupling.partition import keep_whole_if_cheaper, partition
from cosim.errors import INTERRUPTED, CosimError, Interrupted, ScenarioError, SimulationError
from cosim.fmi.measured import MEASURED
from cosim.launcher import launched_by_mpi
from cosim.master.description import Parallel
from cosim.master.execution import Execution
from cosim.master.journal import Journal
from cosim.results.output import kept_note, part_path, parts_folder
from cosim.results.parts import merge_parts
from cosim.results.recorder import (
    create_file,
    create_results_file,
    error_text,
    is_recorded,
    open_for_writing,
    writing,
)
from cosim.running.checkpoint import checkpoint_path, merge_master_states
from cosim.running.exchange import exchanging
from cosim.running.strategies import (
    MemberEnd,
    Prepared,
    finished_members,
    member_id,
    provenance,
    reopen,
    run_member,
    run_one,
)
from cosim.running.work_queue import WorkQueue

if TYPE_CHECKING:
    from cosim.scenario.scenario import Scenario

T = TypeVar("T")

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


def distributed(journal: Journal | None = None) -> Distributed | None:
    """The strategy of a run under ``mpiexec`` with more than one rank (None otherwise)."""
    comm = world()
    if comm is None or comm.Get_size() == 1:
        return None
    return Distributed(comm, journal)


class Distributed:
    """The strategy of a run over the ranks of ``comm`` (``cosim.running.strategies``): a single
    run's
    instances partitioned over the ranks, or a cohort's members over groups of ranks; every
    rank writes its part file, rank 0 the main file, into which it merges the parts at the
    end. A failure on any rank stops every rank (``_abort``).

    ``journal``: this rank's ``cosim.master.journal.Journal`` when a supervisor watches it; a
    failure
    then ends this rank's worker (its supervisor tells the others, see ``cosim.running.supervise``)
    instead of aborting every rank at once.
    """

    def __init__(self, comm, journal: Journal | None = None):
        self.comm = comm
        self.rank, self.ranks = comm.Get_rank(), comm.Get_size()
        self.leader = self.rank == 0
        self.supervised = journal is not None
        if journal is not None:  # the ranks' supervisors meet under this name (cosim.running.peers)
            journal.announce_run(comm.bcast(uuid.uuid4().hex if self.leader else None, root=0))
        self.owner: dict[str, int] | None = None  # a single run's partition, once made
        self.measured: dict[str, float] | None = None  # the pilot's costs (balance: measured)
        self.results: Path | None = None
        self.ended: dict[int, MemberEnd] = {}  # rank 0: how each member ended, where it ran
        self.prepare_seconds = self.begin_seconds = 0.0

    def prepare(self, path: Path | Scenario, prepare: Callable[[Path | Scenario], Prepared]
                ) -> Prepared:
        """``prepare`` on rank 0 only (library FMUs built, every FMU read, validated and
        hashed once), its FMUs' bytes held (``FMU.hold``), all of it handed to every rank in
        one broadcast: one read of each file per job, not one per rank. The group size checked
        against the ranks."""
        started = time.perf_counter()
        prepared = self.agree(lambda: _held(prepare(path)) if self.leader else None)
        prepared = self.comm.bcast(prepared, root=0)
        self.prepare_seconds = time.perf_counter() - started
        _group_size(prepared.scenario, self.ranks, prepared.cohort is not None)
        return prepared

    def claim(self, claiming: Callable[[], T]) -> T | None:
        """Rank 0 claims the output (a refusal is one error on every rank)."""
        return self.agree(lambda: claiming() if self.leader else None)

    def agree(self, action: Callable[[], T]) -> T:
        """``action`` on every rank; if it fails anywhere, it raises on every rank."""
        return _collective(self.comm, action)

    def share(self, value: T) -> T:
        return self.comm.bcast(value, root=0)

    def begin(self, prepared: Prepared, results: Path, resume: bool, checkpoint) -> list[int]:
        """Rank 0 makes the main file and the parts folder (``resume``: the stopped run's
        parts merged in first); the cohort members still to run, on every rank."""
        started = time.perf_counter()
        self.results = results
        cohort = prepared.cohort
        todo = list(range(len(cohort))) if cohort is not None else []
        if self.leader:
            try:
                if resume:
                    done = _consolidate(results, self.ranks, checkpoint)
                    todo = [i for i in todo if member_id(i) not in done]
                else:
                    info = provenance(prepared)
                    info["mpi_ranks"] = self.ranks
                    info["group_size"] = _group_size(prepared.scenario, self.ranks,
                                                     cohort is not None)
                    parts_folder(results).mkdir(parents=True)  # new: it belongs to this run
                    with writing(create_results_file(results, info)) as main:
                        main.attrs["parts_folder"] = parts_folder(results).name
            except BaseException as error:  # noqa: BLE001 - the other ranks wait at the barrier
                self.fail(error, results)
        todo = self.comm.bcast(todo, root=0)
        self.comm.Barrier()
        self.begin_seconds = time.perf_counter() - started
        return todo

    def run(self, prepared: Prepared, results: Path, todo: list[int], journal: Journal | None,
            checkpoint) -> list[dict] | None:
        """This rank's share into its part file; rank 0 gets every rank's figures (and how
        each cohort member ended: ``self.ended``)."""
        comm, part = self.comm, part_path(results, self.rank)
        if prepared.cohort is None:
            graph, settings, scenario = prepared.graph, prepared.settings, prepared.scenario
            self.owner, self.measured = balanced_partition(comm, graph, settings,
                                                           scenario.parallel)
            if self.leader and checkpoint is None:
                _link_instances(results, graph, settings, self.owner)
            if journal is not None:
                journal.begin(part, "/")
            execution = _distributed_execution(comm, graph, settings, self.owner,
                                               None if journal is None else journal.position,
                                               resume=checkpoint)
            create_file(part).close()
            saving = None
            if scenario.checkpoint_every:
                saving = (checkpoint_path(results), scenario.checkpoint_every, scenario.sha256,
                          _gather_state(comm, execution, self.owner))
            timing = run_one(execution, part, journal=journal, checkpoints=saving)
            timing["exchange"] = execution.exchange.seconds
            ends: list[MemberEnd] = []
        else:
            timing, ends = _run_cohort(comm, _group_size(prepared.scenario, self.ranks, True),
                                       prepared, part, todo, journal)
        timing["rank"] = self.rank
        timing["prepare_seconds"] = self.prepare_seconds
        gathered = comm.gather((timing, ends), root=0)
        if not self.leader:
            return None
        self.ended = {end.index: end for _, rank_ends in gathered for end in rank_ends}
        return [timing for timing, _ in gathered]

    def end(self, main: h5py.File, timings: list[dict] | None) -> str | None:
        """Rank 0: the main file links to what the parts hold whole (cohort members, a single
        run's instances: nothing copied, ``merge_parts``); the ranks' figures; a single run's
        partition and timing (one line for users)."""
        started = time.perf_counter()
        parts = [part_path(self.results, r) for r in range(self.ranks)]
        if not merge_parts(main, parts, link=main.attrs["parts_folder"]):
            shutil.rmtree(parts_folder(self.results), ignore_errors=True)  # all copied
        write_rank_figures(main, timings, self.begin_seconds, time.perf_counter() - started)
        if self.owner is None:
            return None
        if "checkpoints" in timings[0]:
            main.attrs["checkpoints"] = timings[0]["checkpoints"]
            main.attrs["checkpoint_seconds"] = timings[0]["checkpoint_seconds"]
        return write_balance(main, self.owner, self.measured, timings)

    def fail(self, error: BaseException, results: Path) -> None:
        """Every rank stops (``_abort``)."""
        _abort(self.comm, error, results, self.supervised)

    stop = fail

    def keep(self, claimed, error: BaseException) -> None:
        """Rank 0's supervisor completes the partial main file
        (``cosim.results.output.complete_after_failure``), or MPI_Abort stopped every rank first."""
        return None


def _consolidate(results: Path, ranks: int, checkpoint) -> set[str]:
    """Rank 0, resuming: the main file takes what the stopped run's part files hold (a run
    killed outright left them linked), cut to the checkpoint's rows; a new parts folder.
    Returns the cohort members it holds finished (the others are removed, to run again)."""
    from cosim.results.h5clear import clear_writer_flags

    old = sorted(parts_folder(results).glob("rank-*.h5"))
    for path in old:
        clear_writer_flags(path)
    with writing(reopen(results)) as main:
        members = main.get("members", {})  # linked to the old parts: copied from them now
        for name in [name for name in members
                     if isinstance(members.get(name, getlink=True), h5py.ExternalLink)]:
            del members[name]
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


def balanced_partition(comm, graph: CouplingGraph, settings, parallel: Parallel
                       ) -> tuple[dict[str, int], dict[str, float] | None]:
    """``({instance: rank}, measured costs or None)``: the same on every rank.

    ``balance: declared`` (default): the ``cost:`` of each instance. ``balance: measured``: a
    pilot run of the first steps, distributed on the declared costs, times every instance's FMI
    calls over ``measure_steps`` steps after ``WARM_UP``; the partition is computed on those
    seconds, and the run proper starts again from the start time with fresh instances.
    """
    owner = partition(graph, comm.Get_size())
    if parallel.balance != "measured" or comm.Get_size() == 1:
        return owner, None
    steps = min(settings.steps, WARM_UP + parallel.measure_steps)
    pilot = dataclasses.replace(settings, stop=settings.start + steps * settings.step,
                                record={})
    execution = _distributed_execution(comm, graph, pilot, owner)
    execution.run([_WarmUp(execution, min(WARM_UP, steps - 1))])
    measured: dict[str, float] = {}
    for busy in comm.allgather(execution.master.busy):
        measured.update(busy)
    # the least a rank spent exchanging and waiting: the latency, without waiting for a
    # busier rank (what the balancing is for)
    exchanged = min(comm.allgather(execution.exchange.seconds))
    split = partition(graph, comm.Get_size(), cost=measured)
    return keep_whole_if_cheaper(graph, split, measured, comm.Get_size(), exchanged), measured


class _WarmUp:
    """Pilot observer: forgets the seconds (FMI calls, exchanges) of the first steps."""

    def __init__(self, execution: Execution, steps: int):
        self.execution, self.steps = execution, steps

    def started(self, run) -> None:
        self.run = run

    def stepped(self, time: float) -> None:
        if self.run.steps == self.steps:
            self.execution.master.reset_busy()
            self.execution.exchange.seconds = 0.0

    def finished(self, error) -> None:
        pass


def _distributed_execution(comm, graph: CouplingGraph, settings, owner: dict[str, int],
                           position: memoryview | None = None, resume=None) -> Execution:
    me = comm.Get_rank()
    return Execution(graph, settings, local=[n for n in graph.instances if owner[n] == me],
                     time_every=1, position=position, exchange=exchanging(comm, graph, owner),
                     resume=resume)


def write_balance(main: h5py.File, owner: dict[str, int], measured: dict[str, float] | None,
                  timings: list[dict]) -> str:
    """Write the partition and the ranks' timing into the results file; one line for users."""
    busy = [sum(t["instance_busy_seconds"].values()) for t in timings]
    waited = [t["exchange"] for t in timings]
    main.attrs["partition"] = json.dumps(owner)
    main.attrs["balance"] = "declared" if measured is None else "measured"
    if measured is not None:
        main.attrs["measured_cost_seconds"] = json.dumps(measured)
    main.attrs["instance_busy_seconds"] = json.dumps(
        {name: seconds for t in timings for name, seconds in t["instance_busy_seconds"].items()})
    main.attrs["rank_busy_seconds"] = busy
    main.attrs["rank_exchange_seconds"] = waited
    ratio = sum(busy) / len(busy) / max(busy) if max(busy) > 0 else 1.0
    main.attrs["load_balance"] = ratio
    return (f"{len(busy)} ranks, load balance {ratio:.0%} (busy {min(busy):.2f}–"
            f"{max(busy):.2f} s, exchanging and waiting {min(waited):.2f}–{max(waited):.2f} s)")


def write_rank_figures(main: h5py.File, timings: list[dict], begin: float, end: float
                       ) -> None:
    """What the run cost outside its members' or instances' own work, for
    ``benchmarks/scaling.py`` and users: per rank (``rank_*`` lists) preparing (rank 0 read
    the scenario and FMUs; the others waited for them), for a cohort the seconds in members,
    waiting for the next member and before the first; the main file made (``begin_seconds``)
    and assembled (``end_seconds``: parts linked, figures written)."""
    main.attrs["rank_prepare_seconds"] = [t["prepare_seconds"] for t in timings]
    for key in ("member_seconds", "dispatch_wait_seconds", "start_seconds",
                "runner_start_seconds", "runner_close_seconds"):
        if key in timings[0]:
            main.attrs[f"rank_{key}"] = [t[key] for t in timings]
    if "members" in timings[0]:
        main.attrs["rank_members"] = [t["members"] for t in timings]
    main.attrs["begin_seconds"] = begin
    main.attrs["end_seconds"] = end


def _gather_state(comm, execution: Execution, owner: dict[str, int]):
    """A checkpoint's ``gather`` under MPI: every rank's serialised states, its instances'
    slices of the signal array and its master state, on rank 0 (None on the others)."""
    layout, me = execution.layout, comm.Get_rank()

    def gather(states, signals, master):
        everyone = comm.gather((states, signals, master), root=0)
        if me != 0:
            return None
        merged, full = {}, np.array(signals)
        for rank, (their_states, their_signals, _) in enumerate(everyone):
            merged.update(their_states)
            for name, slot in layout.slices.items():
                if owner[name] == rank:
                    full[slot] = their_signals[slot]
        masters = [m for _, _, m in everyone if m is not None]
        return merged, full, merge_master_states(masters) if masters else None

    return gather


def _run_cohort(comm, group_size: int, prepared: Prepared, part: Path, todo: list[int],
                journal: Journal | None = None) -> tuple[dict[str, float], list[MemberEnd]]:
    """Run the members of ``todo`` this rank's group is handed into ``part``, one after the
    other (``cosim.running.strategies.run_member``), each judged here when it ran whole on
    this rank. Supervised (``journal``) with one rank per member, a child process runs them
    (``cosim.running.runner``): a member whose FMU crashes or hangs fails alone.

    Returns this rank's figures (seconds in members, waiting for the next member, and from
    the start to the first member's start) and how each member it led ended."""
    started = time.perf_counter()
    me, ranks = comm.Get_rank(), comm.Get_size()
    graph = prepared.graph
    group = comm.Split(me // group_size, me)
    leaders = (ranks + group_size - 1) // group_size
    queue = (WorkQueue(comm, len(todo), leaders, me // group_size)
             if group.Get_rank() == 0 else None)
    spread = group.Get_size() > 1  # a member's instances over the group's ranks
    owner = partition(graph, group.Get_size())
    local = [n for n in graph.instances if owner[n] == group.Get_rank()] if spread else None
    create_file(part).close()
    runner = None
    if journal is not None and not spread:
        from cosim.running.runner import MemberRunner

        runner = MemberRunner(prepared, part, journal.position)
    ends: list[MemberEnd] = []
    in_members, first = 0.0, None
    try:
        while True:
            position = queue.next() if queue else None
            position = group.bcast(position, root=0)
            if position < 0:
                break
            index = todo[position]
            begun = time.perf_counter()
            first = begun if first is None else first
            if runner is not None:
                end = runner.run(index)
                if end.status == INTERRUPTED:
                    raise Interrupted("stop requested")
            else:
                end = run_member(part, index, prepared, scales=not spread, local=local,
                                 exchange=exchanging(group, graph, owner) if spread else None)
            in_members += time.perf_counter() - begun
            if queue is not None and not spread:
                ends.append(end)
    finally:
        closing = time.perf_counter()
        if runner is not None:
            runner.close()
        closed = time.perf_counter() - closing
    if queue:
        queue.finish()
    group.Free()
    runner_start = runner.start_seconds if runner is not None else 0.0
    timing = {"member_seconds": in_members - runner_start, "members": len(ends),
              "dispatch_wait_seconds": queue.waited if queue else 0.0,
              "start_seconds": (first if first is not None else time.perf_counter()) - started,
              "runner_start_seconds": runner_start, "runner_close_seconds": closed}
    return timing, ends


def _group_size(scenario, ranks: int, cohort: bool) -> int:
    requested = scenario.parallel.group_size
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


def _held(prepared: Prepared) -> Prepared:
    """``prepared`` with the bytes of each of its FMU files held (read once, here); a measured
    source (``cosim.fmi.measured``: its table already read) has no file to hold."""
    for name in prepared.graph.instances:
        fmu = prepared.graph.fmu(name)
        if MEASURED not in fmu.interfaces:
            fmu.hold()
    return prepared


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
    file (``cosim.running.supervise``).
    """
    from cosim.errors import EXIT_ERROR, EXIT_INTERRUPTED

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


