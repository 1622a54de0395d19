"""The supervisors of one MPI run's ranks tell each other that a rank failed, through files.

Under ``mpiexec``, every rank's ``cosim run`` process is a supervisor (``cosim.running.supervise``)
and
its worker is the MPI process. A worker that crashed leaves MPI unusable for the others (they
wait for its values forever), and the supervisors are not MPI processes: so the news travels
through a folder beside the results file, ``<output>.ranks/``:

- ``FAILED``: created once, by the first supervisor whose worker failed (``rank k: message``);
- ``ended-NNNN``: written by each supervisor once its worker has ended and its part file is
  final.

Rank 0's supervisor removes the folder once the main file is complete and the message printed,
and exits. The other supervisors wait for that, and a little more, before they exit: once an
MPI process has died, mpiexec (hydra) kills every process still running as soon as one exits,
so rank 0's must be the first to exit.

Every supervisor looks for ``FAILED`` between two looks at its worker (one ``stat``) and, seeing
it, stops its worker. Rank 0's supervisor waits until every rank has ended (or a timeout), then
completes the main results file from the part files and marks it failed
(``cosim.results.output.complete_after_failure``). Standard library only.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

ENDED_TIMEOUT = 60.0  # seconds rank 0 waits for the other ranks to end after a failure
AFTER_RANK_0 = 0.05  # seconds the other ranks give rank 0's supervisor to exit first


class Peers:
    """This rank's view of the other ranks' supervisors."""

    def __init__(self, folder: Path, rank: int, size: int):
        self.folder = folder
        self.rank = rank
        self.size = size  # the folder is made by the first failure: a run that ends well has none

    def failure(self) -> str | None:
        """The first failure any rank reported, or None."""
        try:
            return (self.folder / "FAILED").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def report_failure(self, message: str) -> str:
        """Tell the other ranks; returns the first failure reported (this one, or earlier)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(self.folder / "FAILED", os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                                 0o644)
        except FileExistsError:
            return self.failure() or message
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(message)
        return message

    def ended(self) -> None:
        """This rank's worker has ended and its part file is final."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"ended-{self.rank:04d}").touch()

    def wait_until_all_ended(self, timeout: float = ENDED_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all((self.folder / f"ended-{r:04d}").exists() for r in range(self.size)):
                return True
            time.sleep(0.05)
        return False

    def wait_until_removed(self, timeout: float = ENDED_TIMEOUT * 2) -> None:
        """Until rank 0 has completed the main file, removed the folder and exited."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.folder.exists():
            time.sleep(0.05)
        time.sleep(AFTER_RANK_0)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()  # <output>.ranks, once no run uses it
        except OSError:
            pass
