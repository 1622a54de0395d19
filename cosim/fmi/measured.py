"""Measured signals as a source instance: time series read from a CSV or HDF5 file (columns
with units) and fed, held or linearly interpolated, into other instances' inputs.

A measured source is an instance like any other: the graph checks its connections (names,
types, units: a column in ``1/min`` feeds an input in ``1/s`` converted), the master steps it,
checkpoints save its time. It is not an FMU: ``source_fmu(table)`` describes it as one would
(one Real output per column, its unit, no inputs) with the interface ``MEASURED``, and
``cosim.fmi.instances.new_instance`` makes a ``MeasuredSource`` for it, always in cosim's process
(there is no binary to isolate). Why not a compiled FMU: the columns and their units are only
known from the data file, so a compiled FMU would need a model description written per file
and a C reader of CSV and HDF5; behind the instance interface the data are read once, by the
same code that samples them for criteria (``Table.at``) and fits, and never leave the process.

File formats (``docs/scenario-format.md``, "measured"):
- CSV: a header row ``time [s],rate [1/min],P_ao [mmHg]`` (a column's unit in brackets, or in
  the scenario's ``units:``), then one row per sample; ``#`` starts a comment line.
- HDF5: one 1-D dataset per column in the file's root (or ``group:``), its unit in the
  attribute ``units``; the time column likewise.
The time column (``time``, or ``time_column:``) must increase strictly; it may be in any time
unit (``ms``, ``min``); simulation time = file time + ``offset``.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosim.fmi.fmu import MessageLog
from cosim.fmi.fmu_file import FMU, Variable
from cosim.fmi.units import UnitDefinition, conversion, define

MEASURED = "measured"  # the interface of a measured source (no FMI: see the module's text)
INTERPOLATIONS = ("hold", "linear")
STORE = ("full", "hash", "none")  # what a results file keeps of a data file (cosim.twins.privacy)
MAX_FILE_BYTES = 256 * 2**20
_HEADER = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(?:\[(.*)\])?\s*$")
_KEYS = {"file", "columns", "units", "interpolation", "offset", "time_column", "group", "store",
         "description"}

Report = Callable[..., None]  # (path, message, hint) -> None: a problem at a scenario key


@dataclass(frozen=True, eq=False)
class Table:
    """A measured source as read: sample times (s, simulation time: offset applied) and one
    array per column in its own unit."""

    name: str
    time: np.ndarray
    columns: dict[str, np.ndarray]
    units: dict[str, str]  # column -> unit ("" none)
    interpolation: str = "hold"
    file: Path | None = None
    sha256: str = ""  # of the file's bytes
    store: str = "hash"
    description: str = ""

    def at(self, column: str, times: np.ndarray | float) -> np.ndarray:
        """The column at ``times`` (s): the last sample at or before (hold) or interpolated
        (linear); before the first sample the first value, after the last the last."""
        t = np.asarray(times, dtype=np.float64)
        y = self.columns[column]
        if self.interpolation == "linear":
            return np.interp(t, self.time, y)
        index = np.searchsorted(self.time, t + 1e-12 * np.maximum(1.0, np.abs(t)), side="right")
        return y[np.clip(index - 1, 0, len(y) - 1)]

    def column_in(self, column: str, unit: str | None) -> np.ndarray:
        """The column's samples converted into ``unit`` (None or "": as they are)."""
        scale, shift = conversion(unit_definition(self.units[column]), unit_definition(unit)) \
            or (math.nan, math.nan)
        return self.columns[column] * scale + shift

    @property
    def span(self) -> tuple[float, float]:
        return float(self.time[0]), float(self.time[-1])


def unit_definition(unit: str | None) -> UnitDefinition | None:
    return (define(unit) or UnitDefinition(unit, (0,) * 8)) if unit else None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# -- the scenario's `measured:` section ----------------------------------------------------------
def read_measured(section: Any, base: Path, report: Report,
                  span: tuple[float, float] | None) -> dict[str, Table]:
    """The tables of the scenario's ``measured`` section (name → mapping), every mistake
    reported at its key; ``span``: the run's (start, stop), which the data must cover."""
    if section is None:
        return {}
    if not isinstance(section, Mapping):
        report((), "measured is a mapping: source name -> {file: …, columns: …}",
               "e.g. measured: {rate_trend: {file: data/rate.csv}}")
        return {}
    tables = {}
    for name, spec in section.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*", name):
            report((name,), f"'{name}' is not a source name",
                   "letters, digits and _, not starting with a digit")
            continue
        table = _read_source(name, spec, base, lambda p, m, h=None, n=name: report((n, *p), m, h),
                             span)
        if table is not None:
            tables[name] = table
    return tables


def _read_source(name: str, spec: Any, base: Path, report: Report,
                 span: tuple[float, float] | None) -> Table | None:
    if isinstance(spec, str):
        spec = {"file": spec}
    if not isinstance(spec, Mapping) or "file" not in spec:
        report((), "a measured source needs a file", f"{name}: {{file: data/{name}.csv}}")
        return None
    for key in spec:
        if key not in _KEYS:
            report((key,), f"unknown key '{key}'", f"allowed: {', '.join(sorted(_KEYS))}")
    interpolation = spec.get("interpolation", "hold")
    if interpolation not in INTERPOLATIONS:
        report(("interpolation",), f"unknown interpolation '{interpolation}'",
               f"use {' or '.join(INTERPOLATIONS)}")
        return None
    store = spec.get("store", "hash")
    if store not in STORE:
        report(("store",), f"unknown store '{store}'",
               "full (the data in the results), hash (only its SHA-256) or none")
        return None
    offset = spec.get("offset", 0.0)
    if isinstance(offset, bool) or not isinstance(offset, (int, float)) or \
            not math.isfinite(offset):
        report(("offset",), f"offset is a finite number of seconds, got {offset!r}",
               "simulation time = file time + offset")
        return None
    units = spec.get("units", {})
    if not isinstance(units, Mapping) or not all(isinstance(u, str) for u in units.values()):
        report(("units",), "units is a mapping column -> unit text", "e.g. {rate: 1/min}")
        return None
    wanted = spec.get("columns")
    if wanted is not None and (not isinstance(wanted, list)
                               or not all(isinstance(c, str) for c in wanted)):
        report(("columns",), "columns is a list of column names", "e.g. [rate, P_ao]")
        return None
    time_column = str(spec.get("time_column", "time"))
    path = Path(str(spec["file"]))
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        report(("file",), f"no such data file: {path}", "paths are relative to the scenario")
        return None
    if path.stat().st_size > MAX_FILE_BYTES:
        report(("file",), f"{path.name} holds more than {MAX_FILE_BYTES:,} bytes",
               "cut the file to the span the scenario runs")
        return None
    try:
        if path.suffix.lower() in (".h5", ".hdf5"):
            columns, file_units = _read_hdf5(path, str(spec.get("group", "/")))
        else:
            columns, file_units = _read_csv(path)
    except DataError as error:
        report(("file",), f"{path.name}: {error}", error.hint)
        return None
    file_units.update(units)
    if time_column not in columns:
        report(("time_column",), f"{path.name} has no column '{time_column}'",
               f"its columns: {', '.join(columns)}")
        return None
    seconds = _to_seconds(columns.pop(time_column), file_units.pop(time_column, "s") or "s")
    if seconds is None:
        report(("file",), f"{path.name}: the unit of '{time_column}' is not a time",
               "write it as 'time [s]' (or ms, min, h)")
        return None
    if len(seconds) < 1 or not np.all(np.isfinite(seconds)) or np.any(np.diff(seconds) <= 0):
        report(("file",), f"{path.name}: '{time_column}' must increase strictly and be finite",
               "sort the rows by time and remove repeated times")
        return None
    for column in wanted or []:
        if column not in columns:
            report(("columns",), f"{path.name} has no column '{column}'",
                   f"its columns: {', '.join(columns)}")
            return None
    chosen = {c: columns[c] for c in (wanted or columns)}
    for column, values in chosen.items():
        unit = file_units.get(column, "")
        if unit and define(unit) is None:
            report(("units",) if column in units else ("file",),
                   f"{path.name}: the unit '{unit}' of column '{column}' is not a unit cosim knows",
                   "write it as pint reads it, e.g. 1/min, mmHg, ohm, mV")
            return None
        if not np.all(np.isfinite(values)):
            row = int(np.flatnonzero(~np.isfinite(values))[0])
            report(("file",), f"{path.name}: column '{column}' is not a finite number at sample "
                   f"{row + 1}", "remove or fill missing samples")
            return None
    time = seconds + float(offset)
    if span is not None and (time[0] > span[0] + 1e-9 or time[-1] < span[1] - 1e-9):
        report(("offset",), f"{path.name} covers {time[0]:g}–{time[-1]:g} s of simulation time "
               f"(offset {float(offset):g} s), the run needs {span[0]:g}–{span[1]:g} s",
               "shift it with offset, or shorten simulation.stop")
        return None
    return Table(name, time, chosen, {c: file_units.get(c, "") for c in chosen},
                 interpolation, path, file_sha256(path), store,
                 str(spec.get("description", "")))


class DataError(Exception):
    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.hint = hint


def _read_csv(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as error:
        raise DataError(f"cannot read it as UTF-8 text ({error})") from None
    rows = [(n, row) for n, row in enumerate(csv.reader(text.splitlines()), 1)
            if row and not row[0].lstrip().startswith("#")]
    if not rows:
        raise DataError("no header row", "the first row names the columns: time [s],rate [1/min]")
    header_line, header = rows[0]
    names, units = [], {}
    for cell in header:
        match = _HEADER.match(cell)
        if not match:
            raise DataError(f"line {header_line}: '{cell}' is not a column name",
                            "write name [unit], e.g. 'rate [1/min]'")
        names.append(match.group(1))
        units[match.group(1)] = (match.group(2) or "").strip()
    if len(set(names)) != len(names):
        raise DataError(f"line {header_line}: a column name appears twice")
    values = np.empty((len(rows) - 1, len(names)))
    for i, (line, row) in enumerate(rows[1:]):
        if len(row) != len(names):
            raise DataError(f"line {line}: {len(row)} cells, the header has {len(names)}")
        try:
            values[i] = [float(cell) for cell in row]
        except ValueError:
            raise DataError(f"line {line}: a cell is not a number",
                            "every cell below the header is a number") from None
    return {n: values[:, j].copy() for j, n in enumerate(names)}, units


def _read_hdf5(path: Path, group: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if group not in f or not isinstance(f[group], h5py.Group):
                raise DataError(f"no group '{group}'", "set group: to where the columns are")
            columns, units = {}, {}
            for name, item in f[group].items():
                if isinstance(item, h5py.Dataset) and item.ndim == 1 and item.dtype.kind in "fiu":
                    columns[name] = np.asarray(item[()], dtype=np.float64)
                    unit = item.attrs.get("units", "")
                    units[name] = unit.decode() if isinstance(unit, bytes) else str(unit)
    except OSError as error:
        raise DataError(f"not a readable HDF5 file ({error})") from None
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise DataError("its datasets differ in length", "one sample per row of every column")
    return columns, units


def _to_seconds(values: np.ndarray, unit: str) -> np.ndarray | None:
    definition, second = define(unit), define("s")
    if definition is None or definition.exponents != second.exponents:
        return None
    return values * definition.factor


# -- the source as an instance -------------------------------------------------------------------
def source_fmu(table: Table) -> FMU:
    """What a measured source declares, as an FMU's model description would: one Real
    output per column in its unit, no inputs, no direct feedthrough."""
    variables = {c: Variable(c, i, "Real", "output", "continuous", "exact", table.units[c] or None,
                             f"measured ({table.interpolation})", float(table.at(c, table.time[0])))
                 for i, c in enumerate(table.columns)}
    units = {u: define(u) for u in table.units.values() if u}
    none = {c: () for c in table.columns}
    return FMU(Path(f"measured:{table.name}"), table.sha256 if table.store != "none" else "",
               "2.0", f"measured {table.name}", table.name, f"measured-{table.name}",
               "cosim measured data", variables, units, none, dict(none), True, True, True, (),
               description=table, interfaces={MEASURED: table.name})


class MeasuredSource:
    """A measured source behind the instance interface: its outputs are the table's columns
    at the instance's time (the start of the step, like an FMU's outputs after a step)."""

    def __init__(self, fmu: FMU, name: str):
        self.name = name
        self.fmu = fmu
        self.table: Table = fmu.description
        self.messages = MessageLog()
        self.ended_at: float | None = None
        self.time = 0.0
        self._outputs: tuple[str, ...] = ()
        self._buffer = np.zeros(0)

    def instantiate(self) -> None:
        pass

    def set(self, values: Mapping[str, Any]) -> None:
        if values:
            from cosim.errors import SimulationError

            raise SimulationError(f"a measured source has nothing to set ({', '.join(values)})",
                                  instance=self.name)

    def get(self, names: Iterable[str]) -> dict[str, Any]:
        return {n: float(self.table.at(n, self.time)) for n in names}

    def bind(self, inputs: Sequence[str], outputs: Sequence[str], output_buffer: np.ndarray
             ) -> np.ndarray:
        self._outputs, self._buffer = tuple(outputs), output_buffer
        return np.zeros(0)

    def setup_experiment(self, start: float, stop: float | None = None) -> None:
        self.time = start

    def enter_initialization_mode(self) -> None:
        pass

    def exit_initialization_mode(self) -> None:
        pass

    def set_inputs(self) -> None:
        pass

    def do_step(self, time: float, step: float) -> bool | None:
        self.time = time + step
        return None

    def get_outputs(self) -> None:
        for i, column in enumerate(self._outputs):
            self._buffer[i] = self.table.at(column, self.time)

    def serialize_state(self) -> bytes:
        return struct.pack("<d", self.time)

    def restore_state(self, data: bytes) -> None:
        (self.time,) = struct.unpack("<d", data)

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class Sampled:
    """A measured column on the samples inside a window (for criteria and fits)."""

    time: np.ndarray
    values: np.ndarray
    unit: str = ""


def samples(table: Table, column: str, window: tuple[float, float] | None = None) -> Sampled:
    """The measured samples of ``column`` whose time lies in ``window`` (s, simulation time)."""
    t = table.time
    mask = np.ones(len(t), bool) if window is None else \
        (t >= window[0] - 1e-12) & (t <= window[1] + 1e-12)
    return Sampled(t[mask], table.columns[column][mask], table.units[column])


def store_measured(group: Any, tables: Mapping[str, Table]) -> None:
    """Copy the data of every table whose ``store`` is ``full`` into ``group``
    (``measured/<name>/time`` and one dataset per column, ``units`` attributes); the others
    leave nothing but what provenance says (``cosim.provenance.measured_provenance``)."""
    for name, table in tables.items():
        if table.store != "full":
            continue
        kept = group.require_group(f"measured/{name}")
        kept.create_dataset("time", data=table.time).attrs["units"] = "s"
        for column, values in table.columns.items():
            kept.create_dataset(column, data=values).attrs["units"] = table.units[column]
