"""A run's journal: what a supervising process can still read after the worker running it died.

The journal is a small file mapped into memory (``mmap``) by the worker and read by its
supervisor (``cosim.running.supervise``). It holds:

- the **position**: phase, communication step, simulation time, and which instance is in which
  FMI call (written by the execution and the master before every call; a plain store into
  shared memory, ~20 ns); a supervisor reads it to name the instance, call and time of a crash,
  and to see that a call has not returned (the watchdog);
- what a **progress** display needs: the run's start and stop time, a cohort's members done,
  in all and failed (written once per run or member, never in the step loop);
- a **stop request**: the worker's signal handler sets it, the execution stops at the next
  communication point (an exception raised inside an FMU's own Python code would become that
  FMU's error instead);
- the **rows** the recorder has buffered but not yet written to HDF5, and how many rows the
  HDF5 file holds (one 64-bit word, so a worker killed at any instant leaves it consistent); a
  supervisor appends them to the file after a crash, so no computed row is lost.

What the rows belong to (file, group, dataset names) is described once per recorder in a JSON
file beside the journal. This module knows nothing of FMUs, masters or HDF5.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MAGIC = 0x636F73696D6A6E6C  # "cosimjnl"
SLOTS = 16  # int64 words of the position header
# the position: indices into the int64 slots (TIME is a float64 slot)
MAGIC_SLOT, PHASE, STEP, TIME, CALL, ROWS, RECORDER, FINISHED, STOP, CALL_TIMEOUT = range(10)
# what a progress display needs: the run's time span (floats), a cohort's members
RUN_START, RUN_STOP, MEMBERS_DONE, MEMBERS_TOTAL, MEMBERS_FAILED = range(10, 15)
PHASES = ("starting", "instantiating", "initialising", "stepping", "finishing")
STARTING, INSTANTIATING, INITIALISING, STEPPING, FINISHING = range(len(PHASES))
CALLS = ("set-up (instantiate, parameters, initialisation mode)", "fmi2SetReal (inputs)",
         "fmi2DoStep", "fmi2GetReal (outputs)")
SET_INPUTS, DO_STEP, GET_OUTPUTS = 1, 2, 3
ROW_BITS = 24  # ROWS = rows in the file << ROW_BITS | rows buffered
HEADER_BYTES = SLOTS * 8


def call_code(instance: int, call: int) -> int:
    """The CALL slot's value while instance number ``instance`` is in ``call``."""
    return 1 + instance * 4 + call


def call_codes(instances: Sequence[str], local: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """Each of ``local``'s CALL codes (set-up, set inputs, step, get outputs), an instance's
    number being its position in ``instances`` (every instance of the run)."""
    number = {name: i for i, name in enumerate(instances)}
    return {name: tuple(call_code(number[name], call) for call in range(4)) for name in local}


def private_position() -> memoryview:
    """Position slots nobody else reads: what a run writes to when it is not supervised."""
    return memoryview(bytearray(HEADER_BYTES)).cast("q")


class Journal:
    """The worker's side: a mapped file holding the position and the recorder's row buffer."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.ftruncate(self._fd, HEADER_BYTES)
        self._header = mmap.mmap(self._fd, HEADER_BYTES)
        self.position = memoryview(self._header).cast("q")
        self.time_slot = memoryview(self._header).cast("d")
        self.position[MAGIC_SLOT] = MAGIC
        self._areas: list[mmap.mmap] = []  # kept mapped: old recorders may still hold views
        self._recorders = 0

    def begin(self, file: str | Path, group: str) -> None:
        """A run into ``group`` of ``file`` starts (a whole scenario, or a cohort member)."""
        self.position[RECORDER] = 0
        self.position[CALL] = 0
        self.position[PHASE] = STARTING
        _write_json(self.path.with_suffix(".task.json"),
                    {"file": str(Path(file).resolve()), "group": group})

    def limit_calls(self, seconds: float) -> None:
        """How long an FMI call may take before the supervisor's watchdog calls it a hang."""
        self.time_slot[CALL_TIMEOUT] = seconds

    def plan(self, start: float, stop: float) -> None:
        """The simulated time span of the run (or of each cohort member)."""
        self.time_slot[RUN_START] = start
        self.time_slot[RUN_STOP] = stop

    def members(self, done: int, total: int, failed: int) -> None:
        """A cohort's progress: members finished, in all, and failed so far."""
        self.position[MEMBERS_DONE] = done
        self.position[MEMBERS_TOTAL] = total
        self.position[MEMBERS_FAILED] = failed

    def announce_run(self, run_id: str) -> None:
        """The identifier every rank of this MPI run shares (its supervisors meet under it)."""
        _write_json(self.path.with_suffix(".run.json"), run_id)

    def announce_results(self, path: str | Path) -> None:
        """The results file this run writes (under MPI, rank 0's partial main file: its
        supervisor completes it after a failure)."""
        _write_json(self.path.with_suffix(".results.json"), str(Path(path).resolve()))

    def describe_instances(self, names: list[str]) -> None:
        """Which instance each number in the CALL slot stands for."""
        _write_json(self.path.with_suffix(".instances.json"), names)

    def rows(self, file: str, group: str, datasets: list[str], block_rows: int,
             rows_in_file: int = 0, widths: list[int] | None = None) -> tuple:
        """Buffers for a recorder's rows, in the journal: ``(time (n,), values (n, columns))``.

        ``file``/``group``/``datasets``: where the rows go (dataset paths relative to ``group``;
        the first is the time); ``widths``: columns per dataset after the time (an array's
        element count; default 1 each). The recorder then keeps ``ROWS`` up to date.
        """
        widths = [1] * (len(datasets) - 1) if widths is None else list(widths)
        columns = sum(widths)
        size = HEADER_BYTES + block_rows * (columns + 1) * 8
        if not self._areas or size > len(self._areas[-1]):
            os.ftruncate(self._fd, max(size, os.fstat(self._fd).st_size))
            self._areas.append(mmap.mmap(self._fd, size))
        import numpy as np

        self._recorders += 1
        _write_json(self._description(self._recorders), {
            "file": str(Path(file).resolve()), "group": group, "datasets": datasets,
            "block_rows": block_rows, "widths": widths})
        self.position[ROWS] = rows_in_file << ROW_BITS
        self.position[RECORDER] = self._recorders
        area = np.frombuffer(self._areas[-1], dtype=np.float64, offset=HEADER_BYTES,
                             count=block_rows * (columns + 1))
        return area[:block_rows], area[block_rows:].reshape(block_rows, columns)

    def _description(self, number: int) -> Path:
        return self.path.with_suffix(f".recorder-{number}.json")

    def finish(self) -> None:
        """Say the worker ended on its own (whatever the run's outcome)."""
        self.position[FINISHED] = 1


def _write_json(path: Path, data) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data), encoding="utf-8")
    os.replace(temporary, path)


@dataclass(frozen=True)
class Position:
    """Where a worker was, read from its journal."""

    phase: str
    step: int
    time: float
    instance: str | None
    call: str | None
    finished: bool
    marker: tuple[int, int]  # changes with every call and step: the watchdog compares it
    call_timeout: float  # s; 0 until the worker has read the scenario
    start: float = 0.0  # s: the run's time span (0, 0 until the worker has read the scenario)
    stop: float = 0.0
    members: tuple[int, int, int] = (0, 0, 0)  # a cohort: done, total, failed


@dataclass(frozen=True)
class PendingRows:
    """Rows a worker computed but had not written: where they go and their values."""

    file: Path
    group: str
    datasets: list[str]
    rows_in_file: int
    time: object  # numpy arrays: (rows,) and (rows, columns)
    values: object
    widths: list[int]  # columns per dataset after the time (an array's element count)


class JournalReader:
    """The supervisor's side: reads a worker's journal (while it runs, or after it died)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _words(self, size: int = -1) -> bytes | None:
        try:
            with open(self.path, "rb") as stream:
                return stream.read(size)
        except FileNotFoundError:
            return None

    def position(self) -> Position | None:
        data = self._words(HEADER_BYTES)
        if data is None or len(data) < HEADER_BYTES:
            return None
        words = struct.unpack(f"{SLOTS}q", data[:HEADER_BYTES])
        if words[MAGIC_SLOT] != MAGIC:
            return None
        floats = struct.unpack(f"{SLOTS}d", data[:HEADER_BYTES])
        time = floats[TIME]
        code = words[CALL]
        instance = call = None
        if code > 0:
            names = _read_json(self.path.with_suffix(".instances.json")) or []
            number, kind = divmod(code - 1, 4)
            instance = names[number] if number < len(names) else f"#{number}"
            call = CALLS[kind]
        phase = words[PHASE]
        return Position(phase=PHASES[phase] if 0 <= phase < len(PHASES) else "?",
                        step=words[STEP], time=time, instance=instance, call=call,
                        finished=bool(words[FINISHED]), marker=(words[STEP], code),
                        call_timeout=floats[CALL_TIMEOUT], start=floats[RUN_START],
                        stop=floats[RUN_STOP], members=(words[MEMBERS_DONE],
                                                        words[MEMBERS_TOTAL],
                                                        words[MEMBERS_FAILED]))

    def run_id(self) -> str | None:
        """The MPI run's identifier, once the worker has it (``Journal.announce_run``)."""
        return _read_json(self.path.with_suffix(".run.json"))

    def results(self) -> Path | None:
        """The results file the worker announced (``Journal.announce_results``), or None."""
        found = _read_json(self.path.with_suffix(".results.json"))
        return None if found is None else Path(found)

    def task(self) -> tuple[Path, str] | None:
        """``(file, group)`` of the run the worker was doing, or None."""
        task = _read_json(self.path.with_suffix(".task.json"))
        return None if task is None else (Path(task["file"]), task["group"])

    def pending_rows(self) -> PendingRows | None:
        """The active recorder's buffered rows, or None (no recorder, nothing pending)."""
        data = self._words()
        if data is None or len(data) < HEADER_BYTES:
            return None
        import numpy as np

        words = struct.unpack(f"{SLOTS}q", data[:HEADER_BYTES])
        number = words[RECORDER]
        if words[MAGIC_SLOT] != MAGIC or number < 1:
            return None
        description = _read_json(self.path.with_suffix(f".recorder-{number}.json"))
        if description is None:
            return None
        state = words[ROWS]
        in_file, buffered = state >> ROW_BITS, state & ((1 << ROW_BITS) - 1)
        widths = description.get("widths") or [1] * (len(description["datasets"]) - 1)
        block, columns = description["block_rows"], sum(widths)
        area = np.frombuffer(data, dtype=np.float64, offset=HEADER_BYTES,
                             count=block * (columns + 1))
        return PendingRows(file=Path(description["file"]), group=description["group"],
                           datasets=description["datasets"], rows_in_file=in_file,
                           time=area[:buffered].copy(),
                           values=area[block:].reshape(block, columns)[:buffered].copy(),
                           widths=widths)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
