"""Fake instances in memory: models written as a few lines of Python behind the instance
interface (``cosim.fmi.instances.InstanceLike``), so tests of the master and the execution need no
compiler and no FMU build.

A ``FakeModel`` declares its inputs and parameters (with start values), its outputs, which
outputs depend directly on which inputs, and how it computes: ``outputs(v)`` sets the outputs
in ``v`` (all the instance's values by name) from its states and inputs, ``step(v, t, h)``
advances its states. ``fmu(model)`` is the ``FMU`` description a ``CouplingGraph`` takes;
``instances`` is the factory an ``Execution`` takes (``Execution(..., instances=instances)``).
Every instance writes what it is asked, in order, into ``CALLS`` (cleared by ``reset``).

Imported as ``fakes`` (tests/ is on sys.path); not collected by pytest.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosim.errors import SimulationError, StepDiscarded
from cosim.fmi.fmu import MessageLog
from cosim.fmi.fmu_file import CO_SIMULATION, FMU, Variable

CALLS: list[tuple] = []  # (instance, call, time) of every call, in order


def reset() -> None:
    CALLS.clear()


@dataclass(frozen=True)
class FakeModel:
    name: str
    inputs: Mapping[str, float] = field(default_factory=dict)
    outputs: Sequence[str] = ()
    parameters: Mapping[str, float] = field(default_factory=dict)
    feedthrough: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # output -> inputs
    compute: Callable[[dict], None] = lambda v: None  # the outputs from states and inputs
    step: Callable[[dict, float, float], None] = lambda v, t, h: None  # the states, over h
    ends_at: float | None = None  # terminateSimulation once a step reaches this time
    discards_above: float | None = None  # fmi2Discard for a step longer than this
    can_get_and_set_state: bool = True  # canGetAndSetFMUstate (and canSerializeFMUstate)
    variable_step: bool = True  # canHandleVariableCommunicationStepSize


def fmu(model: FakeModel) -> FMU:
    """What the model declares, as an FMU's model description would (the model itself rides
    along in ``description``, where an FMU file's keeps fmpy's)."""
    declared = ([(n, "input", "continuous", v) for n, v in model.inputs.items()]
                + [(n, "output", "continuous", None) for n in model.outputs]
                + [(n, "parameter", "tunable", v) for n, v in model.parameters.items()])
    variables = {name: Variable(name, reference, "Real", causality, variability,
                                "exact" if start is not None else "calculated", None, "",
                                start)
                 for reference, (name, causality, variability, start) in enumerate(declared)}
    dependencies = {name: tuple(model.feedthrough.get(name, ())) for name in model.outputs}
    return FMU(Path(f"{model.name}.fake"), "0" * 64, "2.0", model.name, model.name,
               f"fake-{model.name}", "tests/fakes.py", variables, {}, dependencies,
               dependencies, model.can_get_and_set_state, model.variable_step,
               model.can_get_and_set_state, (), description=model,
               interfaces={CO_SIMULATION: model.name})


def instances(description: FMU, name: str, *_: Any) -> FakeInstance:
    """The instance factory of an ``Execution`` running fake models."""
    return FakeInstance(description, name)


class FakeInstance:
    """One instance of a ``FakeModel``: its values in a dict, its calls in ``CALLS``."""

    def __init__(self, description: FMU, name: str):
        self.name = name
        self.fmu = description
        self.model: FakeModel = description.description
        self.messages = MessageLog()
        self.ended_at: float | None = None
        self.time = 0.0
        self.values: dict[str, float] = {**self.model.inputs, **self.model.parameters,
                                         **dict.fromkeys(self.model.outputs, 0.0)}

    def _call(self, call: str) -> None:
        CALLS.append((self.name, call, self.time))

    def instantiate(self) -> None:
        self._call("instantiate")

    def set(self, values: Mapping[str, Any]) -> None:
        unknown = set(values) - set(self.values)
        if unknown:
            raise SimulationError(f"no variable {sorted(unknown)}", instance=self.name)
        self.values.update(values)

    def get(self, names: Iterable[str]) -> dict[str, Any]:
        self.model.compute(self.values)
        return {n: self.values[n] for n in names}

    def bind(self, inputs: Sequence[str], outputs: Sequence[str], output_buffer: np.ndarray
             ) -> np.ndarray:
        self._inputs, self._outputs, self._out = tuple(inputs), tuple(outputs), output_buffer
        self._in = np.zeros(len(inputs))
        return self._in

    def setup_experiment(self, start: float, stop: float | None = None) -> None:
        self.time = start

    def enter_initialization_mode(self) -> None:
        self._call("enter initialisation")

    def exit_initialization_mode(self) -> None:
        self._call("exit initialisation")

    def set_inputs(self) -> None:
        self._call("set inputs")
        self.values.update(zip(self._inputs, self._in.tolist(), strict=True))

    def get_outputs(self) -> None:
        self._call("get outputs")
        self.model.compute(self.values)
        self._out[:] = [self.values[n] for n in self._outputs]

    def do_step(self, time: float, step: float) -> bool | None:
        self.time = time
        self._call("step")
        if self.model.discards_above is not None and step > self.model.discards_above:
            raise StepDiscarded(f"a step of {step:g} s is too long (fmi2Discard)",
                                instance=self.name, function="fmi2DoStep", time=time)
        self.model.step(self.values, time, step)
        self.time = time + step
        if self.model.ends_at is not None and self.time >= self.model.ends_at - 1e-12:
            self.ended_at = self.time
            return True
        return None

    def serialize_state(self) -> bytes:
        return pickle.dumps((self.values, self.time))

    def restore_state(self, data: bytes) -> None:
        self.values, self.time = pickle.loads(data)

    def close(self) -> None:
        self._call("close")


# -- a few models ---------------------------------------------------------------------------------
def clock(name: str = "clock") -> FakeModel:
    """``time``: its own time; ``echo``: its input ``u`` (no feedthrough: as of its last step)."""
    def step(v: dict, t: float, h: float) -> None:
        v["time"], v["echo"] = t + h, v["u"]
    return FakeModel(name, inputs={"u": 0.0}, outputs=("time", "echo"), step=step)


def integrator(name: str = "integrator", x0: float = 0.0) -> FakeModel:
    """``x' = u``, exact for ``u`` held over a step."""
    def step(v: dict, t: float, h: float) -> None:
        v["state"] += v["u"] * h

    def compute(v: dict) -> None:
        v["x"] = v["state"]
    return FakeModel(name, inputs={"u": 0.0}, outputs=("x",), parameters={"state": x0},
                     compute=compute, step=step)


def gain(name: str = "gain", k: float = 2.0) -> FakeModel:
    """``y = k u + 1``: direct feedthrough."""
    def compute(v: dict) -> None:
        v["y"] = v["k"] * v["u"] + 1.0
    return FakeModel(name, inputs={"u": 0.0}, outputs=("y",), parameters={"k": k},
                     feedthrough={"y": ("u",)}, compute=compute)
