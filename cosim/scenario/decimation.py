"""Recording at an interval: how one recorded point stands for the steps since the last one.

At ``record: {interval: …}`` coarser than the communication step, a plain sample keeps the value
at the recorded point only, and a one-step event (a pacemaker's ``marker == 3`` during the step
of a pace) falls between two points. A **reduction** keeps it: the recorded value is computed
over every communication point of the interval ``(t_previous, t]``:

- ``last``: the value at ``t`` (a sample; the default for continuous variables);
- ``max`` / ``min``: the largest / smallest value;
- ``any``: 1 if the value was non-zero at any point, else 0;
- ``event``: the last non-zero value of the interval, else 0 (the default for discrete
  variables: an event code survives; a counter or a latched flag reads as its value at ``t``).

Chosen in the scenario (``record.reduce``) per variable (``pacemaker.marker: event``), per
instance (``lead.*: max``) or per kind (``discrete``, ``continuous``); a named variable beats its
instance's pattern, which beats its kind. Nothing is reduced when every step is recorded.
The recorder calls ``accumulate`` after every step and ``emit`` on each recorded row: a few
numpy calls per step for the reduced columns only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MODES = ("last", "max", "min", "any", "event")
KINDS = ("discrete", "continuous")
DEFAULTS = {"discrete": "event", "continuous": "last"}


def check_reduce(section: object, report: Callable[[tuple, str, str], None]
                 ) -> list[tuple[str, str, tuple]]:
    """The ``record.reduce`` mapping as ``(key, mode, path)``; problems go to ``report``."""
    if section is None:
        return []
    path = ("record", "reduce")
    if not isinstance(section, Mapping):
        report(path, "must be a mapping of a variable, 'instance.*' or a kind to a reduction",
               "reduce: {discrete: event, lead.I_stim: max}")
        return []
    found = []
    for key, mode in section.items():
        key = str(key)
        if key not in KINDS and (key.count(".") < 1 or key.startswith(".")
                                 or key.endswith(".")):
            report(path + (key,), f"'{key}' is not 'instance.variable', 'instance.*' or a kind",
                   "kinds: " + ", ".join(KINDS))
            continue
        if mode not in MODES:
            report(path + (key,), f"unknown reduction {mode!r}", "one of " + ", ".join(MODES))
            continue
        found.append((key, mode, path + (key,)))
    return found


def modes_by_variable(choices: Sequence[tuple[str, str]], record: Mapping[str, Sequence[str]],
                      discrete: Callable[[str, str], bool]) -> dict[str, dict[str, str]]:
    """``{instance: {variable: mode}}`` for the recorded variables whose mode is not ``last``.

    ``choices``: ``(key, mode)`` from the scenario; ``discrete(instance, variable)``: its kind.
    """
    by_key = dict(choices)
    modes: dict[str, dict[str, str]] = {}
    for instance, variables in record.items():
        for variable in variables:
            kind = "discrete" if discrete(instance, variable) else "continuous"
            mode = by_key.get(f"{instance}.{variable}",
                              by_key.get(f"{instance}.*", by_key.get(kind, DEFAULTS[kind])))
            if mode != "last":
                modes.setdefault(instance, {})[variable] = mode
    return modes


@dataclass
class Reduction:
    """The columns of a recorder's row reduced one way, and their running value."""

    mode: str
    columns: np.ndarray  # positions in the recorder's row
    slots: np.ndarray  # indices into the signal array
    value: np.ndarray  # the reduction so far over the current interval
    scratch: np.ndarray  # this step's values
    mask: np.ndarray  # bool scratch

    def reset(self) -> None:
        self.value.fill({"max": -np.inf, "min": np.inf}.get(self.mode, 0.0))


def reductions(columns_by_mode: Mapping[str, tuple[list[int], list[int]]]) -> list[Reduction]:
    """One ``Reduction`` per mode from ``{mode: (row columns, signal slots)}``."""
    found = []
    for mode, (columns, slots) in columns_by_mode.items():
        n = len(columns)
        reduction = Reduction(mode, np.array(columns, dtype=np.intp),
                              np.array(slots, dtype=np.intp), np.empty(n), np.empty(n),
                              np.empty(n, dtype=bool))
        reduction.reset()
        found.append(reduction)
    return found


def accumulate(reduction: Reduction, signals: np.ndarray) -> None:
    """Fold this communication point's values into the interval's reduction."""
    values = np.take(signals, reduction.slots, out=reduction.scratch)
    mode = reduction.mode
    if mode == "max":
        np.maximum(reduction.value, values, out=reduction.value)
    elif mode == "min":
        np.minimum(reduction.value, values, out=reduction.value)
    elif mode == "any":
        np.not_equal(values, 0.0, out=reduction.mask)
        np.logical_or(reduction.value, reduction.mask, out=reduction.value)
    else:  # event: the last non-zero value
        np.not_equal(values, 0.0, out=reduction.mask)
        np.copyto(reduction.value, values, where=reduction.mask)


def emit(reduction: Reduction, row: np.ndarray) -> None:
    """Write the interval's reduction into the recorded ``row``; start the next interval."""
    row[reduction.columns] = reduction.value
    reduction.reset()
