"""Writing results to HDF5: the results file and the ``Recorder`` observer.

Layout (documented for users in ``docs/results-format.md``)::

    /                       attrs: format, format_version, status, error, provenance
    /time                   float64 (n,), seconds; an HDF5 dimension scale
    /instances/<instance>   attrs: fmu, fmu_sha256, model_name, scale, parameters (JSON)
    /instances/<instance>/time         a hard link to /time (xarray's coordinate per group)
    /instances/<instance>/<variable>   float64 (n,) — (n, *shape) for an FMI 3 array —
                            attrs: units, long_name, display_unit, causality, type
    /instances/<instance>/<dimension>  an FMI 3 array's other dimensions: 0 … size-1, scales
    /verdict                the acceptance criteria and their figures (``cosim.scenario.criteria``)
    /members/<id>/…         one such layout per cohort member (``cosim.scenario.cohort``)

Rows are buffered in memory and written in blocks; after each block the file is flushed, so a
run that is killed keeps everything up to its last block. The recorder knows nothing about MPI:
in a parallel run each process writes its own instances (see ``cosim.running.mpi``).

A file is written in three phases so that readers can open it while it grows (HDF5 SWMR:
single writer, multiple readers): (1) provenance, groups and every dataset are created;
(2) ``Recorder.started`` switches the file to SWMR mode, where rows are only appended
(``swmr_mode``: no new objects, no attributes); (3) the file is closed and reopened
(``open_for_writing``) to write the status, the verdict and the timings (``write_status``). A
cohort repeats (1)-(3) per member. Writers open files with HDF5's own file locking off: the
lock of ``cosim.results.output`` keeps a results path to one writer, and readers must not block the
writer's reopening.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import platform
import re
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cosim.errors import COMPLETED, FAILED, INTERRUPTED, RUNNING, ResultsWriteError  # noqa: F401 - statuses
from cosim.master.execution import Execution
from cosim.master.journal import ROW_BITS, ROWS, PendingRows
from cosim.results.h5clear import clear_writer_flags
from cosim.results.output_path import cannot_create
from cosim.scenario import decimation

FORMAT = "cosim-results"
FORMAT_VERSION = 2  # 2: CF attributes (units, long_name), time linked into each group
BLOCK_ROWS = 1024
DIMENSION_ATTRIBUTES = ("DIMENSION_LIST", "REFERENCE_LIST")  # the scales' references
MARGIN_BYTES = 1 << 20  # free disk below which a run stops, so its file can still be finished
LIBVER = ("v110", "v110")  # SWMR needs the 1.10 file format; HDF5 >= 1.10 reads it


def versions() -> dict[str, str]:
    """Versions of the software that produced a results file."""
    found = {"python": platform.python_version()}
    for package in ("cosim", "fmpy", "numpy", "h5py", "scipy", "networkx", "mpi4py"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def create_results_file(path: str | Path, provenance: Mapping[str, Any]) -> h5py.File:
    """Create (replace) a results file with its provenance as root attributes; open for
    writing. It appears at ``path`` complete with its provenance, never half-made."""
    return create_file(path, lambda file: write_provenance(file, provenance))


def create_file(path: str | Path, fill=None) -> h5py.File:
    """A new HDF5 file that can later be switched to SWMR mode (part files too), open for
    writing. It is made under a temporary name (after ``fill(file)``) and renamed to ``path``,
    so a reader polling ``path`` never finds it empty."""
    path = Path(path)
    making = path.with_name(f".{path.name}.{os.getpid()}.new")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(making, "w", libver=LIBVER, locking=False) as file:
            if fill is not None:
                fill(file)
        os.replace(making, path)
    except OSError as error:  # no such folder, a folder given, no permission: one sentence
        raise cannot_create(path, error) from None
    return open_for_writing(path)


def open_for_writing(path: str | Path) -> h5py.File:
    """Reopen a file this run writes, out of SWMR mode: to add groups, datasets, attributes
    (after its rows were appended in SWMR mode and it was closed). Readers that have it open
    keep what they saw; they reopen to see the rest."""
    return h5py.File(path, "r+", libver=LIBVER, locking=False)


def write_end(group: h5py.Group, error: BaseException | None,
              execution: Execution | None = None) -> None:
    """How a run (or cohort member) ended: what its FMUs said and printed (``write_log``), its
    status and error, and, when it completed, why (``Execution.end_reason``)."""
    if execution is not None:
        write_log(group, execution)
        write_master(group, execution)
    write_status(group, error, execution.end_reason if execution is not None else "")


def write_status(group: h5py.Group, error: BaseException | str | None,
                 end_reason: str = "") -> None:
    """``status`` and ``error`` of a run (or cohort member) that ended: completed when
    ``error`` is None (then ``end_reason``: why, ``Execution.end_reason``), interrupted for
    KeyboardInterrupt (SIGINT, SIGTERM), else failed."""
    group.attrs["status"] = status_of(error)
    group.attrs["error"] = error_text(error)
    if error is None and end_reason:
        group.attrs["end_reason"] = end_reason


def error_text(error: BaseException | str | None) -> str:
    """What ``error`` attributes say: the message, or ``interrupted (SIGTERM)``."""
    if error is None or isinstance(error, str):
        return error or ""
    if isinstance(error, KeyboardInterrupt):
        return f"interrupted ({error.args[0]})" if error.args else "interrupted"
    return str(error) or type(error).__name__


def record_end(path: str | Path, group: str, error: BaseException | None,
               execution: Execution | None = None) -> None:
    """``write_end`` for ``group`` ("/", or a cohort member) of ``path``, reopened out of SWMR
    mode. After another error a file that cannot take it (a failed disk) is left as its last
    flush wrote it, and that error stays the one reported."""
    try:
        with writing(open_for_writing(path)) as file:
            write_end(file[group], error, execution)
    except (OSError, RuntimeError, ResultsWriteError):
        if error is None:
            raise


def status_of(error: BaseException | str | None) -> str:
    if error is None:
        return COMPLETED
    return INTERRUPTED if isinstance(error, KeyboardInterrupt) else FAILED


@contextlib.contextmanager
def writing(file: h5py.File) -> Iterator[h5py.File]:
    """Close ``file`` at the end; a close that fails after another error (a disk that filled
    up) does not hide that error."""
    path = file.filename
    try:
        yield file
    except BaseException:
        try:
            file.close()
        except (OSError, RuntimeError):
            pass
        raise
    try:
        file.close()
    except (OSError, RuntimeError) as error:
        raise _write_error(path, error) from None


def write_provenance(group: h5py.Group, provenance: Mapping[str, Any]) -> None:
    group.attrs["format"] = FORMAT
    group.attrs["format_version"] = FORMAT_VERSION
    group.attrs["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    group.attrs["versions"] = json.dumps(versions())
    group.attrs["status"] = RUNNING
    for key, value in provenance.items():
        group.attrs[key] = value if isinstance(value, (str, int, float, bool)) else json.dumps(
            value)


class Recorder:
    """Observer writing the recorded variables of an execution into an HDF5 group.

    ``started`` creates the datasets and switches the file to SWMR mode; ``finished`` writes the
    rows still buffered. The status and the FMUs' log are the run's to write, in the reopened
    file (``record_end``, ``write_end``).
    """

    def __init__(self, group: h5py.Group, block_rows: int = BLOCK_ROWS,
                 compression: str | None = "gzip", scales: bool = True, journal=None,
                 resume_rows: int | None = None):
        self.group = group
        self.resume_rows = resume_rows  # go on in the datasets there, cut to this many rows
        self.journal = journal  # a cosim.master.journal.Journal: rows buffered where a supervisor
        # can read them if this process dies
        self.scales = scales  # attach /time as dimension scale (not in part files: see merge)
        self.block_rows = block_rows
        self.compression = compression
        self.rows_written = 0
        self._row = 0
        self.disk_full = False  # the run stopped because the disk is nearly full

    # -- observer -----------------------------------------------------------------------------
    def started(self, run: Execution) -> None:
        settings = run.settings
        # row m is due at the communication point where start + m * interval falls
        self.interval = settings.record_interval or 0.0
        self.start, self.landing = settings.start, run.master.landing
        self.signals = run.system.signals
        rows = (int((settings.stop - settings.start) / self.interval + 1e-9) if self.interval
                else settings.steps) + 1
        chunk = (min(self.block_rows, rows),)
        options = {"chunks": chunk, "maxshape": (None,), "dtype": "f8"}
        if self.compression:
            options.update(compression=self.compression, compression_opts=1, shuffle=True)
        resuming = self.resume_rows is not None
        self.time = self.group["time"] if resuming else self._time_dataset(options)
        instances = self.group.require_group("instances")
        index, self.datasets, self.columns = [], [], []
        reduced: dict[str, tuple[list[int], list[int]]] = {}
        layout = run.layout
        for name in run.system.local:
            variables = settings.record.get(name, ())
            if not variables:
                continue
            group = instances[name] if resuming else self._instance_group(instances, name, run)
            for variable in variables:
                shape = layout.shapes[name][variable]  # () for a scalar
                dataset = (group[variable] if resuming else
                           self._variable_dataset(group, run.graph.fmu(name).variables[variable],
                                                  _array_options(options, shape), shape,
                                                  set(variables)))
                self.datasets.append(dataset)
                slots = layout.indices(name, variable)
                mode = settings.record_reduce.get(name, {}).get(variable, "last")
                if self.interval and mode != "last":
                    dataset.attrs["reduction"] = mode
                    columns, signal_slots = reduced.setdefault(mode, ([], []))
                    columns.extend(range(len(index), len(index) + len(slots)))
                    signal_slots.extend(slots)
                self.columns.append((len(index), len(index) + len(slots), shape))
                index.extend(slots)
        if resuming:  # the rows after the checkpoint go: they are computed again
            for dataset in (self.time, *self.datasets):
                dataset.resize((self.resume_rows, *dataset.shape[1:]))
            self.rows_written = self.resume_rows
        self.index = np.array(index, dtype=np.intp)
        self.reductions = decimation.reductions(reduced)
        self.due = self._due(self.rows_written)
        if self.scales and not resuming:
            attach_time_scale(self.group)
        if self.journal is None:
            self.buffer = np.empty((self.block_rows, len(index)))
            self.time_buffer = np.empty(self.block_rows)
            self.rows_state = memoryview(bytearray(8)).cast("q")
        else:
            names = [self.time.name] + [dataset.name for dataset in self.datasets]
            self.time_buffer, self.buffer = self.journal.rows(
                self.group.file.filename, self.group.name, names, self.block_rows,
                self.rows_written, widths=[stop - start for start, stop, _ in self.columns])
            self.rows_state = self.journal.position[ROWS:ROWS + 1]
        self.group.file.swmr_mode = True  # on disk now; from here on rows are only appended

    def _time_dataset(self, options: dict) -> h5py.Dataset:
        time = self.group.create_dataset("time", shape=(0,), **options)
        time.attrs["units"] = "s"
        time.attrs["long_name"] = "simulation time (communication points)"
        return time

    def _instance_group(self, instances: h5py.Group, name: str, run: Execution) -> h5py.Group:
        fmu = run.graph.fmu(name)
        group = instances.create_group(name)
        group.attrs["fmu"] = fmu.path.name
        group.attrs["fmu_sha256"] = fmu.sha256
        group.attrs["model_name"] = fmu.model_name
        group.attrs["scale"] = run.graph.scale(name)
        group.attrs["parameters"] = json.dumps(run.parameters.get(name, {}))
        return group

    def _variable_dataset(self, group: h5py.Group, var, options: dict,
                          shape: tuple[int, ...], recorded: set[str]) -> h5py.Dataset:
        """A recorded variable's dataset; its scales come with ``attach_time_scale``."""
        dataset = group.create_dataset(var.name, **options)
        describe_variable(dataset, var, f"{group.name.rsplit('/', 1)[-1]}.{var.name}")
        if shape:
            dataset.attrs["array_dimensions"] = json.dumps(
                _dimension_names(var, len(shape), recorded))
        return dataset

    def _due(self, row: int) -> float:
        """When row number ``row`` is recorded (every point: at once)."""
        return self.landing(self.start + row * self.interval) if self.interval else -np.inf

    def stepped(self, time: float) -> None:
        for reduction in self.reductions:
            decimation.accumulate(reduction, self.signals)
        if time < self.due:
            return
        row = self._row
        np.take(self.signals, self.index, out=self.buffer[row])
        for reduction in self.reductions:
            decimation.emit(reduction, self.buffer[row])
        self.time_buffer[row] = time
        self._row = row + 1
        self.rows_state[0] += 1
        if self.interval:  # the next point of the interval's grid after this one (a master
            # with steps longer than the interval records each of its points)
            self.due = self._due(math.floor((time - self.start) / self.interval + 1e-9) + 1)
        if self._row == self.block_rows:
            self.flush()

    def finished(self, error: BaseException | None) -> None:
        if isinstance(error, ResultsWriteError) and not self.disk_full:
            return  # a write failed: HDF5's state is not to be trusted; the file on disk holds
            # what the last flush wrote
        try:
            if hasattr(self, "buffer"):
                self.flush()
        except ResultsWriteError:
            if error is None:
                raise
            # else keep the first error; the file holds what its last flush wrote

    # -- writing ------------------------------------------------------------------------------
    def flush(self) -> None:
        """Append the buffered rows to the datasets and flush the file."""
        rows = self._row
        if rows == 0:
            return
        start, stop = self.rows_written, self.rows_written + rows
        try:
            self.time.resize((stop,))
            self.time[start:stop] = self.time_buffer[:rows]
            block = self.buffer[:rows]
            for (first, last, shape), dataset in zip(self.columns, self.datasets, strict=True):
                dataset.resize((stop, *shape))
                dataset[start:stop] = block[:, first:last].reshape(rows, *shape) if shape \
                    else block[:, first]
            self.group.file.flush()
        except (OSError, RuntimeError) as error:
            raise _write_error(self.group.file.filename, error) from None
        self.rows_written = stop
        self._row = 0
        self.rows_state[0] = stop << ROW_BITS  # one store: the file has them, none pending
        free = _free_bytes(self.group.file.filename)
        if free < MARGIN_BYTES + 2 * self.buffer.nbytes and not self.disk_full:
            self.disk_full = True  # stop while the rest (status, verdict) still fits
            last = self.time_buffer[rows - 1]
            raise ResultsWriteError(
                f"the disk holding the results file {self.group.file.filename} is full "
                f"({free / 1e6:.1f} MB left): the run stopped at t = {last:.9g} s; every row "
                "up to there is in the file")


def describe_variable(dataset: h5py.Dataset, var, name: str) -> None:
    """The attributes of a recorded variable: CF ``units`` and ``long_name`` (what xarray and
    netCDF tools read), and what the FMU declares of it."""
    if var.unit:
        dataset.attrs["units"] = var.unit
    if var.display_unit:
        dataset.attrs["display_unit"] = var.display_unit
    dataset.attrs["long_name"] = var.description or name
    dataset.attrs["causality"] = var.causality
    dataset.attrs["type"] = var.type


def is_recorded(dataset: h5py.Dataset) -> bool:
    """A recorded variable, not one of the dimension scales beside it (time, array indices)."""
    return not dataset.is_scale


def _dimension_names(var, rank: int, recorded: set[str]) -> list[str]:
    """Names of an FMI 3 array's dimensions after time: the structural parameter that sizes one
    (arrays sized by the same parameter share it), else ``<variable>_dim<k>``."""
    names = []
    for k in range(rank):
        declared = var.dimensions[k] if k < len(var.dimensions) else None
        names.append(declared if isinstance(declared, str) and declared not in recorded
                     else f"{var.name}_dim{k + 1}")
    return names


def _attach_array_dimensions(instance: h5py.Group, dataset: h5py.Dataset) -> None:
    """Each of an array's dimensions after time as a dimension scale beside it holding
    0 … size-1 (netCDF-4 wants a scale for every dimension; xarray then names them)."""
    names = json.loads(dataset.attrs["array_dimensions"])
    for k, (name, size) in enumerate(zip(names, dataset.shape[1:], strict=True), start=1):
        if name not in instance:
            scale = instance.create_dataset(name, data=np.arange(size, dtype=np.int64))
            scale.attrs["long_name"] = f"index along {name}"
            scale.make_scale(name)
        if not len(dataset.dims[k]):
            dataset.dims[k].attach_scale(instance[name])


def _array_options(options: dict, shape: tuple[int, ...]) -> dict:
    """Dataset options for a variable of ``shape``: time first, then the array's dimensions."""
    return {**options, "shape": (0, *shape), "maxshape": (None, *shape),
            "chunks": (options["chunks"][0], *shape)}


def _free_bytes(path: str) -> int:
    try:
        info = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return 1 << 62
    return info.f_bavail * info.f_frsize


def _write_error(path: str, error: Exception) -> ResultsWriteError:
    """One sentence for a failed HDF5 write (HDF5 puts the errno deep in its message)."""
    found = re.search(r"errno = (\d+)", str(error))
    reason = os.strerror(int(found.group(1))) if found else str(error).split("(")[0].strip()
    return ResultsWriteError(f"cannot write the results file {path}: {reason}; it keeps the "
                             "rows written before")


LOG_ENTRY = np.dtype([("time", "f8"), ("status", h5py.string_dtype()),
                      ("category", h5py.string_dtype()), ("message", h5py.string_dtype())])


def write_log(group: h5py.Group, execution: Execution) -> None:
    """What the FMUs said and printed (bounded: ``cosim.fmi.fmu.MessageLog``,
    ``cosim.fmi.capture``):
    ``log/instances/<instance>`` (time, status, category, message) per local instance,
    ``log/output`` the lines printed to stdout/stderr during the run."""
    log = group.require_group("log")
    instances = log.require_group("instances")
    for name, instance in execution.system.instances.items():
        messages = instance.messages
        if name in instances:
            del instances[name]
        dataset = instances.create_dataset(name, data=np.array(messages.kept(),
                                                               dtype=LOG_ENTRY))
        dataset.attrs["messages"] = messages.count
        dataset.attrs["dropped"] = messages.dropped
    output = execution.output
    if "output" in log:
        del log["output"]
    dataset = log.create_dataset("output", data=np.array(output.kept(), dtype=object),
                                 dtype=h5py.string_dtype(), maxshape=(None,))
    dataset.attrs["lines"] = output.lines
    dataset.attrs["bytes"] = output.bytes


def write_master(group: h5py.Group, execution: Execution) -> None:
    """What the master did: ``master/`` with the communication steps taken (attribute
    ``steps``) and, from a master that keeps a log (``cosim.master.adaptive.MasterLog``), its
    columns and attributes; from a fixed-step one, the FMU steps per instance (multirate)."""
    if "master" in group:
        del group["master"]
    master = group.create_group("master")
    master.attrs["steps"] = execution.steps
    log = getattr(execution.master, "log", None)
    if log is None:
        counted = getattr(execution.master, "instance_steps", None)  # a fixed-step master
        if counted is not None:
            master.attrs["instance_steps"] = json.dumps(counted(execution.steps))
        return
    for name, values in log.datasets().items():
        master.create_dataset(name, data=values)
    for name, value in log.attributes().items():
        master.attrs[name] = value


def attach_time_scale(group: h5py.Group) -> None:
    """Make ``group/time`` the dimension scale of every recorded dataset under it, link it
    into each instance's group (where xarray looks for a group's coordinates), and give FMI 3
    arrays' other dimensions their scales."""
    if "time" not in group:
        return
    time = group["time"]
    if not time.is_scale:
        time.make_scale("time")
    for instance in group.get("instances", {}).values():
        if "time" in instance and instance["time"] != time and instance["time"].is_scale:
            del instance["time"]  # a copy of a part file's time, not this file's
        for dataset in instance.values():
            if not is_recorded(dataset):
                continue
            if not any(time == scale for scale in dataset.dims[0].values()):
                dataset.dims[0].attach_scale(time)
            if "array_dimensions" in dataset.attrs:
                _attach_array_dimensions(instance, dataset)
        if "time" not in instance:
            instance["time"] = time


def recover(path: str | Path, pending: PendingRows | None, status: str, error: str,
            groups: tuple[str, ...] = ("/",)) -> float | None:
    """After the process writing ``path`` died: append the rows it had computed but not
    written (``pending``, from its journal), and record in ``groups`` how the run ended.

    Returns the time of the last row in the file (None: no rows).
    """
    clear_writer_flags(path)
    with h5py.File(path, "r+") as file:
        if pending is not None and len(pending.time):
            start = pending.rows_in_file
            stop = start + len(pending.time)
            edges = np.cumsum([0, *pending.widths])
            columns = [pending.time] + [pending.values[:, a:b]
                                        for a, b in zip(edges[:-1], edges[1:], strict=True)]
            for name, values in zip(pending.datasets, columns, strict=True):
                dataset = file[name]
                shape = dataset.shape[1:]
                dataset.resize((stop, *shape))
                dataset[start:stop] = values.reshape(len(values), *shape)
        for group in groups:
            file[group].attrs["status"] = status
            file[group].attrs["error"] = error
        time = (file.get(pending.datasets[0]) if pending is not None
                else file[groups[0]].get("time"))
        return float(time[-1]) if time is not None and len(time) else None
