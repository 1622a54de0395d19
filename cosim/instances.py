"""Which class runs an FMU instance in this process: by FMI version and interface.

``new_instance(fmu, name, interface, solver)``: FMI 2.0 co-simulation → ``cosim.fmu.Instance``;
FMI 3.0 co-simulation → ``cosim.fmi3.Instance3``; model exchange (FMI 2 or 3) →
``cosim.model_exchange.ModelExchange`` (integrated by ``solver``). All have the methods of
``cosim.fmu.Instance``. Scheduled execution is not run (``CouplingGraph.add_instance`` refuses
it; ``docs/fmi.md`` says why).
``cosim.isolation.make_instance`` calls it (directly, or in a child process).
"""

from __future__ import annotations

from typing import Any

from cosim.fmu import CO_SIMULATION, FMU, MODEL_EXCHANGE, SCHEDULED_EXECUTION, Instance


def default_interface(fmu: FMU) -> str:
    """The interface an instance runs when the scenario does not choose: co-simulation if
    the FMU has it, else model exchange, else scheduled execution."""
    for kind in (CO_SIMULATION, MODEL_EXCHANGE, SCHEDULED_EXECUTION):
        if kind in fmu.interfaces:
            return kind
    raise ValueError(f"{fmu.path} declares no interface")


def new_instance(fmu: FMU, name: str, interface: str | None = None, solver: Any = None
                 ) -> Any:
    """An instance of ``fmu`` in this process, running ``interface`` (None: the default)."""
    interface = interface or default_interface(fmu)
    if interface == MODEL_EXCHANGE:
        from cosim.model_exchange import ModelExchange

        return ModelExchange(fmu, name, solver)
    if interface == SCHEDULED_EXECUTION:
        raise ValueError(f"{name}: scheduled execution is not run (docs/fmi.md)")
    if fmu.fmi3:
        from cosim.fmi3 import Instance3

        return Instance3(fmu, name)
    return Instance(fmu, name)
