"""Reading results files: numpy arrays by ``"instance.variable"``.

    from cosim.results.reader import open_results
    with open_results("results/flagship.h5") as res:
        t, v = res.time, res["myocyte.V"]
        print(res.unit("myocyte.V"), res.status, res.verdict["passed"])

A cohort file holds one such layout per member: ``res.members`` lists them and
``res.member("0007")`` opens one. The layout is documented in ``docs/results-format.md``.

A file may be read while its run writes it (HDF5 SWMR; ``docs/results-format.md``): the reader
opens it in SWMR mode and presents every dataset of a group cut to the rows all of them had
when it was opened (``rows``), so ``time`` and each variable always have the same length.
Reopen to see the rows written since.
"""

from __future__ import annotations

import ctypes
import difflib
import json
import os
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cosim.errors import CosimError


class Results:
    """A read-only view of a results file (or of one cohort member in it)."""

    def __init__(self, path: str | Path, group: str = "/", wait: float = 5.0,
                 as_left: bool = False):
        self.path = Path(path)
        self.wait = wait
        # as_left: opened ignoring a dead writer's mark (HDF5 wants every handle on a file in
        # one process opened the same way: members of this file are opened so too)
        self.file = open_ignoring_writer(self.path) if as_left else _open(self.path, wait)
        self.as_left = not self.file.swmr_mode
        self.group = self.file[group]
        # the datasets as found at opening, held open: under MPI they live in part files
        # that a link may fail to reach for a moment later (a rank reopening its part)
        self._time, self._datasets, self.rows = _datasets(self.group)

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        # the part files these datasets hold open under MPI must close too: a later opening
        # in this process would otherwise see them as they were (HDF5 shares an open file)
        self._time, self._datasets = None, {}
        self.file.close()

    @property
    def attrs(self) -> dict[str, Any]:
        """Root (or member) attributes, JSON ones decoded."""
        out = {}
        for key, value in self.group.attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str) and value[:1] in "{[":
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    pass
            out[key] = value
        return out

    @property
    def status(self) -> str:
        """"completed", "failed", "interrupted", or "running" (being written, or killed)."""
        return str(self.group.attrs.get("status", "unknown"))

    @property
    def time(self) -> np.ndarray:
        return self._time[:self.rows] if self._time is not None else np.empty(0)

    @property
    def variables(self) -> list[str]:
        """Every recorded ``instance.variable``."""
        return list(self._datasets)

    def _dataset(self, name: str) -> h5py.Dataset:
        try:
            return self._datasets[name]
        except KeyError:
            if not self._datasets and self.status == "running":
                raise KeyError(f"'{name}': nothing is recorded yet (the run is setting up); "
                               "open the file again later") from None
        variable = name.partition(".")[2]
        close = [v for v in self.variables if v.partition(".")[2] == variable]  # other instance
        close += [v for v in difflib.get_close_matches(name, self.variables, n=3, cutoff=0.6)
                  if v not in close]
        hint = (f"did you mean {' or '.join(repr(c) for c in close)}?" if close
                else "recorded: " + ", ".join(self.variables))
        raise KeyError(f"'{name}' was not recorded in {self.path}; {hint}")

    def __getitem__(self, name: str) -> np.ndarray:
        return self._dataset(name)[:self.rows]

    def __contains__(self, name: str) -> bool:
        return name in self.variables

    def unit(self, name: str) -> str:
        attrs = self._dataset(name).attrs
        return str(attrs.get("units", attrs.get("unit", "")))  # "unit": format_version 1

    def description(self, name: str) -> str:
        attrs = self._dataset(name).attrs
        return str(attrs.get("long_name", attrs.get("description", "")))

    @property
    def verdict(self) -> dict[str, Any] | None:
        """The acceptance verdict: passed, and one entry per criterion with its figures."""
        if "verdict" not in self.group:
            return None
        node = self.group["verdict"]
        criteria = []
        for key in sorted(node, key=lambda k: node[k].attrs.get("index", 0)):
            criteria.append({k: _plain(v) for k, v in node[key].attrs.items()})
        return {"passed": bool(node.attrs["passed"]), "summary": str(node.attrs["summary"]),
                "criteria": criteria}

    def messages(self, instance: str) -> list[tuple[float, str, str, str]]:
        """What the FMU of ``instance`` said: ``(time, status, category, message)``, the first
        and last ones kept (``log/instances/<instance>``; empty if none was written)."""
        node = self.group.get("log/instances")
        if node is None or instance not in node:
            return []
        return [(float(t), _plain(s), _plain(c), _plain(m)) for t, s, c, m in node[instance][()]]

    @property
    def output(self) -> list[str]:
        """What the FMUs printed to stdout/stderr during the run (first and last lines)."""
        node = self.group.get("log/output")
        return [] if node is None else [_plain(line) for line in node[()]]

    @property
    def members(self) -> list[str]:
        return sorted(self.group["members"]) if "members" in self.group else []

    def member(self, member_id: str) -> Results:
        return Results(self.path, f"/members/{member_id}", self.wait, self.as_left)

    def summary(self) -> dict[str, np.ndarray]:
        """The cohort summary table as columns (member, parameters, verdict, figures)."""
        table = self.group["summary"][()]
        return {name: _column(table[name]) for name in table.dtype.names}


def open_results(path: str | Path, member: str | None = None, wait: float = 5.0) -> Results:
    """Open a results file (or one cohort member of it) for reading, also while it is being
    written; ``wait``: seconds to wait while its writer holds it outside SWMR mode."""
    return Results(path, f"/members/{member}" if member else "/", wait)


def _open(path: Path, wait: float) -> h5py.File:
    """Open for reading in SWMR mode (the file may be being written). Its writer holds it
    outside SWMR mode while the run sets up (until the first row), between cohort members and
    at the end: try again for up to ``wait`` seconds, then read what is on disk (a writer
    killed in such a moment never comes back)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return h5py.File(path, "r", swmr=True, locking=False)
        except FileNotFoundError:
            raise CosimError(f"{path}: no such results file") from None
        except OSError as error:
            if "open for SWMR writing" not in str(error) and "open for write" not in str(error):
                raise CosimError(f"{path}: cannot open the results file ({error})") from None
            if time.monotonic() > deadline:
                return open_ignoring_writer(path)
            time.sleep(0.05)


def read_now(path: str | Path) -> h5py.File:
    """Open for reading at once: in SWMR mode, else (its writer holds it outside SWMR mode, or
    died there) as it is on disk."""
    try:
        return h5py.File(path, "r", swmr=True, locking=False)
    except OSError as error:
        if "open for SWMR writing" not in str(error) and "open for write" not in str(error):
            raise
    return open_ignoring_writer(path)


def open_ignoring_writer(path: str | Path) -> h5py.File:
    """Open for reading a file whatever HDF5's "open for writing" mark says: a file whose
    writer died. Reading changes nothing (``cosim.results.h5clear`` clears the mark for good)."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
    fapl.set_file_locking(False, True)
    library = ctypes.CDLL(h5py.h5p.__file__)  # resolves HDF5's own symbols through h5py
    library.H5Pset.argtypes = [ctypes.c_int64, ctypes.c_char_p, ctypes.c_void_p]
    ignore = ctypes.c_bool(True)  # h5clear's property (H5F_ACS_CLEAR_STATUS_FLAGS_NAME):
    # read-only, it only skips the check
    if library.H5Pset(fapl.id, b"clear_status_flags", ctypes.byref(ignore)) < 0:
        raise CosimError(f"{path}: its writer's mark cannot be ignored; run h5clear -s on it")
    try:
        return h5py.File(h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY, fapl=fapl))
    except OSError as error:
        raise CosimError(f"{path}: cannot open the results file ({error})") from None


def _datasets(group: h5py.Group) -> tuple[h5py.Dataset | None, dict[str, h5py.Dataset], int]:
    """``(time, {"instance.variable": dataset}, rows)``: the datasets of ``group`` that can be
    read now, and the rows all of them have (they grow together). Under MPI, while the run
    goes, ``time`` is a link into rank 0's part file, which cannot be read while its writer is
    outside SWMR mode: then no row is shown (reopen)."""
    time = _get(group, "time")
    datasets = {f"{name}.{variable}": dataset for name, instance in _instances(group)
                for variable, dataset in instance.items()
                if isinstance(dataset, h5py.Dataset) and not dataset.is_scale}  # not time, or
    # an FMI 3 array's index
    if time is None and group.get("time", getlink=True) is not None:
        return None, datasets, 0
    lengths = [len(d) for d in [time, *datasets.values()] if d is not None]
    return time, datasets, min(lengths, default=0)


def _instances(group: h5py.Group) -> list[tuple[str, h5py.Group]]:
    """``/instances/<name>`` groups that can be read now (under MPI, while the run goes, a
    link may point into a part file that does not hold that instance yet)."""
    instances = group.get("instances")
    if instances is None:
        return []
    found = []
    for name in instances:
        instance = _get(instances, name)
        if instance is not None:
            found.append((name, instance))
    return found


def _get(group: h5py.Group, name: str):
    """``group[name]``, or None if it (or the part file a link leads to) cannot be read now."""
    try:
        return group.get(name)
    except (KeyError, OSError):
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _column(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "S" or values.dtype.kind == "O":
        return np.array([v.decode() if isinstance(v, bytes) else v for v in values])
    return values
