"""A progress line for ``cosim run``, drawn by the supervisor from the worker's journal.

The worker already writes its position (phase, step, simulated time) into its journal
(``cosim.master.journal``) and, once per run or member, the time span and a cohort's counts; the
supervisor reads them at each look (every 0.1 s) and redraws one line on a terminal:

    t = 12.3 of 20 s  [##########--------]  62%  8.1× real time  ETA 0:02
    members 5/16, 1 failed  [#####-----]  member t = 3.2 of 20 s  ETA 1:05

Nothing is drawn when standard error is not a terminal, with ``--quiet``, or before the run
has lasted ``AFTER`` seconds (a short run prints its verdict only). Standard library only.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

AFTER = 2.0  # seconds of running before the line appears
WIDTH = 24  # characters of the bar


class Progress:
    """One line on ``stream`` that follows a worker's journal position."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True,
                 after: float | None = None):
        self.stream = stream or sys.stderr
        self.enabled = enabled and _is_terminal(self.stream)
        self.after = float(os.environ.get("COSIM_PROGRESS_AFTER", AFTER)) if after is None \
            else after
        self.began: float | None = None
        self.shown = False

    def update(self, position, now: float) -> None:
        """Redraw from ``position`` (``cosim.master.journal.Position`` or None) at clock ``now``."""
        if not self.enabled or position is None:
            return
        if self.began is None:
            self.began = now
        elapsed = now - self.began
        if elapsed < self.after:
            return
        text = line(position, elapsed)
        if text:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
            self.shown = True

    def close(self) -> None:
        """Clear the line, so what follows starts at the left margin."""
        if self.shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.shown = False


def line(position, elapsed: float) -> str:
    """The progress text for a position after ``elapsed`` seconds of wall time."""
    span = position.stop - position.start
    if span <= 0:
        return ""
    simulated = min(max(position.time - position.start, 0.0), span) \
        if position.phase in ("stepping", "finishing") else 0.0
    fraction = simulated / span
    done, total, failed = position.members
    if total:
        overall = min((done + fraction) / total, 1.0)
        failures = f", {failed} failed" if failed else ""
        head = f"members {done}/{total}{failures}"
        member = f"member t = {simulated:.3g} of {span:.3g} s"
        return f"{head}  {_bar(overall)}  {member}  ETA {_eta(elapsed, overall)}"
    rate = simulated / elapsed if elapsed > 0 else 0.0
    return (f"t = {simulated:.3g} of {span:.3g} s  {_bar(fraction)}  {fraction:3.0%}  "
            f"{rate:.3g}× real time  ETA {_eta(elapsed, fraction)}")


def _bar(fraction: float) -> str:
    full = int(round(fraction * WIDTH))
    return "[" + "#" * full + "-" * (WIDTH - full) + "]"


def _eta(elapsed: float, fraction: float) -> str:
    if fraction <= 0:
        return "?"
    seconds = int(round(elapsed * (1 - fraction) / fraction))
    hours, rest = divmod(seconds, 3600)
    return (f"{hours}:" if hours else "") + f"{rest // 60:{'02' if hours else ''}d}:{rest % 60:02d}"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
