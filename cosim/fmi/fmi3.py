"""FMI 3.0 instances: the same interface as ``cosim.fmi.fmu.Instance``, through the fmi3 C API.

``Instance3`` runs an FMI 3.0 FMU's co-simulation interface (or, for
``cosim.fmi.model_exchange``, its model exchange interface). What differs from FMI 2.0:

- values are typed (``fmi3GetFloat64``, ``fmi3SetInt8`` …, ``Enumeration`` through Int64) and
  a variable may be an array; one call sets or gets a whole array;
- structural parameters (array sizes) are set in configuration mode
  (``fmi3EnterConfigurationMode`` … ``fmi3ExitConfigurationMode``);
- there is no ``setupExperiment``: start and stop time go to ``fmi3EnterInitializationMode``;
- ``fmi3DoStep`` may return early (``earlyReturn``, ``lastSuccessfulTime``) and ask for
  event handling (``eventHandlingNeeded``): when the FMU has an event mode
  (``hasEventMode``) the instance uses it, handles the event (``fmi3EnterEventMode``,
  ``fmi3UpdateDiscreteStates`` until nothing changes, ``fmi3EnterStepMode``) and steps on from
  where the FMU stopped, so the master sees a whole step. ``early_returns`` and
  ``event_times`` say what happened. With ``stop_at_early_return`` (set by the fixed-step
  master where it can roll the system back: ``docs/fmi.md``) it stops at the early return
  instead and leaves its time in ``returned_at``.

Every status goes through ``Instance._check`` (inherited): the one choke point, as for FMI 2.
The hot path (``bind``/``set_inputs``/``do_step``/``get_outputs``) calls the fmi3 functions with
value references and ctypes buffers prepared once; Float64 values go straight from and into
the signal array.
"""

from __future__ import annotations

import ctypes
import itertools
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from cosim.errors import FMUError, Problem, SimulationError, StepDiscarded
from cosim.fmi.fmu import (
    _INSTANCES,
    CO_SIMULATION,
    FMU,
    MODEL_EXCHANGE,
    Instance,
    Variable,
)

CTYPES = {"Float64": ctypes.c_double, "Float32": ctypes.c_float, "Int8": ctypes.c_int8,
          "UInt8": ctypes.c_uint8, "Int16": ctypes.c_int16, "UInt16": ctypes.c_uint16,
          "Int32": ctypes.c_int32, "UInt32": ctypes.c_uint32, "Int64": ctypes.c_int64,
          "UInt64": ctypes.c_uint64, "Boolean": ctypes.c_bool, "Enumeration": ctypes.c_int64}
MAX_EVENT_ITERATIONS = 100  # fmi3UpdateDiscreteStates calls at one event before giving up


def function_type(variable_type: str) -> str:
    """The fmi3Get/Set suffix of a variable type (enumerations use Int64)."""
    return "Int64" if variable_type == "Enumeration" else variable_type


def _platform_tuple() -> str:
    from fmpy import platform_tuple

    return platform_tuple


class Instance3(Instance):
    """One instance of an FMI 3.0 FMU (co-simulation, or model exchange for
    ``cosim.fmi.model_exchange``).

    Shares with the FMI 2 ``Instance`` the lifecycle guards, ``close()``, ``set_inputs``/
    ``get_outputs`` and the status choke point ``_check``; every FMI call here is an fmi3 one.
    """

    keep_state = None  # a rollback keeps this instance's state as bytes (System.keep)
    return_to_kept_state = None

    def __init__(self, fmu: FMU, name: str, interface: str = CO_SIMULATION):
        super().__init__(fmu, name, interface)
        self.structural: dict[str, Any] = {}  # structural parameters set (array sizes)
        self.start_time = 0.0
        self.stop_time: float | None = None
        cs = fmu.description.coSimulation if fmu.description is not None else None
        exchange_only = interface != CO_SIMULATION or cs is None
        self.event_mode_used = bool(not exchange_only and cs.hasEventMode)
        self.early_return_allowed = bool(not exchange_only and cs.mightReturnEarlyFromDoStep)
        self.early_returns = 0  # doStep calls that returned before the end of their step
        # set by a master that ends the whole communication step at an early return
        # (cosim.master.master.FixedStepMaster): do_step then stops there, ``returned_at``
        self.stop_at_early_return = False
        self.returned_at: float | None = None
        self.event_times: deque[float] = deque(maxlen=1000)  # events handled in event mode
        self._environment = next(_ENVIRONMENT_IDS)
        # fmi3DoStep's four results, allocated once (the hot path): eventHandlingNeeded,
        # terminateSimulation, earlyReturn, lastSuccessfulTime
        self._step_results = (ctypes.c_bool(), ctypes.c_bool(), ctypes.c_bool(),
                              ctypes.c_double())
        self._step_pointers = tuple(ctypes.byref(x) for x in self._step_results)

    # -- lifecycle -------------------------------------------------------------------------
    def instantiate(self) -> None:
        """Load the binary and create the FMI 3 instance (``fmi3Instantiate…``)."""
        from fmpy.fmi3 import FMU3Model, FMU3Slave

        self._require("created", "instantiate")
        self._unpack(_platform_tuple())
        loader = FMU3Slave if self.interface == CO_SIMULATION else FMU3Model
        try:
            self._slave = loader(guid=self.fmu.guid, unzipDirectory=str(self.fmu.unzip_dir()),
                                 modelIdentifier=self.fmu.interfaces[self.interface],
                                 instanceName=self.name)
        except Exception as error:
            raise FMUError(Problem(f"cannot load the FMU's binary: {error}",
                                   file=str(self.fmu.path), key=self.name,
                                   hint="the shared library is missing fmi3 functions or was "
                                        "built for another system")) from None
        _INSTANCES[self.name] = self
        _ENVIRONMENTS[self._environment] = self
        self._fn = dict(self._slave._functions)
        resources = (str(self.fmu.unzip_dir() / "resources") + "/").encode()
        from fmpy.fmi3 import fmi3IntermediateUpdateCallback

        if self.interface == CO_SIMULATION:
            component = self._fn["fmi3InstantiateCoSimulation"](
                self.name.encode(), self.fmu.guid.encode(), resources, False, True,
                self.event_mode_used, self.early_return_allowed,
                (ctypes.c_uint * 0)(), 0, self._environment, _log_callback(),
                fmi3IntermediateUpdateCallback())
            function = "fmi3InstantiateCoSimulation"
        elif self.interface == MODEL_EXCHANGE:
            component = self._fn["fmi3InstantiateModelExchange"](
                self.name.encode(), self.fmu.guid.encode(), resources, False, True,
                self._environment, _log_callback())
            function = "fmi3InstantiateModelExchange"
        else:
            raise SimulationError("scheduled execution is not run", instance=self.name)
        if not component:
            raise SimulationError(f"{function} returned NULL", instance=self.name,
                                  function=function, log=list(self.log))
        self._component = component
        self._slave.component = component
        self.phase = "instantiated"

    def setup_experiment(self, start: float, stop: float | None = None) -> None:
        """FMI 3 has no setupExperiment: the times go to ``fmi3EnterInitializationMode``."""
        self._require("instantiated", "setup_experiment")
        self.time, self.start_time, self.stop_time = start, start, stop

    def enter_initialization_mode(self) -> None:
        self._require("instantiated", "enter_initialization_mode")
        stop = self.stop_time
        self._check("fmi3EnterInitializationMode", self._fn["fmi3EnterInitializationMode"](
            self._component, False, 0.0, self.start_time, stop is not None, stop or 0.0))
        self.phase = "initializing"

    def exit_initialization_mode(self) -> None:
        """``fmi3ExitInitializationMode``; in co-simulation with event mode the FMU is then in
        event mode: its initial event is handled and step mode entered."""
        self._require("initializing", "exit_initialization_mode")
        self._check("fmi3ExitInitializationMode",
                    self._fn["fmi3ExitInitializationMode"](self._component))
        self.phase = "stepping"
        if self.interface == CO_SIMULATION and self.event_mode_used:
            self.update_discrete_states()
            self._check("fmi3EnterStepMode", self._fn["fmi3EnterStepMode"](self._component))

    def terminate(self) -> None:
        if self.phase in ("initializing", "stepping"):
            self.phase = "terminated"
            self._check("fmi3Terminate", self._fn["fmi3Terminate"](self._component))

    def free(self) -> None:
        if self._component is not None:
            self._fn["fmi3FreeInstance"](self._component)
            self._component = None
        _ENVIRONMENTS.pop(self._environment, None)
        if self._slave is not None:
            try:
                self._slave.freeLibrary()
            except Exception:  # noqa: BLE001 - a library that will not unload is not our failure
                pass
            self._slave = None
        self.phase = "freed"

    # -- events (co-simulation event mode, model exchange) ------------------------------------
    def update_discrete_states(self) -> tuple[bool, float | None]:
        """In event mode: ``fmi3UpdateDiscreteStates`` until no discrete state needs another
        update; returns (terminateSimulation, next time event or None)."""
        need, terminate, nominals, values, defined = (ctypes.c_bool() for _ in range(5))
        next_time = ctypes.c_double()
        for _ in range(MAX_EVENT_ITERATIONS):
            self._check("fmi3UpdateDiscreteStates", self._fn["fmi3UpdateDiscreteStates"](
                self._component, ctypes.byref(need), ctypes.byref(terminate),
                ctypes.byref(nominals), ctypes.byref(values), ctypes.byref(defined),
                ctypes.byref(next_time)))
            if terminate.value or not need.value:
                return terminate.value, next_time.value if defined.value else None
        raise SimulationError(f"the event did not settle after {MAX_EVENT_ITERATIONS} calls "
                              "of fmi3UpdateDiscreteStates", instance=self.name,
                              function="fmi3UpdateDiscreteStates", time=self.time,
                              log=list(self.log))

    # -- values by name ---------------------------------------------------------------------
    def set(self, values: Mapping[str, Any]) -> None:
        """Set variables by name (arrays as nested lists or numpy arrays), one call per type;
        structural parameters first (they size the arrays), in configuration mode."""
        variables = {name: self._variable(name) for name in values}
        structural = {n: values[n] for n, v in variables.items()
                      if v.causality == "structuralParameter"}
        if structural:
            configuring = self.phase == "instantiated"
            if configuring:
                self._check("fmi3EnterConfigurationMode",
                            self._fn["fmi3EnterConfigurationMode"](self._component))
            try:
                self._set_typed({n: variables[n] for n in structural}, structural)
            finally:
                if configuring:
                    self._check("fmi3ExitConfigurationMode",
                                self._fn["fmi3ExitConfigurationMode"](self._component))
            self.structural.update(structural)
        self._set_typed({n: v for n, v in variables.items() if n not in structural}, values)

    def _set_typed(self, variables: Mapping[str, Variable], values: Mapping[str, Any]) -> None:
        by_type: dict[str, list[tuple[Variable, Any]]] = {}
        for name, var in variables.items():
            by_type.setdefault(function_type(var.type), []).append((var, values[name]))
        for kind, group in by_type.items():
            self._set_group(kind, group)

    def _set_group(self, kind: str, group: list[tuple[Variable, Any]]) -> None:
        refs = (ctypes.c_uint * len(group))(*(v.value_reference for v, _ in group))
        function = f"fmi3Set{kind}"
        if kind == "String":
            data = (ctypes.c_char_p * len(group))(*(str(x).encode() for _, x in group))
            status = self._fn[function](self._component, refs, len(group), data, len(group))
        elif kind == "Binary":
            blobs = [_binary(x) for _, x in group]
            sizes = (ctypes.c_size_t * len(blobs))(*(len(b) for b in blobs))
            buffers = [ctypes.create_string_buffer(b, len(b)) for b in blobs]
            pointers = (ctypes.POINTER(ctypes.c_uint8) * len(blobs))(*(
                ctypes.cast(b, ctypes.POINTER(ctypes.c_uint8)) for b in buffers))
            status = self._fn[function](self._component, refs, len(group), sizes, pointers,
                                        len(group))
        elif kind in CTYPES:
            flat = np.concatenate([np.ravel(np.asarray(x, dtype=np.float64
                                                      if kind.startswith("Float") else None))
                                   for _, x in group])
            data = (CTYPES[kind] * len(flat))(*(flat.tolist()))
            status = self._fn[function](self._component, refs, len(group), data, len(flat))
        else:
            raise SimulationError(f"{group[0][0].name}: variables of type {kind} cannot be "
                                  "set", instance=self.name)
        self._check(function, status)

    def get(self, names: Iterable[str]) -> dict[str, Any]:
        """Get variables by name: scalars as Python values, arrays as numpy arrays."""
        names = list(names)
        result: dict[str, Any] = {}
        groups: dict[str, list[Variable]] = {}
        for name in names:
            var = self._variable(name)
            groups.setdefault(function_type(var.type), []).append(var)
        for kind, group in groups.items():
            refs = (ctypes.c_uint * len(group))(*(v.value_reference for v in group))
            function = f"fmi3Get{kind}"
            if kind == "String":
                data = (ctypes.c_char_p * len(group))()
                self._check(function, self._fn[function](self._component, refs, len(group),
                                                         data, len(group)))
                values = [b.decode() if b else "" for b in data]
            elif kind == "Binary":
                sizes = (ctypes.c_size_t * len(group))()
                data = (ctypes.POINTER(ctypes.c_uint8) * len(group))()
                self._check(function, self._fn[function](self._component, refs, len(group),
                                                         sizes, data, len(group)))
                values = [bytes(data[i][:sizes[i]]) for i in range(len(group))]
            else:
                shapes = [self.fmu.shape(v.name, self.structural) for v in group]
                sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
                data = (CTYPES[kind] * sum(sizes))()
                self._check(function, self._fn[function](self._component, refs, len(group),
                                                         data, sum(sizes)))
                flat = np.ctypeslib.as_array(data).copy() if sizes else np.array([])
                values, offset = [], 0
                for shape, size in zip(shapes, sizes, strict=True):
                    chunk = flat[offset:offset + size]
                    offset += size
                    values.append(chunk.reshape(shape) if shape else chunk[0].item())
            result.update({v.name: x for v, x in zip(group, values, strict=True)})
        return {name: result[name] for name in names}

    # -- the hot path -------------------------------------------------------------------------
    def bind(self, inputs: Sequence[str], outputs: Sequence[str], output_buffer: np.ndarray
             ) -> np.ndarray:
        """As ``Instance.bind``; an array variable takes as many entries as it has elements
        (row-major), so ``output_buffer`` holds the outputs' sizes added up."""
        inputs_size = sum(self.fmu.size(n, self.structural) for n in inputs)
        self._inputs = _Port3(self, list(inputs), np.zeros(inputs_size))
        self._outputs = _Port3(self, list(outputs), output_buffer)
        return self._inputs.values

    def do_step(self, time: float, step: float) -> None:
        """``fmi3DoStep`` from ``time`` over ``step``; an early return is followed (after the
        event it announces, in event mode) by further ``fmi3DoStep`` calls to the step's end."""
        end = time + step
        self.returned_at = None
        now, size = time, step  # the step as given: (time + step) - time may round otherwise
        event, terminate, early, last = self._step_results
        do_step = self._fn["fmi3DoStep"]
        while True:
            status = do_step(self._component, now, size, True, *self._step_pointers)
            if status:
                if status == 2:
                    failure = self._failure("fmi3DoStep", status,
                                            f"the FMU could not complete a step of {size:g} s "
                                            "(fmi3Discard); try a smaller step", now)
                    raise StepDiscarded(failure.args[0], instance=self.name,
                                        function="fmi3DoStep", time=now, log=failure.log)
                self._check("fmi3DoStep", status, now)
            if terminate.value:
                raise SimulationError(
                    f"the FMU asked to end the simulation (terminateSimulation) at t = "
                    f"{last.value:.9g} s", instance=self.name, function="fmi3DoStep",
                    time=last.value, log=list(self.log))
            reached = last.value if early.value else end
            if (self.stop_at_early_return and early.value and now < reached
                    and reached < end - 1e-12 * max(1.0, abs(end))):
                self.returned_at = self.time = reached  # the master rolls back to ``time``
                self.early_returns += 1
                return
            if event.value and self.event_mode_used:
                self.time = reached
                self._handle_event(reached)
            if not early.value or reached >= end - 1e-12 * max(1.0, abs(end)):
                break
            if reached <= now:
                raise SimulationError(
                    f"fmi3DoStep returned early without advancing (t = {now:.9g} s)",
                    instance=self.name, function="fmi3DoStep", time=now, log=list(self.log))
            self.early_returns += 1
            now, size = reached, end - reached
        self.time = end

    def _handle_event(self, time: float) -> None:
        self._check("fmi3EnterEventMode", self._fn["fmi3EnterEventMode"](self._component),
                    time)
        terminate, _ = self.update_discrete_states()
        if terminate:
            raise SimulationError(
                f"the FMU asked to end the simulation (terminateSimulation) at t = {time:.9g} s",
                instance=self.name, function="fmi3UpdateDiscreteStates", time=time,
                log=list(self.log))
        self._check("fmi3EnterStepMode", self._fn["fmi3EnterStepMode"](self._component), time)
        self.event_times.append(time)

    # -- FMU state ------------------------------------------------------------------------
    def get_state(self) -> ctypes.c_void_p:
        self._require_state()
        state = ctypes.c_void_p()
        self._check("fmi3GetFMUState",
                    self._fn["fmi3GetFMUState"](self._component, ctypes.byref(state)))
        return state

    def set_state(self, state: ctypes.c_void_p) -> None:
        self._require_state()
        self._check("fmi3SetFMUState", self._fn["fmi3SetFMUState"](self._component, state))

    def free_state(self, state: ctypes.c_void_p) -> None:
        self._check("fmi3FreeFMUState",
                    self._fn["fmi3FreeFMUState"](self._component, ctypes.byref(state)))

    def serialize_state(self) -> bytes:
        """The FMU's whole state as bytes (a checkpoint): get, serialise, free."""
        self._require_serialize()
        state = self.get_state()
        try:
            size = ctypes.c_size_t()
            self._check("fmi3SerializedFMUStateSize", self._fn["fmi3SerializedFMUStateSize"](
                self._component, state, ctypes.byref(size)))
            data = (ctypes.c_uint8 * size.value)()
            self._check("fmi3SerializeFMUState", self._fn["fmi3SerializeFMUState"](
                self._component, state, data, size))
            return bytes(data)
        finally:
            self.free_state(state)

    def restore_state(self, data: bytes) -> None:
        """Put the FMU back into a state ``serialize_state`` gave: deserialise, set, free."""
        self._require_serialize()
        state = ctypes.c_void_p()
        self._check("fmi3DeserializeFMUState", self._fn["fmi3DeserializeFMUState"](
            self._component, (ctypes.c_uint8 * len(data)).from_buffer_copy(data), len(data),
            ctypes.byref(state)))
        try:
            self.set_state(state)
        finally:
            self.free_state(state)


def _binary(value: Any) -> bytes:
    """A Binary value from the scenario: bytes (YAML ``!!binary``) or a hex string."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    return bytes.fromhex(str(value))


_ENVIRONMENT_IDS = itertools.count(1)
_ENVIRONMENTS: dict[int, Instance3] = {}  # instanceEnvironment -> the instance it logs to
_LOG_CALLBACK: list = []


def _log_message(environment, status, category, message) -> None:
    """The FMI 3 logger of every instance; the instance environment says whose message."""
    from cosim.fmi.fmu import FMI_STATUS

    label = FMI_STATUS[status] if 0 <= status < len(FMI_STATUS) else str(status)
    instance = _ENVIRONMENTS.get(environment or 0)
    if instance is not None:
        category = category.decode("utf-8", "replace") if category else ""
        text = message.decode("utf-8", "replace") if message else ""
        instance._record(label, category, text)  # noqa: SLF001 - the FMU's own callback


def _log_callback():
    """One process-wide ``fmi3LogMessageCallback`` (kept alive for the life of the process)."""
    if not _LOG_CALLBACK:
        from fmpy.fmi3 import fmi3LogMessageCallback

        _LOG_CALLBACK.append(fmi3LogMessageCallback(_log_message))
    return _LOG_CALLBACK[0]


class _Port3:
    """Preallocated value references and typed buffers for one direction of an FMI 3
    instance. Float64 variables at the front of the port are read and written in place in
    ``values`` (the signal array); every other type goes through its own ctypes buffer."""

    def __init__(self, instance: Instance3, names: list[str], values: np.ndarray):
        self.instance = instance
        self.values = values
        positions: dict[str, list[int]] = {}
        variables, offset = [], 0
        for name in names:
            var = instance._variable(name)
            size = instance.fmu.size(name, instance.structural)
            if function_type(var.type) not in CTYPES:
                raise SimulationError(f"{var.type} variables cannot be coupled or recorded: "
                                      f"{name}", instance=instance.name)
            variables.append(var)
            positions.setdefault(function_type(var.type), []).extend(
                range(offset, offset + size))
            offset += size
        self.direct = None  # (vr, nvr, pointer, nValues): Float64 in place
        self.groups = []  # (kind, vr, nvr, buffer, numpy view, positions)
        fn = instance._fn
        for kind, index in positions.items():
            group = [v for v in variables if function_type(v.type) == kind]
            vr = (ctypes.c_uint * len(group))(*(v.value_reference for v in group))
            if kind == "Float64" and index == list(range(len(index))):
                assert values.flags["C_CONTIGUOUS"] and values.dtype == np.float64
                self.direct = (vr, len(group), values.ctypes.data_as(
                    ctypes.POINTER(ctypes.c_double)), len(index))
                continue
            buffer = (CTYPES[kind] * len(index))()
            self.groups.append((kind, vr, len(group), buffer, np.ctypeslib.as_array(buffer),
                                np.array(index, dtype=np.intp)))
        self._set = {kind: fn[f"fmi3Set{kind}"] for kind in positions}
        self._get = {kind: fn[f"fmi3Get{kind}"] for kind in positions}
        self._set_float64 = fn["fmi3SetFloat64"]
        self._get_float64 = fn["fmi3GetFloat64"]

    def set(self) -> None:
        inst = self.instance
        if self.direct is not None:
            vr, nvr, pointer, count = self.direct
            status = self._set_float64(inst._component, vr, nvr, pointer, count)
            if status:
                inst._check("fmi3SetFloat64", status)
        for kind, vr, nvr, buffer, view, index in self.groups:
            chosen = self.values[index]
            view[:] = chosen if kind.startswith("Float") else (
                chosen != 0 if kind == "Boolean" else np.rint(chosen))
            status = self._set[kind](inst._component, vr, nvr, buffer, len(index))
            if status:
                inst._check(f"fmi3Set{kind}", status)

    def get(self) -> None:
        inst = self.instance
        if self.direct is not None:
            vr, nvr, pointer, count = self.direct
            status = self._get_float64(inst._component, vr, nvr, pointer, count)
            if status:
                inst._check("fmi3GetFloat64", status)
        for kind, vr, nvr, buffer, view, index in self.groups:
            status = self._get[kind](inst._component, vr, nvr, buffer, len(index))
            if status:
                inst._check(f"fmi3Get{kind}", status)
            self.values[index] = view
