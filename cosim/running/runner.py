"""A member runner: the child process that runs an MPI rank's cohort members, so that an FMU
crashing or hanging fails its member only.

Under ``mpiexec``, a cohort's members are handed out by MPI (``running.work_queue.WorkQueue``).
If a member's FMU crashed the rank's MPI process, MPI would be lost for every rank; so, when
``cosim run`` supervises the ranks, each rank (a member being one rank's work) runs its
members in a child process of its own: ``python -m cosim.running.worker`` in *members* mode,
which reads member numbers on a pipe (the scenario comes prepared, pickled by the rank: built
once), runs each into the rank's part file (``cosim.running.strategies.run_member``, with a
journal), judges it there and answers with how it ended (status, error, the criteria's
outcomes: one JSON line). The rank waits for the answer, and meanwhile watches the child's FMI
calls (``simulation.call_timeout``) and passes on a stop request (rank 0's dispatcher thread
hands out work to the other ranks meanwhile: ``cosim.running.work_queue.WorkQueue``). A child that
dies or hangs is treated like a dead worker in one process (``cosim.running.supervise``): its
member's pending rows are appended to the part file and the member is marked failed with one
message; a new child takes the next member.
"""

from __future__ import annotations

import json
import os
import pickle
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from cosim.launcher import MPI_ENV
from cosim.master.journal import STOP, JournalReader
from cosim.running.strategies import MemberEnd
from cosim.scenario.criteria import Outcome

READY = b"ready"  # the child's first line: it has read the prepared scenario
MPI_PREFIXES = ("PMI_", "MPI_", "OMPI_", "PMIX_", "HYDRA_")  # what a child must not inherit
_forked: list[tuple[int, int, int, int]] = []  # ``prefork``: (pid, its stdin, replies, reply fd)
WATCH_EVERY = 0.2  # seconds between two looks at the child's FMI calls (the watchdog)


class MemberRunner:
    """The child process running this rank's members (started at the first member)."""

    def __init__(self, prepared, part: Path, position: memoryview):
        self.prepared = prepared  # a strategies.Prepared: handed to the child, not rebuilt
        self.part = part
        self.position = position  # this rank's journal slots: its stop request
        self.folder = Path(tempfile.mkdtemp(prefix="cosim-members-"))
        self.child: subprocess.Popen | None = None
        self.replies = -1
        self.reply = b""  # what the child wrote that is not a whole line yet
        self.starting = 0.0  # when the child was started
        self.start_seconds = 0.0  # from a child's start until it was ready (summed)
        self._start()  # its start-up overlaps the rank's first exchanges

    def run(self, index: int) -> MemberEnd:
        """Run member ``index``; how it ended (status ``completed``, ``failed`` or
        ``interrupted``)."""
        if self.child is None:
            self._start()
        os.write(self.child.stdin.fileno(), f"{index}\n".encode())
        reader = JournalReader(self.folder / "journal")
        marker, since, hang = None, time.monotonic(), None
        watched = time.monotonic()
        while True:
            ready, _, _ = select.select([self.replies], [], [], WATCH_EVERY)
            if ready:
                read = os.read(self.replies, 1 << 16)
                self.reply += read
                while b"\n" in self.reply:
                    line, self.reply = self.reply.split(b"\n", 1)
                    if line == READY:
                        self.start_seconds += time.perf_counter() - self.starting
                    else:
                        return ended(line)
                if not read:  # the pipe closed: the child is gone
                    break
            if self.position[STOP] and self.child.poll() is None:
                self.child.send_signal(signal.SIGTERM)  # the member stops at its next point
            if self.child.poll() is not None:
                break
            now = time.monotonic()
            if now - watched < WATCH_EVERY:
                continue
            watched, position = now, reader.position()
            if position is not None and position.marker != marker:
                marker, since = position.marker, now
            elif (position is not None and position.call is not None and position.marker[1] > 0
                  and now - since > position.call_timeout > 0):
                hang = now - since
                self.child.kill()
        return self._died(index, hang)

    def close(self) -> None:
        """No more members: the child ends; its folder goes."""
        if self.child is not None:
            self.child.stdin.close()
            try:
                self.child.wait(60)
            except subprocess.TimeoutExpired:
                self.child.kill()
            os.close(self.replies)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _start(self) -> None:
        """The child: the one forked ahead (``prefork``), else a new interpreter."""
        self.starting, self.reply = time.perf_counter(), b""
        forked = _forked.pop() if _forked else None
        if forked is None:
            read, write = os.pipe()
        else:
            pid, members, read, write = forked
        with open(self.folder / "prepared.pickle", "wb") as stream:  # this process's own data
            pickle.dump(self.prepared, stream)
        (self.folder / "request.json").write_text(json.dumps(
            {"members": True, "prepared": str(self.folder / "prepared.pickle"),
             "output": str(self.part), "reply_fd": write, "target": str(self.part),
             "plot": False, "scenario": str(self.prepared.scenario.file)}), encoding="utf-8")
        (self.folder / "journal").unlink(missing_ok=True)
        (self.folder / "tmp").mkdir(exist_ok=True)
        self.replies = read
        if forked is not None:
            self.child = _Forked(pid, members)
            os.write(members, f"{self.folder}\n".encode())
            return
        env = {key: value for key, value in os.environ.items() if key not in MPI_ENV
               and not key.startswith(MPI_PREFIXES)}
        env.update(TMPDIR=str(self.folder / "tmp"), COSIM_SUPERVISED="1")
        from cosim.running.supervise import worker_limits

        self.child = subprocess.Popen([sys.executable, "-m", "cosim.running.worker",
                                       str(self.folder)],
                                      stdin=subprocess.PIPE, env=env, pass_fds=(write,),
                                      preexec_fn=worker_limits(None))
        os.close(write)

    def _died(self, index: int, hang: float | None) -> MemberEnd:
        """The child ended without answering: keep what it computed, say why, go on."""
        from cosim.running.supervise import Ending, StopRequest, describe_ending, in_child

        self.child.wait()
        stop = StopRequest(0.0)
        if self.position[STOP]:
            stop.signal = "SIGTERM"
        reader = JournalReader(self.folder / "journal")
        ending = Ending(self.child.returncode, None, reader.position(), hang, 0)
        message, status = describe_ending(ending, stop)
        in_child("recover", str(self.folder), status, message)
        rank = os.environ.get("PMI_RANK", "")
        print(f"{'rank ' + rank + ': ' if rank else ''}member {index:06d} {status}: "
              f"{message}" + ("; the cohort goes on" if status == "failed" else ""),
              file=sys.stderr, flush=True)
        os.close(self.replies)
        self.child = None
        return MemberEnd(index, status, message)


def prefork(serve: Callable[[str], int]) -> None:
    """Fork this process's first member runner now, before MPI starts here (a fork after
    ``MPI_Init`` is not safe): the child has every module this process loaded and waits for
    its folder on its stdin, then runs ``serve(folder)`` (``cosim.running.worker.main``); the
    rank that runs cohort members hands it its first (``MemberRunner``) instead of starting a
    new interpreter (0.5–1 s, more on a busy node). Unused (a run that is not a cohort), it
    ends when this process does."""
    members_read, members_write = os.pipe()
    replies_read, replies_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(members_write)
            os.close(replies_read)
            os.dup2(members_read, 0)
            os.close(members_read)
            code = _serve_when_asked(serve)
        finally:
            os._exit(code)
    os.close(members_read)
    os.close(replies_write)  # the child's end; its number is the one the child holds
    _forked.append((pid, members_write, replies_read, replies_write))


def _serve_when_asked(serve: Callable[[str], int]) -> int:
    """The forked child: wait for the folder of its request, then be the member runner
    ``python -m cosim.running.worker <folder>`` would be (without MPI's environment)."""
    line = sys.stdin.readline()
    if not line:
        return 0  # this process's parent ran no cohort
    folder = Path(line.strip())
    for key in [key for key in os.environ if key in MPI_ENV or key.startswith(MPI_PREFIXES)]:
        del os.environ[key]
    os.environ.update(TMPDIR=str(folder / "tmp"), COSIM_SUPERVISED="1")
    tempfile.tempdir = None  # TMPDIR read again
    from cosim.running.supervise import worker_limits

    worker_limits(None)()
    return serve(str(folder))


class _Forked:
    """A forked child as ``MemberRunner`` uses a ``subprocess.Popen``."""

    def __init__(self, pid: int, stdin: int):
        self.pid = pid
        self.stdin = os.fdopen(stdin, "wb", buffering=0)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"member runner {self.pid}", timeout)
            time.sleep(0.005)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def answer(end: MemberEnd) -> bytes:
    """How a member ended, as the child writes it on its pipe: one JSON line."""
    return (json.dumps({**asdict(end), "outcomes": [asdict(o) for o in end.outcomes]})
            + "\n").encode()


def ended(reply: bytes) -> MemberEnd:
    """``answer`` read back."""
    fields = json.loads(reply)
    return MemberEnd(fields["index"], fields["status"], fields["error"],
                     [Outcome(**outcome) for outcome in fields["outcomes"]])
