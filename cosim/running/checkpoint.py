"""Checkpoints: a run's whole state at a communication point, saved, and a run resumed from it.

With ``checkpoint: {every: 5}`` in a scenario, every 5 s of simulated time the run saves, in
``<results file>.checkpoint`` (HDF5, replaced atomically):

- every instance's serialised FMU state (``fmi2SerializeFMUstate``; in any order, by name) and
  the signal array (the values the instances exchange, with their unit conversions applied
  at the next gather): ``System.snapshot``;
- the communication point (its time, and the steps taken to reach it) and how many rows the
  results file holds then (its recorder flushed first).

That is the whole state of a fixed-step run: ``Execution`` resumes it by instantiating and
initialising the instances as usual, putting each back into its saved state, restoring the
signal array (``System.restore``) and stepping on from the saved time; the recorder cuts the
results file back to the saved rows and appends. Results equal an uninterrupted run's bit for
bit, and, because the checkpoint holds every instance and the whole array, a distributed run
resumes at any rank count (``gather`` collects the ranks' parts on rank 0, which writes the file).
"""

from __future__ import annotations

import datetime
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
                scenario_sha256=str(file.attrs["scenario_sha256"]))
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
    holds every row up to the checkpoint. ``gather``: under MPI, collects the ranks' states
    and signal arrays on rank 0 (returns None elsewhere); in one process the identity.
    """

    def __init__(self, path: Path, every: float, scenario_sha256: str,
                 recorder, gather: Callable | None = None):
        self.path = path
        self.every = every
        self.scenario_sha256 = scenario_sha256
        self.recorder = recorder
        self.gather = gather or (lambda states, signals: (states, signals))
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
        gathered = self.gather(*self.run.system.snapshot())
        if gathered is not None:
            states, signals = gathered
            write_checkpoint(self.path, Checkpoint(self.run.steps, time,
                                                   self.recorder.rows_written, signals, states,
                                                   self.scenario_sha256))
        self.saved += 1
        self.seconds += clock.perf_counter() - began

    def finished(self, error) -> None:
        pass
