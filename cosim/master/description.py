"""What a run is asked to do, as frozen, typed values: the description a scenario file is read
into (``cosim.scenario.scenario``) and the runtime is given (``cosim.master.execution``), below
both.

``Settings``: the time span and step, the algorithm, what to record and how, the timed
``Event``s, the call limit. ``FmuSource``: where an FMU comes from (a file, or a model of the
library built on demand), with its pinned SHA-256. ``Parallel``: how a run is spread over MPI
ranks. Nothing here opens a file or runs anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CALL_TIMEOUT = 60.0  # seconds an FMI call may take, by default, before it counts as a hang


@dataclass(frozen=True)
class Event:
    """Set ``values`` on ``instance`` at ``time`` (applied before the step starting there)."""

    time: float
    instance: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Adaptive:
    """Step-size control (``simulation.adaptive``; cosim.adaptive): the communication step
    chosen between ``Settings.step`` (the smallest, and the grid steps are multiples of) and
    ``max_step`` from the coupling values' deviation from their extrapolation, kept below
    ``tolerance`` times each value's range; inputs extrapolated with polynomials of
    ``extrapolation`` (0, 1, 2), or of ``orders[output]`` for the connections from one
    output."""

    max_step: float
    tolerance: float = 1e-3
    extrapolation: int = 1
    orders: Mapping[str, int] = field(default_factory=dict)  # "instance.output" -> order


ITERATION_METHODS = ("constant", "aitken", "iqn-ils")  # cosim.master.iteration


@dataclass(frozen=True)
class Iteration:
    """Iterative coupling (``simulation.iteration``; cosim.master.iteration): every step
    repeated until each coupling value agrees with the output it produces within ``tolerance``
    (× max(1, |value|)), the next guess from ``method`` ("constant", "aitken", "iqn-ils"),
    at most ``max_iterations`` times."""

    method: str = "iqn-ils"
    tolerance: float = 1e-10
    max_iterations: int = 50
    relaxation: float = 0.5  # the constant one, and the first of aitken and iqn-ils


@dataclass(frozen=True)
class Settings:
    """What to run: the time span and step, the algorithm, what to record, timed events."""

    start: float
    stop: float
    step: float
    algorithm: str = "jacobi"
    record: Mapping[str, Sequence[str]] = field(default_factory=dict)  # instance -> variables
    record_interval: float | None = None  # s between recorded points (None: every point)
    record_reduce: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # instance ->
    # variable -> how a recorded point stands for its interval (cosim.scenario.decimation; not
    # "last")
    events: Sequence[Event] = ()
    call_timeout: float = CALL_TIMEOUT  # s an FMI call may take before it counts as a hang
    adaptive: Adaptive | None = None  # None: every step is ``step``
    iteration: Iteration | None = None  # None: every step once
    # instance -> its communication step in steps of ``step`` (cosim.master.multirate; > 1)
    rates: Mapping[str, int] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        """Number of communication steps of ``step`` from start to stop."""
        return steps_between(self.start, self.stop, self.step)

    @property
    def record_every(self) -> int:
        """Communication steps of ``step`` between recorded points."""
        return 1 if not self.record_interval else round(self.record_interval / self.step)


MAX_STEPS = 10**9  # a run of more communication steps is refused (a typo, not a plan)


def steps_between(start: float, stop: float, step: float) -> int:
    """``(stop - start) / step`` as an integer; ValueError if it is not one, or above
    ``MAX_STEPS``."""
    count = (stop - start) / step
    if not math.isfinite(count) or count > MAX_STEPS:
        raise ValueError(f"stop - start = {stop - start:g} s is {count:.3g} steps of {step:g} s,"
                         f" more than the limit of {MAX_STEPS:.0e} steps")
    rounded = round(count)
    if rounded < 1 or not math.isclose(count, rounded, rel_tol=1e-9, abs_tol=1e-9):
        raise ValueError(f"stop - start = {stop - start:g} s is not a whole number of "
                         f"steps of {step:g} s")
    return rounded



@dataclass(frozen=True)
class FmuSource:
    """Where an FMU comes from: a ``file``, or a ``model`` of the library (``fmus/``, built
    when stale); ``sha256``: the digest the scenario pins it to (None: not pinned)."""

    file: Path | None = None
    model: str | None = None
    sha256: str | None = None

    def __str__(self) -> str:
        return str(self.file) if self.file is not None else f"library model {self.model}"

    def path(self) -> Path:
        """The FMU file (a library model's built first if it is stale:
        ``cosim.library.build.library_fmu``, which raises a ``CosimError`` when it cannot)."""
        if self.file is not None:
            return self.file
        from cosim.library.build import library_fmu

        return library_fmu(self.model)


@dataclass(frozen=True)
class Parallel:
    """How a run is spread over MPI ranks (``docs/cluster.md``): ``group_size`` ranks per
    cohort member (None: 1 for a cohort, every rank for a single run); ``balance``: the
    partition weighs each instance by its declared ``cost`` or by the seconds measured in a
    pilot of ``measure_steps`` steps."""

    group_size: int | None = None
    balance: str = "declared"
    measure_steps: int = 100
