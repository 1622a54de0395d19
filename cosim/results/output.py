"""Where a run's results go, and what becomes of them when it ends: claim → run → commit.

A run never writes the file the user named (the *target*) directly:

1. ``claim(target)`` checks the target (a folder that can be written; no file there, or a
   cosim results file), takes an advisory lock beside it (``<target>.lock``, ``fcntl.flock``:
   it dies with its process) and names a *partial* file unique to this run, beside the target:
   ``<stem>.partial-<UTC yyyymmdd-HHMMSS>-<pid><suffix>``.
2. The run writes the partial file (``cosim.running.pipeline.run_into``; under MPI its part files
go into
   ``<stem>.data-<run>/``). That step knows nothing of locks or renames.
3. ``commit(claim, status=…, error=…)``: a partial file whose status is ``completed`` replaces
   the target (``os.replace``: atomic; a reader holding the old file keeps reading it). Any other
   file stays where it is, under its partial name, and is returned so the user can be told
   where; if its writer could not finish it (status still ``running``: a crash, a kill),
   ``settle`` first gives it ``status`` and ``error``. The lock is released in every case.

So the target only ever holds a completed run, a failed, killed or refused run leaves it as it
was, and a later run never deletes an earlier run's partial file. ``claim`` and ``commit`` may
run in one process and the run itself in another: ``cosim run`` (``cosim.running.supervise``) holds
the
claim while its worker runs, repairs the file if the worker dies, and calls ``finish``.

Standard library only at import (the supervisor imports it); HDF5 is read only when needed.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from cosim.errors import COMPLETED, FAILED, RUNNING, CosimError, OutputError


@dataclass
class Claim:
    """A target path claimed by this process: the lock is held until ``commit``/``release``."""

    target: Path
    partial: Path
    lock: Path
    fd: int | None  # the open, locked lock file

    @property
    def parts(self) -> Path:
        """The folder of this run's part files under MPI (it belongs to the partial file)."""
        return parts_folder(self.partial)


def parts_folder(results: Path) -> Path:
    """Where the ranks of a distributed run write their part files (``part_path``): beside
    the run's partial file ``<stem>.partial-<run>.h5``, the folder ``<stem>.data-<run>``. The
    completed file links into it and it stays beside it: its name must not read as a leftover
    (a user who deletes what says "partial" would cut the file's links)."""
    stem, marker, run = results.stem.partition(".partial-")
    if marker:
        return results.with_name(f"{stem}.data-{run}")
    return Path(f"{results}.parts")


def part_path(results: Path, index: int) -> Path:
    return parts_folder(results) / f"rank-{index:04d}.h5"


def claim(target: str | Path, resume: bool | str | Path = False) -> Claim:
    """Claim ``target`` for one run; a ``CosimError`` (one line, nothing changed) if it cannot:
    a folder that cannot be made or written, or a target that is a folder
    (``cosim.results.output_path``), a file that is not a cosim results file, another run's target.

    ``resume``: the run goes on in an earlier run's unfinished file instead of a new partial
    one: that file, or (True) the newest unfinished partial file of ``target``."""
    from cosim.results.output_path import cannot_create, check_output_path

    target = Path(target)
    check_output_path(target)
    lock = target.with_name(target.name + ".lock")
    try:
        fd = _lock(lock, target)
    except OSError as error:
        raise cannot_create(target, error) from None
    try:
        if (target.exists() or target.is_symlink()) and not is_results_file(target):
            raise OutputError(f"{target}: exists and is not a cosim results file; cosim only "
                              "replaces its own results: choose another -o or move that file")
        partial = _partial_name(target) if not resume else _unfinished(target, resume)
    except BaseException:
        _unlock(lock, fd)
        raise
    return Claim(target, partial, lock, fd)


def commit(claim: Claim, *, status: str = FAILED, error: str = "") -> Path | None:
    """End a claimed run; returns where its results are now (None: it wrote no file).

    ``status`` and ``error`` are recorded only if the run left its file unfinished (status
    ``running``: ``settle``); a file that says ``completed`` replaces the target whatever
    ``status`` says.
    """
    try:
        if claim.partial.exists() and file_status(claim.partial) == RUNNING:
            if status == COMPLETED:  # the writer said it finished, its file says otherwise
                status = FAILED
                error = error or "the run ended before it wrote its final status"
            settle(claim.partial, status, error)
        completed = claim.partial.exists() and file_status(claim.partial) == COMPLETED
    except BaseException:
        release(claim)
        raise
    return finish(claim, completed)


def finish(claim: Claim, completed: bool) -> Path | None:
    """Rename a ``completed`` partial file over the target, or leave it where it is; release
    the lock. Returns where the results are (None: the run wrote no file). Reads no HDF5."""
    try:
        if not claim.partial.exists():
            return None
        if not completed:
            return claim.partial
        try:
            os.replace(claim.partial, claim.target)
        except OSError as failure:
            raise OutputError(f"{claim.target}: cannot be replaced ({failure.strerror}); "
                              f"the completed results are in {claim.partial}") from None
        _remove_parts_of(claim.target, keep=claim.parts)
        return claim.target
    finally:
        release(claim)


def discard(path: Path) -> None:
    """Remove the results file ``path`` and the part files it links to (a run under MPI)."""
    path.unlink(missing_ok=True)
    _remove_parts_of(path)


def _remove_parts_of(target: Path, keep: Path | None = None) -> None:
    """The parts folders of a results file that is gone (replaced, or discarded): a file
    under MPI links to its parts (``<stem>.data-<run>``, kept beside it, named after the
    partial file it was renamed from); a folder of ``target``'s whose partial file no longer
    exists, other than ``keep`` (the parts of the file just committed), belonged to it (only the
    run holding the lock commits over the target)."""
    for folder in target.parent.glob(f"{target.stem}.data-*"):
        run = folder.name.removeprefix(f"{target.stem}.data-")
        partial = target.with_name(f"{target.stem}.partial-{run}{target.suffix}")
        if folder != keep and not partial.exists():
            shutil.rmtree(folder, ignore_errors=True)


def kept_note(path: Path) -> str:
    """The line telling a user where the results of a run that did not complete are."""
    return (f"results written so far are kept in {path} (the previous results, if any, are "
            "untouched)")


def release(claim: Claim) -> None:
    """Give the lock back (``commit`` does); the target and the partial file are left alone."""
    if claim.fd is not None:
        _unlock(claim.lock, claim.fd)
        claim.fd = None


def is_results_file(path: str | Path) -> bool:
    """Whether ``path`` is a cosim results file (a regular HDF5 file with our ``format``)."""
    path = Path(path)
    if not path.is_file():
        return False
    from cosim.results.reader import read_now
    from cosim.results.recorder import FORMAT

    try:
        with read_now(path) as file:
            value = file.attrs.get("format")
    except (OSError, ValueError, CosimError):
        return False
    return (value.decode() if isinstance(value, bytes) else value) == FORMAT


def file_status(path: str | Path) -> str | None:
    """The ``status`` attribute of a results file (None: not readable as one)."""
    from cosim.results.reader import read_now

    try:
        with read_now(path) as file:
            value = file.attrs.get("status")
    except (OSError, ValueError, CosimError):
        return None
    return value.decode() if isinstance(value, bytes) else value


def settle(path: str | Path, status: str, error: str) -> None:
    """Finish a results file its writer could not (a crash, a kill): clear the mark an HDF5
    writer leaves while it has the file open, cut each group's datasets to their common length
    (the rows every dataset has), and give the file, and each cohort member still running,
    ``status`` and ``error``."""
    from cosim.results.h5clear import clear_writer_flags
    from cosim.results.parts import cut_to_common_length
    from cosim.results.recorder import open_for_writing

    clear_writer_flags(path)
    with open_for_writing(path) as file:
        for group in [file, *file.get("members", {}).values()]:
            cut_to_common_length(group)
            if group.attrs.get("status") in (RUNNING, RUNNING.encode()):
                group.attrs["status"] = status
                group.attrs["error"] = error


def complete_after_failure(results: Path, ranks: int, status: str, error: str
                           ) -> float | None:
    """``settle`` for a distributed run: after a rank failed or the run was interrupted, the
    (partial) main file ``results`` gets what every part file holds, cut to the communication
    points every rank reached, and says how the run ended; the parts folder goes (its data is
    in the main file, or linked from it: then it stays beside it).

    Runs in rank 0's supervisor (no MPI: the workers are gone). Returns the last row's time.
    """
    from cosim.results.h5clear import clear_writer_flags
    from cosim.results.parts import cut_to_common_length, merge_parts
    from cosim.results.recorder import open_for_writing, writing

    results = Path(results)
    if not results.exists():
        return None
    parts = [part_path(results, r) for r in range(ranks)]
    for path in [results, *parts]:
        if path.exists():
            clear_writer_flags(path)
    with writing(open_for_writing(results)) as main:
        linked = merge_parts(main, [path for path in parts if path.exists()],
                             link=parts_folder(results).name)
        last = cut_to_common_length(main)
        main.attrs["status"] = status
        main.attrs["error"] = error
        for member in main.get("members", {}).values():
            if member.attrs.get("status") == RUNNING:
                cut_to_common_length(member)
                member.attrs["status"] = status
                member.attrs["error"] = error
    if not linked:
        shutil.rmtree(parts_folder(results), ignore_errors=True)
    return last


def _unfinished(target: Path, given: bool | str | Path) -> Path:
    """The file a resumed run goes on in: ``given``, or the newest partial file of ``target``
    that did not complete."""
    if given is not True:
        path = Path(given)
        if not is_results_file(path):
            raise OutputError(f"{path}: not a cosim results file to resume")
        if file_status(path) == COMPLETED:
            raise OutputError(f"{path}: this run completed; there is nothing to resume")
        return path
    pattern = f"{target.stem}.partial-*{target.suffix}"
    for path in sorted(target.parent.glob(pattern), reverse=True):  # newest first (UTC stamp)
        if is_results_file(path) and file_status(path) != COMPLETED:
            return path
    raise OutputError(f"{target}: no unfinished run of it to resume (no {pattern} beside it "
                      "that did not complete)")


def _partial_name(target: Path) -> Path:
    """A name no run used beside ``target``: stem, ``partial``, UTC time, pid (and a count)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    base = f"{target.stem}.partial-{stamp}-{os.getpid()}"
    for n in itertools.count(1):
        candidate = target.with_name(base + ("" if n == 1 else f"-{n}") + target.suffix)
        if not candidate.exists() and not parts_folder(candidate).exists():
            return candidate
    raise AssertionError("unreachable")


def _lock(lock: Path, target: Path) -> int:
    """Open and flock ``lock``; write who holds it. Refuses at once if another run holds it."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)  # OSError: claim says it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown pid"
            os.close(fd)
            raise OutputError(f"{target}: another cosim run is writing it ({holder}); wait "
                              "for it to finish or choose another -o") from None
        except OSError as error:
            os.close(fd)
            raise OutputError(f"{target}: cannot lock {lock} ({error.strerror}): the file "
                              "system does not support locks; choose another -o") from None
        try:  # the previous holder may have removed the file between our open and our flock
            same = _same_file(fd, lock)
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return fd


def _same_file(fd: int, path: Path) -> bool:
    opened, named = os.fstat(fd), os.stat(path)
    return (opened.st_dev, opened.st_ino) == (named.st_dev, named.st_ino)


def _unlock(lock: Path, fd: int) -> None:
    try:
        if _same_file(fd, lock):
            lock.unlink()  # while still locked: a waiting run then locks a fresh file
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)
