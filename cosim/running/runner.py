"""A member runner: the child process that runs an MPI rank's cohort members, so that an FMU
crashing or hanging fails its member only.

Under ``mpiexec``, a cohort's members are handed out by MPI (``cosim.running.mpi.WorkQueue``).
If a member's FMU crashed the rank's MPI process, MPI would be lost for every rank; so, when
``cosim run`` supervises the ranks, each rank (a member being one rank's work) runs its
members in a child process of its own: ``python -m cosim.running.worker`` in *members* mode, which
reads member numbers on a pipe (the scenario comes prepared, pickled by the rank: built once),
runs each into the rank's part file (``cosim.running.pipeline.run_member``,
with a journal) and answers with its status. The rank waits for the answer, and meanwhile
hands out work to the other ranks (rank 0), watches the child's FMI calls
(``simulation.call_timeout``) and passes on a stop request. A child that dies or hangs is
treated like a dead worker in one process (``cosim.running.supervise``): its member's pending rows
are appended to the part file and the member is marked failed with one message; a new child
takes the next member.
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
from pathlib import Path

from cosim.launcher import MPI_ENV
from cosim.master.journal import STOP, JournalReader

SERVE_EVERY = 0.02  # seconds between two looks for other ranks' requests (rank 0)
WATCH_EVERY = 0.2  # seconds between two looks at the child's FMI calls (the watchdog)


class MemberRunner:
    """The child process running this rank's members (started at the first member)."""

    def __init__(self, prepared, part: Path, serve: Callable[[], None] | None,
                 position: memoryview):
        # a cosim.running.strategies.Prepared: handed to the child, not rebuilt
        self.prepared = prepared
        self.part = part
        self.serve = serve  # called while waiting (rank 0: answer the other ranks), or None
        self.position = position  # this rank's journal slots: its stop request
        self.folder = Path(tempfile.mkdtemp(prefix="cosim-members-"))
        self.child: subprocess.Popen | None = None
        self.replies = -1
        self._start()  # its start-up overlaps the rank's first exchanges

    def run(self, index: int) -> str:
        """Run member ``index``; its status (``completed``, ``failed``, ``interrupted``)."""
        if self.child is None:
            self._start()
        os.write(self.child.stdin.fileno(), f"{index}\n".encode())
        reader = JournalReader(self.folder / "journal")
        marker, since, hang, answer = None, time.monotonic(), None, b""
        wait = SERVE_EVERY if self.serve is not None else WATCH_EVERY
        watched = time.monotonic()
        while True:
            ready, _, _ = select.select([self.replies], [], [], wait)
            if ready:
                answer += os.read(self.replies, 4096)
                if answer.endswith(b"\n"):
                    return answer.decode().split()[-1]
                if not answer:  # the pipe closed: the child is gone
                    break
            if self.serve is not None:
                self.serve()
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
        read, write = os.pipe()
        with open(self.folder / "prepared.pickle", "wb") as stream:  # this process's own data
            pickle.dump(self.prepared, stream)
        (self.folder / "request.json").write_text(json.dumps(
            {"members": True, "prepared": str(self.folder / "prepared.pickle"),
             "output": str(self.part), "reply_fd": write, "target": str(self.part),
             "plot": False, "scenario": str(self.prepared.scenario.file)}), encoding="utf-8")
        (self.folder / "journal").unlink(missing_ok=True)
        temporary = self.folder / "tmp"
        temporary.mkdir(exist_ok=True)
        env = {key: value for key, value in os.environ.items() if key not in MPI_ENV
               and not key.startswith(("PMI_", "MPI_", "OMPI_", "PMIX_", "HYDRA_"))}
        env.update(TMPDIR=str(temporary), COSIM_SUPERVISED="1")
        from cosim.running.supervise import worker_limits

        self.child = subprocess.Popen([sys.executable, "-m", "cosim.running.worker",
                                       str(self.folder)],
                                      stdin=subprocess.PIPE, env=env, pass_fds=(write,),
                                      preexec_fn=worker_limits(None))
        os.close(write)
        self.replies = read

    def _died(self, index: int, hang: float | None) -> str:
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
        return status
