"""Supervision: ``cosim run`` runs the scenario in a child process and outlives whatever kills it.

An FMU's code runs inside the process that steps it: a segmentation fault, an ``abort()`` or an
``exit(3)`` in an FMU ends that process at once, and an FMU that never returns holds it forever.
So the ``cosim run`` process (the supervisor) loads no FMU: it starts a worker
(``cosim.running.worker``) and watches it. The worker keeps a journal (``cosim.master.journal``) in
a folder of
the supervisor's: where it is (phase, step, time, instance, FMI call) and the rows it has not
written to HDF5 yet. Whatever ends the worker, the supervisor then

- prints one message naming the cause, the instance, the FMI call and the time;
- appends the worker's pending rows to the results file and sets its status (``failed`` or
  ``interrupted``) and error (``cosim.results.recorder.recover``), so every computed row is kept;
- removes the worker's temporary files (FMU extraction folders included: the worker's TMPDIR is
  inside the supervisor's folder);
- for a cohort, marks the member that was running failed and starts a new worker that goes on
  with the members not run yet.

It also runs a watchdog: an FMI call that has not returned after the scenario's
``simulation.call_timeout`` seconds (default 60) gets the worker killed (SIGKILL) and is
reported as a hang. SIGINT and SIGTERM are passed on to the
worker, which stops like Ctrl-C; a worker that does not stop within ``GRACE`` seconds (stuck
inside an FMU) is killed and its results are kept the same way.

Standard library only until a repair is needed: the supervisor starts fast and stays small.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cosim.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_VERDICT_FAIL,
    CosimError,
    OutputError,
)
from cosim.launcher import rank_and_size
from cosim.master.journal import CALLS
from cosim.results.output import Claim, claim, finish, kept_note, release
from cosim.running.peers import Peers
from cosim.running.progress import Progress
from cosim.running.provenance import command_line

if TYPE_CHECKING:
    from cosim.scenario.scenario import Scenario

_SETUP = CALLS[0]

GRACE = 10.0  # seconds a worker has to stop after SIGINT/SIGTERM before it is killed
POLL = 0.1  # seconds between two looks at the worker
PEER_GRACE = 2.0  # seconds a worker has to stop after another MPI rank failed


@dataclass
class Options:
    """How ``cosim run`` supervises its worker."""

    memory_limit: float | None = None  # bytes of address space for the worker (RLIMIT_AS)
    grace: float = GRACE  # seconds to stop after SIGINT/SIGTERM before the worker is killed
    quiet: bool = False  # no progress line, no summary (errors only; the exit code tells)


@dataclass(frozen=True)
class Supervised:
    """How a supervised run ended: its exit code (``cosim.errors.EXIT_*``), the report to show
    (``text``: the results, the verdict) and the one message about an error or an
    interruption (``message``, as ``cosim run`` prints it on stderr)."""

    exit: int
    text: str = ""
    message: str = ""


def run_supervised(scenario: Path | Scenario, output: Path, *, plot: bool = True,
                   options: Options | None = None, resume: bool | Path = False) -> Supervised:
    """Run ``scenario`` (a file, or a ``Scenario`` made in Python: handed to the worker as it
    is) in a supervised worker; how it ended.

    In one process the supervisor claims ``output`` (``cosim.results.output``): the worker writes
    the
    partial file, and the supervisor renames it over ``output`` if the run completed, or leaves
    it (repaired) where it is. Under an MPI launcher every rank's process is a supervisor and
    its worker the MPI process (rank 0's worker claims and commits); the supervisors tell each
    other of a failure through files (``cosim.running.peers``). ``resume``: go on with an earlier
    run's unfinished file (``cosim.results.output.claim``), from its last checkpoint.
    """
    options = options or Options()
    rank, size = rank_and_size()
    progress = Progress(enabled=not options.quiet and rank == 0)
    claimed = None
    if size == 1:
        try:
            claimed = claim(output, resume)
        except CosimError as error:
            return Supervised(EXIT_ERROR, message=f"error: {error}")
    folder = Path(tempfile.mkdtemp(prefix="cosim-run-"))
    stop = StopRequest(options.grace)
    previous = {sig: signal.signal(sig, stop.request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        request = {"scenario": str(scenario), "target": str(output), "plot": plot,
                   "output": str(claimed.partial if claimed else output),
                   "resume": str(resume) if isinstance(resume, Path) else bool(resume)}
        if not isinstance(scenario, (str, Path)):  # built in Python: no file to read again
            with open(folder / "scenario.pickle", "wb") as stream:
                pickle.dump(scenario, stream)
            request.update(scenario=str(scenario.file or scenario.name),
                           description=str(folder / "scenario.pickle"))
        while True:
            ending = _run_worker(folder, request, options, stop,
                                 _Ranks(Path(f"{output}.ranks"), rank, size) if size > 1 else None,
                                 progress)
            progress.close()
            if size > 1:
                return _end_of_rank(ending, folder, stop)
            if ending.outcome is not None:
                return _report(ending, folder, stop, claimed)
            message, status = describe_ending(ending, stop)
            target, kept = _recover_in_child(folder, status, message)
            if (status == "failed" and target is not None and target.startswith("/members/")
                    and not stop.signal):
                print(f"member {target.rsplit('/', 1)[1]} failed: {message}; the cohort goes on",
                      file=sys.stderr, flush=True)
                request = dict(request, resume=True, output=str(_output_of(folder)))
                continue
            finish(claimed, completed=False)
            return _ended(status, f"{message}{kept}")
    finally:
        if claimed is not None:
            release(claimed)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class _Ranks:
    """Where this MPI run's supervisors meet, once the worker knows the run's identifier."""

    folder: Path  # <output>.ranks
    rank: int
    size: int
    peers: Peers | None = None

    def meet(self, run_id: str | None) -> Peers | None:
        if self.peers is None and run_id is not None:
            self.peers = Peers(self.folder / run_id, self.rank, self.size)
        return self.peers


def _end_of_rank(ending: Ending, folder: Path, stop: StopRequest) -> Supervised:
    """How this rank's worker ended, under MPI: a failure is told to the other ranks; rank 0
    completes the (partial) main file its worker announced and says the one message."""
    from cosim.master.journal import JournalReader

    ranks, outcome = ending.ranks, ending.outcome
    peers = ranks.peers
    if outcome is not None and outcome["exit"] not in (EXIT_ERROR, EXIT_INTERRUPTED):
        return (_report(ending, folder, stop, None) if ranks.rank == 0
                else Supervised(int(outcome["exit"])))
    if outcome is not None:  # the worker stopped on an error and marked its part itself
        interrupted = outcome.get("interrupted")
        message = (f"interrupted ({stop.signal or interrupted})" if interrupted
                   else outcome["error"])
        status = "interrupted" if interrupted else "failed"
    else:
        message, status = describe_ending(ending, stop)
        _recover_in_child(folder, status, message)  # this rank's part file
    if peers is None:  # failed before the ranks met: every rank fails the same way
        return _ended(status, message if ranks.rank == 0 else "")
    if not stop.peer:
        peers.report_failure(message if message.startswith("rank ")
                             else f"rank {ranks.rank}: {message}")
    peers.ended()
    if ranks.rank != 0:
        peers.wait_until_removed()
        return Supervised(EXIT_INTERRUPTED if stop.signal else EXIT_ERROR)
    first = peers.failure() or message
    status = "interrupted" if stop.signal else "failed"
    complete = "" if peers.wait_until_all_ended() else " (some ranks never ended)"
    results = JournalReader(folder / "journal").results()
    kept = ""
    if results is not None:  # the partial main file (the target is never touched)
        done = in_child("complete_after_failure", str(results), ranks.size, status, first)
        if isinstance(done, str):
            kept = f"; the results file could not be completed ({done})"
        else:
            kept = ("; no rows" if done is None else f"; rows up to t = {done:.9g} s") + \
                f" kept in {results}{complete}"
    peers.remove()  # the other ranks' supervisors exit now
    return _ended(status, f"{first}{kept}")


def _ended(status: str, message: str) -> Supervised:
    """A run that did not complete: interrupted (exit 130, the message says so) or failed
    (exit 1, an error)."""
    if status == "interrupted":
        return Supervised(EXIT_INTERRUPTED, message=message)
    return Supervised(EXIT_ERROR, message=f"error: {message}" if message else "")


class StopRequest:
    """SIGINT/SIGTERM received by the supervisor: passed on to the worker once, then a deadline."""

    def __init__(self, grace: float):
        self.grace = grace
        self.signal: str | None = None
        self.peer = False  # another rank failed: this rank's worker is stopped
        self.deadline = float("inf")
        self.worker: subprocess.Popen | None = None

    def peer_failed(self) -> None:
        """Another MPI rank failed: this worker waits for its values forever; stop it."""
        if self.peer or self.signal:
            return
        self.peer = True
        self.deadline = time.monotonic() + min(self.grace, PEER_GRACE)
        if self.worker is not None and self.worker.poll() is None:
            self.worker.send_signal(signal.SIGTERM)

    def request(self, signum: int, frame) -> None:
        if self.signal is None:
            self.signal = signal.Signals(signum).name
            self.deadline = time.monotonic() + self.grace
        if self.worker is not None and self.worker.poll() is None:
            # a terminal's Ctrl-C reaches the worker too (same process group); SIGTERM is
            # harmless there: the worker stops once, whatever asks it first
            self.worker.send_signal(signal.SIGTERM)


@dataclass
class Ending:
    returncode: int
    outcome: dict | None  # what the worker said, if it ended on its own
    position: object  # cosim.master.journal.Position or None
    hang: float | None  # seconds a call had not returned when the watchdog killed it
    peak_memory: int  # bytes, the largest resident size seen
    ranks: _Ranks | None = None  # under MPI


def _run_worker(folder: Path, request: dict, options: Options, stop: StopRequest,
                ranks: _Ranks | None = None, progress: Progress | None = None) -> Ending:
    from cosim.master.journal import JournalReader

    (folder / "request.json").write_text(json.dumps(request), encoding="utf-8")
    for stale in ("outcome.json", "journal"):
        (folder / stale).unlink(missing_ok=True)
    temporary = folder / "tmp"
    temporary.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(temporary), COSIM_SUPERVISED="1",
               COSIM_COMMAND_LINE=command_line())  # the provenance names the user's command
    worker = subprocess.Popen([sys.executable, "-m", "cosim.running.worker", str(folder)], env=env,
                              close_fds=False,  # an MPI launcher's connection stays open
                              preexec_fn=worker_limits(options.memory_limit))
    stop.worker = worker
    if stop.signal:  # a signal came before the worker existed
        worker.send_signal(signal.SIGTERM)
    reader = JournalReader(folder / "journal")
    marker, since, hang, peak = None, time.monotonic(), None, 0
    while worker.poll() is None:
        try:
            worker.wait(POLL)
        except subprocess.TimeoutExpired:
            pass
        now = time.monotonic()
        peak = max(peak, _resident_bytes(worker.pid))
        position = reader.position()
        if progress is not None:
            progress.update(position, now)
        if position is not None and position.marker != marker:
            marker, since = position.marker, now
        elif (position is not None and position.call is not None and position.marker[1] > 0
              and now - since > position.call_timeout > 0 and worker.poll() is None):
            hang = now - since
            worker.kill()
        if ranks is not None:
            peers = ranks.meet(reader.run_id())
            if peers is not None and not stop.peer and peers.failure() is not None:
                stop.peer_failed()
        if now > stop.deadline and worker.poll() is None:
            _end(worker, stop.peer)
    stop.worker = None
    outcome = None
    position = reader.position()
    if position is not None and position.finished:
        outcome = json.loads((folder / "outcome.json").read_text(encoding="utf-8"))
    if ranks is not None:
        ranks.meet(reader.run_id())
    return Ending(worker.returncode, outcome, position, hang, peak, ranks)


def _end(worker: subprocess.Popen, under_mpi: bool) -> None:
    """Kill a worker that did not stop when asked. An MPI worker first gets SIGUSR1, on which
    it exits at once (``cosim.running.worker``): mpiexec takes an MPI process killed by a signal
    for a
    crash of the application and kills and reports every rank."""
    if under_mpi:
        worker.send_signal(signal.SIGUSR1)
        try:
            worker.wait(1.0)
            return
        except subprocess.TimeoutExpired:
            pass
    worker.kill()


def worker_limits(memory_limit: float | None):
    """What the worker process sets up before it starts: die with the supervisor; memory."""
    def setup() -> None:
        try:
            import ctypes

            ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG (Linux)
        except (OSError, AttributeError):
            pass
        if memory_limit:
            limit = int(memory_limit)
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return setup


def _resident_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as stream:
            return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def describe_ending(ending: Ending, stop: StopRequest) -> tuple[str, str]:
    """The one message for a worker that did not end on its own, and the status it gives."""
    position = ending.position
    where = _where(position)
    in_fmu = position is not None and position.instance is not None
    if stop.peer:
        return "stopped: another rank failed", "failed"
    if ending.hang is not None:
        return (f"{where}: the FMU did not return within {ending.hang:.0f} s (the watchdog "
                "stopped it; simulation.call_timeout sets the limit)"), "failed"
    if stop.signal:
        if in_fmu:
            return (f"interrupted ({stop.signal}); {where} did not return within "
                    f"{stop.grace:.0f} s, so the run was killed"), "interrupted"
        return f"interrupted ({stop.signal}) {where}".rstrip(), "interrupted"
    code = ending.returncode
    if code < 0:
        name = signal.Signals(-code).name
        cause = _SIGNALS.get(name, f"was killed by {name}")
        if name == "SIGKILL":
            cause += (f" — perhaps out of memory (the system's OOM killer); the run used "
                      f"{ending.peak_memory / 1e9:.1f} GB at the last look")
    else:
        cause = f"exited with code {code} without finishing (exit() called in an FMU?)"
    return (f"{where}: the FMU {cause}" if in_fmu else f"the run {cause} {where}".rstrip(),
            "failed")


_SIGNALS = {"SIGSEGV": "crashed (segmentation fault, SIGSEGV)", "SIGABRT": "aborted (SIGABRT)",
            "SIGBUS": "crashed (bus error, SIGBUS)", "SIGFPE": "crashed (arithmetic error, "
            "SIGFPE)", "SIGILL": "crashed (illegal instruction, SIGILL)"}


def _where(position) -> str:
    """``instance 'lead' in fmi2DoStep at t = 2.5 s``, or the phase the run was in."""
    if position is None:
        return "while starting"
    timed = position.phase in ("stepping", "finishing") or (
        position.phase == "initialising" and position.call != _SETUP)
    at = f" at t = {position.time:.9g} s" if timed else ""
    if position.instance is not None:
        return f"instance '{position.instance}' in {position.call}{at}"
    return f"while {position.phase}{at}"


def _recover_in_child(folder: Path, status: str, message: str) -> tuple[str | None, str]:
    """``_recover`` in a process of its own (see ``in_child``)."""
    done = in_child("recover", str(folder), status, message)
    return (None, f"; the results file could not be repaired ({done})") if isinstance(
        done, str) else tuple(done)


def in_child(function: str, *arguments):
    """Run an HDF5 repair (``CHILD_TASKS``) in a process of its own: HDF5 failing on a damaged
    file or a full disk can take a process down, and the supervisor must still say what
    happened. Returns the function's result, or the reason it failed (a string)."""
    done = subprocess.run([sys.executable, "-m", "cosim.running.supervise",
                           json.dumps([function, *arguments])],
                          capture_output=True, text=True, check=False)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])["result"]
    except (ValueError, IndexError, KeyError, TypeError):
        return (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]


def _recover(folder: Path, status: str, message: str) -> tuple[str | None, str]:
    """Keep what the dead worker computed; returns (the group it was writing, a note)."""
    from cosim.master.journal import JournalReader

    reader = JournalReader(folder / "journal")
    task = reader.task()
    if task is None or not task[0].exists():
        return None, ""
    from cosim.results.recorder import recover

    file, group = task
    pending = reader.pending_rows()
    if pending is not None and not pending.datasets[0].startswith(group.rstrip("/") + "/"):
        pending = None  # rows of an earlier member, all written
    in_cohort = group.startswith("/members/")
    try:
        last = recover(file, pending, status, message, (group,))
        if not in_cohort or status != "failed":  # a cohort goes on after a failed member
            recover(file, None, status, message, ("/",))
    except Exception as error:  # noqa: BLE001 - the worker died mid-write: say so, go on
        return group, f"; the results file {file} could not be repaired ({error})"
    (folder / "output").write_text(str(file), encoding="utf-8")
    kept = "no rows" if last is None else f"rows up to t = {last:.9g} s"
    return group, f"; {kept} kept in {file}"


def _output_of(folder: Path) -> Path:
    return Path((folder / "output").read_text(encoding="utf-8"))


def _report(ending: Ending, folder: Path, stop: StopRequest, claimed: Claim | None
            ) -> Supervised:
    """Commit what a worker that ended on its own wrote (in one process: renamed over the
    target if the run completed, else left as the partial file); what it said."""
    from cosim.master.journal import JournalReader

    outcome = ending.outcome
    completed = outcome["exit"] in (EXIT_OK, EXIT_VERDICT_FAIL)
    kept = None
    if claimed is not None:
        try:
            kept = finish(claimed, completed)
        except OutputError as error:
            return Supervised(EXIT_ERROR, message=f"error: {error}")
    message = ""
    if outcome.get("error"):
        note = f"\n{kept_note(kept)}" if kept is not None else ""
        message = f"error: {outcome['error']}{note}"
    if outcome.get("interrupted"):
        where = ""
        if ending.position is not None and ending.position.phase == "stepping":
            where = f" at t = {ending.position.time:.9g} s"
        task = JournalReader(folder / "journal").task()
        kept_in = f" in {task[0]}" if task else ""
        message = (f"interrupted ({stop.signal or outcome['interrupted']}){where}; results "
                   f"written so far are kept{kept_in}")
    return Supervised(int(outcome["exit"]), outcome.get("text", ""), message)


def _complete_after_failure(results: str, ranks: int, status: str, error: str
                            ) -> float | None:
    from cosim.results.output import complete_after_failure

    return complete_after_failure(Path(results), ranks, status, error)


def _recover_for_child(folder: str, status: str, message: str) -> list:
    return list(_recover(Path(folder), status, message))


CHILD_TASKS = {"recover": _recover_for_child, "complete_after_failure": _complete_after_failure}

if __name__ == "__main__":  # in_child's process
    name, *arguments = json.loads(sys.argv[1])
    print(json.dumps({"result": CHILD_TASKS[name](*arguments)}))
