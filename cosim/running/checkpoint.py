"""Checkpoints: a run's whole state at a communication point, saved, and a run resumed from it.

With ``checkpoint: {every: 5}`` in a scenario, every 5 s of simulated time the run saves, in
``<results file>.checkpoint`` (HDF5, replaced atomically):

- every instance's serialised FMU state (``fmi2SerializeFMUstate``; in any order, by name) and
  the signal array (the values the instances exchange, with their unit conversions applied
  at the next gather): ``System.snapshot``;
- the communication point (its time, and the steps taken to reach it) and how many rows the
  results file holds then (its recorder flushed first);
- the master's own state (``Master.state``, JSON in the attribute ``master``): the adaptive
  master's next step, the points it extrapolates from, each value's magnitude so far and its
  log; the multirate bookkeeping (``cosim.master.multirate``). Each rank gives the entries
  valid on it, merged by ``merge_master_states``.

That is the whole state of a run: ``Execution`` resumes it by instantiating and
initialising the instances as usual, putting each back into its saved state, restoring the
signal array (``System.restore``) and the master's state (``set_state``), and stepping on
from the saved time; the recorder cuts the
results file back to the saved rows and appends. Results equal an uninterrupted run's bit for
bit, and, because the checkpoint holds every instance and the whole array, a distributed run
resumes at any rank count (``gather`` collects the ranks' parts on rank 0, which writes the file).
"""

from __future__ import annotations

import datetime
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np

from cosim.errors import Problem, ScenarioError, SimulationError

FORMAT = "cosim-checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    """A run's state at communication point ``step``."""

    step: int  # communication steps taken to reach it
    time: float
    rows: int  # rows recorded up to that point
    signals: np.ndarray
    states: dict[str, bytes]  # instance -> serialised FMU state
    scenario_sha256: str
    master: dict | None = None  # the master's ``state()`` merged over the ranks


def merge_master_states(parts: list[dict]) -> dict:
    """One master state from every rank's: ``common`` from the first, each table the union
    of the ranks' entries (an entry two ranks give is the same value)."""
    tables: dict[str, dict] = {}
    for part in parts:
        for key, table in part["tables"].items():
            tables.setdefault(key, {}).update(table)
    return {"common": parts[0]["common"], "tables": tables}


def checkpoint_path(results: str | Path) -> Path:
    return Path(f"{results}.checkpoint")


def write_checkpoint(path: str | Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically (a reader sees the old one or the new)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with h5py.File(temporary, "w") as file:
        file.attrs["format"] = FORMAT
        file.attrs["format_version"] = FORMAT_VERSION
        file.attrs["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        file.attrs["step"] = checkpoint.step
        file.attrs["time"] = checkpoint.time
        file.attrs["rows"] = checkpoint.rows
        file.attrs["scenario_sha256"] = checkpoint.scenario_sha256
        if checkpoint.master is not None:
            file.attrs["master"] = json.dumps(checkpoint.master)
        file.create_dataset("signals", data=checkpoint.signals)
        states = file.create_group("states")
        for name, data in sorted(checkpoint.states.items()):
            states.create_dataset(name, data=np.frombuffer(data, dtype=np.uint8))
    os.replace(temporary, path)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """The checkpoint at ``path``; a ``SimulationError`` saying why it cannot be used."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as file:
            if file.attrs.get("format") != FORMAT:
                raise SimulationError(f"{path} is not a cosim checkpoint")
            if int(file.attrs["format_version"]) > FORMAT_VERSION:
                raise SimulationError(f"{path} was written by a newer cosim")
            return Checkpoint(
                step=int(file.attrs["step"]), time=float(file.attrs["time"]),
                rows=int(file.attrs["rows"]), signals=file["signals"][()],
                states={name: bytes(data[()]) for name, data in file["states"].items()},
                scenario_sha256=str(file.attrs["scenario_sha256"]),
                master=json.loads(file.attrs["master"]) if "master" in file.attrs else None)
    except FileNotFoundError:
        raise SimulationError(f"no checkpoint at {path}: the run wrote none (add "
                              "'checkpoint: {every: <seconds>}' to the scenario)") from None
    except (OSError, KeyError) as error:
        raise SimulationError(f"cannot read the checkpoint {path}: {error}") from None


def checkpoint_to_resume(results: str | Path, scenario) -> Checkpoint:
    """The checkpoint beside ``results``, checked against the ``scenario`` being run."""
    checkpoint = read_checkpoint(checkpoint_path(results))
    if checkpoint.scenario_sha256 != scenario.sha256:
        raise ScenarioError(Problem(
            "the scenario file changed since the checkpoint was saved", file=str(scenario.file),
            hint="resume with the scenario as it was, or run it again without --resume"))
    return checkpoint


class Checkpointer:
    """Observer: saves a checkpoint every ``every`` seconds of simulated time.

    ``recorder``: the run's ``cosim.results.recorder.Recorder``, flushed first so the results file
    holds every row up to the checkpoint. ``gather``: under MPI, collects the ranks' states,
    signal arrays and master states on rank 0 (returns None elsewhere); in one process the
    identity.
    """

    def __init__(self, path: Path, every: float, scenario_sha256: str,
                 recorder, gather: Callable | None = None):
        self.path = path
        self.every = every
        self.scenario_sha256 = scenario_sha256
        self.recorder = recorder
        self.gather = gather or (lambda states, signals, master: (states, signals, master))
        self.saved = 0  # checkpoints written
        self.seconds = 0.0  # spent writing them

    def started(self, run) -> None:
        self.run = run
        settings = run.settings
        self.start, self.landing = settings.start, run.master.landing
        self.last = self.landing(settings.stop)  # the end is not worth one: the run is over
        interval = settings.record_interval
        if interval:  # only at recorded points: between two, the recorder holds part of an
            # interval it reduces (record.reduce), which a checkpoint does not keep; so every
            # is the least common multiple of itself and the record interval
            ratio = Fraction(self.every / interval).limit_denominator(1000)
            self.every = interval * max(1, ratio.numerator)
        # the next one after the run's first point (a resumed run does not save it again)
        self.count = int((run.time - self.start) / self.every + 1e-9) + 1
        self.due = self.landing(self.start + self.count * self.every)

    def stepped(self, time: float) -> None:
        if time < self.due:
            return
        self.count = int((time - self.start) / self.every + 1e-9) + 1
        self.due = self.landing(self.start + self.count * self.every)
        if time >= self.last:
            return
        import time as clock

        began = clock.perf_counter()
        self.recorder.flush()  # the results file holds every row up to here
        keeping = getattr(self.run.master, "state", None)
        gathered = self.gather(*self.run.system.snapshot(),
                               None if keeping is None else keeping())
        if gathered is not None:
            states, signals, master = gathered
            write_checkpoint(self.path, Checkpoint(self.run.steps, time,
                                                   self.recorder.rows_written, signals, states,
                                                   self.scenario_sha256, master))
        self.saved += 1
        self.seconds += clock.perf_counter() - began

    def finished(self, error) -> None:
        pass
