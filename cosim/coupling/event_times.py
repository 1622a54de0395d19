"""Events an FMU knows in advance, and how a master lands on them exactly.

FMI 2.0 co-simulation has no way for an FMU to say when its next event falls, so cosim reads a
convention any FMU can implement: a Real output named ``next_event_time`` (unit s) holding the
time of the FMU's next known event (the generator's next pace, a scheduled fault, the next
intrinsic beat). A master reads it after every step and ends its next step there, so the FMU
sees the event at the end of a step, on its time. A value at or before the current
communication point means "none known". The slot of each such output in the signal array is
``Layout.event_slots``; under MPI every rank receives every one (``running.exchange.Exchange``),
so every rank chooses the same step.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cosim.fmi.fmu_file import FLOAT64_TYPES, FMU

EVENT_OUTPUT = "next_event_time"
AFTER = 1e-12  # s: an announced time within this of the communication point is not after it


def announces_events(fmu: FMU) -> bool:
    """Whether ``fmu`` follows the convention: a Real output ``next_event_time``."""
    variable = fmu.variables.get(EVENT_OUTPUT)
    return (variable is not None and variable.causality == "output"
            and variable.type in FLOAT64_TYPES)


def next_event(signals: np.ndarray, slots: Mapping[str, int] | np.ndarray,
               time: float) -> float:
    """The earliest announced event after ``time`` (inf if none)."""
    earliest = np.inf
    for slot in (slots.values() if isinstance(slots, Mapping) else slots):
        value = signals[slot]
        if time + AFTER < value < earliest:
            earliest = value
    return float(earliest)
