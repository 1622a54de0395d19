"""What FMUs print while they run, captured at the file descriptors and kept within bounds.

FMU code runs in this process: a C FMU's ``printf`` writes to file descriptor 1, a pythonfmu
FMU's ``print`` to ``sys.stdout`` and from there to descriptor 1. Left alone, it reaches the
user's terminal mixed with cosim's own messages, and an FMU printing 100 000 lines floods it.

``capture_output()`` points descriptors 1 and 2 at a pipe for the length of a run (once, not
around each FMU call: that would cost four ``dup2`` system calls per call, more than a small C
FMU's whole step; ``benchmarks/capture.py`` measures both). A thread drains the pipe and keeps
the first and the last ``KEEP_LINES`` lines, each cut at ``MAX_LINE`` characters with control
characters escaped, and counts every line and byte. The results file stores what was kept
(``/log/output``, ``docs/results-format.md``); nothing reaches the terminal. Whatever prints
during the capture (an observer too) is captured: print to the terminal after the run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

KEEP_LINES = 500
MAX_LINE = 1000
DRAIN_SECONDS = 1.0  # after the run, a process the FMU started may go on printing: not waited for
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(32), 127, *range(0x80, 0xA0)) if c != 9}
_CONTROL_BUT_NEWLINE = {c: escaped for c, escaped in _CONTROL.items() if c != 10}


def printable(text: str, limit: int = MAX_LINE, newlines: bool = False) -> str:
    """``text`` cut at ``limit`` characters, control characters (but tab, and newline when
    ``newlines``) escaped: it can be printed in a terminal without moving the cursor, clearing
    the screen or changing colours."""
    text = text if len(text) <= limit else text[:limit] + "…"
    return text.translate(_CONTROL_BUT_NEWLINE if newlines else _CONTROL)


@dataclass
class CapturedOutput:
    """The first and last lines printed during a capture, and how much was printed."""

    head: list[str] = field(default_factory=list)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=KEEP_LINES))
    lines: int = 0
    bytes: int = 0

    def add(self, raw: bytes) -> None:
        self.lines += 1
        line = printable(raw.decode("utf-8", "replace").rstrip("\r"))
        (self.head if len(self.head) < KEEP_LINES else self.tail).append(line)

    def kept(self) -> list[str]:
        """The lines kept, with one line saying how many were left out between them."""
        left_out = self.lines - len(self.head) - len(self.tail)
        middle = [f"[… {left_out:,} lines left out …]"] if left_out else []
        return [*self.head, *middle, *self.tail]


@contextlib.contextmanager
def capture_output() -> Iterator[CapturedOutput]:
    """Send descriptors 1 and 2 (and so ``sys.stdout``/``sys.stderr``) into a bounded
    ``CapturedOutput`` until the block ends; restored whatever happens."""
    captured = CapturedOutput()
    try:
        saved = (os.dup(1), os.dup(2))
    except OSError:  # no descriptor 1 or 2 (a daemon): nothing can reach a terminal anyway
        yield captured
        return
    read_end, write_end = os.pipe()
    stop = threading.Event()
    drain = threading.Thread(target=_drain, args=(read_end, captured, stop), daemon=True,
                             name="cosim-capture")
    _flush()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)
    drain.start()
    try:
        yield captured
    finally:
        _flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        stop.set()  # the drain ends at end of file, when the pipe stays quiet or after
        drain.join()  # DRAIN_SECONDS (a process the FMU started may hold the write end)
        os.close(read_end)


def _flush() -> None:
    """Push out what Python and C hold in their buffers, so it goes where it was printed."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)


def _drain(fd: int, captured: CapturedOutput, stop: threading.Event) -> None:
    pending, skipping = b"", False  # skipping: the rest of a line already cut and counted
    deadline = None  # once stopped: what is still in the pipe, for at most DRAIN_SECONDS
    while deadline is None or time.monotonic() < deadline:
        if deadline is None and stop.is_set():
            deadline = time.monotonic() + DRAIN_SECONDS
        ready, _, _ = select.select([fd], [], [], 0.05)
        if not ready:
            if stop.is_set():
                break
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        captured.bytes += len(chunk)
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if skipping:
                skipping = False
            else:
                captured.add(line)
        if len(pending) > 4 * MAX_LINE:  # a line without end: keep its start, count it once
            if not skipping:
                captured.add(pending)
            pending, skipping = b"", True
    if pending and not skipping:
        captured.add(pending)
