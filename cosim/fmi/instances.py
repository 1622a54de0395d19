"""The instance interface, and which class runs an FMU instance in this process: by FMI version
and interface.

``InstanceLike`` is what everything above the FMI layer asks of an instance (``System``, the
master, the execution, the recorder, checkpoints); ``cosim.fmi.isolation.make_instance`` is the
factory ``System`` calls (an ``InstanceFactory``: another can be handed to an ``Execution``).

``new_instance(fmu, name, interface, solver)``: FMI 2.0 co-simulation → ``cosim.fmi.fmu.Instance``;
FMI 3.0 co-simulation → ``cosim.fmi.fmi3.Instance3``; model exchange (FMI 2 or 3) →
``cosim.fmi.model_exchange.ModelExchange`` (integrated by ``solver``); a measured source (no
FMU: time series from a file) → ``cosim.fmi.measured.MeasuredSource``. All have the methods of
``cosim.fmi.fmu.Instance``. Scheduled execution is not run (``CouplingGraph.add_instance`` refuses
it; ``docs/fmi.md`` says why).
``cosim.fmi.isolation.make_instance`` calls it (directly, or in a child process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from cosim.fmi.fmu import (
    CO_SIMULATION,
    FMU,
    MODEL_EXCHANGE,
    SCHEDULED_EXECUTION,
    Instance,
    MessageLog,
)
from cosim.fmi.measured import MEASURED, MeasuredSource


class InstanceLike(Protocol):
    """One instance of a model, as the runtime drives it. Lifecycle: ``instantiate`` → ``set``
    (parameters, start values) → ``bind`` → ``setup_experiment`` →
    ``enter_initialization_mode`` → ``exit_initialization_mode`` → (``set_inputs`` →
    ``do_step`` → ``get_outputs``) … → ``close``. Its calls raise ``SimulationError``."""

    name: str
    messages: MessageLog  # what it said during the run (the results file's log/)
    ended_at: float | None  # when it ended the simulation itself (do_step answered True)

    def instantiate(self) -> None: ...

    def set(self, values: Mapping[str, Any]) -> None: ...

    def get(self, names: Iterable[str]) -> dict[str, Any]: ...

    def bind(self, inputs: Sequence[str], outputs: Sequence[str], output_buffer: np.ndarray
             ) -> np.ndarray:
        """Fix the inputs set and the outputs read every step; ``get_outputs`` writes into
        ``output_buffer``; returns the buffer ``set_inputs`` reads, one entry per input."""

    def setup_experiment(self, start: float, stop: float | None = None) -> None: ...

    def enter_initialization_mode(self) -> None: ...

    def exit_initialization_mode(self) -> None: ...

    def set_inputs(self) -> None: ...

    def do_step(self, time: float, step: float) -> bool | None:
        """From ``time`` over ``step``; True when the instance ended the simulation."""

    def get_outputs(self) -> None: ...

    def serialize_state(self) -> bytes: ...

    def restore_state(self, data: bytes) -> None: ...

    def close(self) -> None:
        """Terminate and free, whatever state it is in."""


# (fmu, name, isolation, interface, solver) -> an instance: cosim.fmi.isolation.make_instance
InstanceFactory = Callable[..., InstanceLike]


def default_interface(fmu: FMU) -> str:
    """The interface an instance runs when the scenario does not choose: co-simulation if
    the FMU has it, else model exchange, else scheduled execution."""
    for kind in (CO_SIMULATION, MODEL_EXCHANGE, SCHEDULED_EXECUTION, MEASURED):
        if kind in fmu.interfaces:
            return kind
    raise ValueError(f"{fmu.path} declares no interface")


def new_instance(fmu: FMU, name: str, interface: str | None = None, solver: Any = None
                 ) -> Any:
    """An instance of ``fmu`` in this process, running ``interface`` (None: the default)."""
    interface = interface or default_interface(fmu)
    if interface == MEASURED:
        return MeasuredSource(fmu, name)
    if interface == MODEL_EXCHANGE:
        from cosim.fmi.model_exchange import ModelExchange

        return ModelExchange(fmu, name, solver)
    if interface == SCHEDULED_EXECUTION:
        raise ValueError(f"{name}: scheduled execution is not run (docs/fmi.md)")
    if fmu.fmi3:
        from cosim.fmi.fmi3 import Instance3

        return Instance3(fmu, name)
    return Instance(fmu, name)
