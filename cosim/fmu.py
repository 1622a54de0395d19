"""The FMU layer: read an FMU file, and run instances of it through the FMI 2.0 C API.

Two objects:

- ``FMU``: what a file declares (variables, units, direct dependencies, capabilities), read
  without loading its binary. ``read_fmu(path)`` checks the archive before anything else; it
  reads FMI 2.0 and 3.0 (``cosim.fmi3`` runs the FMI 3 ones) and every interface an FMU
  offers (co-simulation, model exchange: ``cosim.model_exchange``; scheduled execution).
- ``Instance``: one named instance of an FMU. Its lifecycle is
  ``instantiate → setup_experiment → enter_initialization_mode → exit_initialization_mode →
  do_step … → terminate → free`` (``close()`` does the last two, safely, in any state).

Every FMI call goes through ``Instance._check``: a status above ``fmi2Warning`` becomes a
``SimulationError`` naming the instance, the FMI function, the time and the FMU's last log lines.
The hot path (``set_inputs``/``do_step``/``get_outputs``) calls the ``fmi2…`` functions of the
shared library directly with value references resolved once and ctypes arrays allocated once
(numpy views on them), because fmpy's list conversions cost more than a small FMU's step.
"""

from __future__ import annotations

import atexit
import ctypes
import hashlib
import shutil
import tempfile
import zipfile
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosim.errors import FMUError, Problem, SimulationError
from cosim.units import UnitDefinition, define, from_fmpy

FMI_STATUS = ("ok", "warning", "discard", "error", "fatal", "pending")
REAL, INTEGER, BOOLEAN, STRING, ENUMERATION = "Real", "Integer", "Boolean", "String", "Enumeration"
FLOAT64_TYPES = (REAL, "Float64")  # FMI 2 Real, FMI 3 Float64: the signal array's own type
FLOAT_TYPES = (*FLOAT64_TYPES, "Float32")
FMI3_INT_TYPES = ("Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64")
INT_TYPES = (INTEGER, BOOLEAN, ENUMERATION, *FMI3_INT_TYPES)  # coupled as float64 values
COUPLED_TYPES = (*FLOAT_TYPES, *INT_TYPES)  # String, Binary, Clock: set, never coupled
CO_SIMULATION, MODEL_EXCHANGE, SCHEDULED_EXECUTION = (
    "co-simulation", "model-exchange", "scheduled-execution")
INTERFACES = (CO_SIMULATION, MODEL_EXCHANGE, SCHEDULED_EXECUTION)
FMI2_LAST_SUCCESSFUL_TIME, FMI2_TERMINATED = 2, 3  # fmi2StatusKind values
MAX_UNPACKED_BYTES = 4 * 1024**3  # refuse archives that would unpack to more (zip bombs)
RUNTIME_FOLDERS = ("binaries/", "resources/")  # what an instance needs of the archive


@dataclass(frozen=True)
class Variable:
    """One model variable as the FMU declares it."""

    name: str
    value_reference: int
    type: str
    causality: str
    variability: str
    initial: str | None
    unit: str | None
    description: str
    start: Any
    dimensions: tuple[int | str, ...] = ()  # FMI 3 arrays: a size, or a structural parameter
    display_unit: str | None = None


@dataclass
class FMU:
    """An FMU file and what its model description declares."""

    path: Path
    sha256: str
    fmi_version: str
    model_name: str
    model_identifier: str
    guid: str
    generation_tool: str
    variables: dict[str, Variable]
    units: dict[str, UnitDefinition]
    dependencies: dict[str, tuple[str, ...]]  # output -> inputs it feeds through directly
    initial_dependencies: dict[str, tuple[str, ...]]  # the same in initialisation mode
    can_get_and_set_state: bool
    can_handle_variable_step: bool
    platforms: tuple[str, ...]
    description: Any = field(repr=False, default=None)  # fmpy's ModelDescription
    only_once_per_process: bool = False  # canBeInstantiatedOnlyOncePerProcess
    interfaces: dict[str, str] = field(default_factory=dict)  # interface -> modelIdentifier
    _unzip_dir: Path | None = field(default=None, repr=False)

    @property
    def fmi3(self) -> bool:
        return self.fmi_version.startswith("3.")

    def shape(self, name: str, parameters: Mapping[str, Any] | None = None
              ) -> tuple[int, ...]:
        """The shape of variable ``name`` (``()``: a scalar); a dimension given by a
        structural parameter takes its value from ``parameters``, else its start value."""
        shape = []
        for dimension in self.variables[name].dimensions:
            if isinstance(dimension, str):
                value = (parameters or {}).get(dimension, self.variables[dimension].start)
                dimension = int(value)
            shape.append(dimension)
        return tuple(shape)

    def size(self, name: str, parameters: Mapping[str, Any] | None = None) -> int:
        """How many values variable ``name`` holds (1 for a scalar)."""
        return int(np.prod(self.shape(name, parameters), dtype=np.int64))

    def unit_of(self, name: str) -> UnitDefinition | None:
        """The unit definition of a variable (None: no unit declared)."""
        unit = self.variables[name].unit
        if not unit:
            return None
        return self.units.get(unit) or define(unit) or UnitDefinition(unit, (0,) * 8)

    def unzip_dir(self) -> Path:
        """The folder the FMU is extracted to (once per process; removed at exit): what it
        needs to run, its binaries and resources (not its sources or documentation).

        The bytes extracted are the bytes hashed: a file changed since ``read_fmu`` (a pinned
        SHA-256 was checked then) is refused, not run.
        """
        if self._unzip_dir is None:
            with open(self.path, "rb") as stream:
                if hashlib.file_digest(stream, "sha256").hexdigest() != self.sha256:
                    raise FMUError(Problem(
                        "the FMU file changed after it was checked (its SHA-256 differs)",
                        file=str(self.path), hint="do not replace FMUs while a run starts; "
                        "run again"))
                stream.seek(0)
                target = Path(tempfile.mkdtemp(prefix=f"cosim_{self.model_identifier}_"))
                atexit.register(shutil.rmtree, target, ignore_errors=True)
                with zipfile.ZipFile(stream) as archive:
                    needed = [n for n in archive.namelist() if n.startswith(RUNTIME_FOLDERS)]
                    archive.extractall(target, needed)  # zipfile drops absolute paths, '..'
            self._unzip_dir = target
        return self._unzip_dir


def read_fmu(path: str | Path) -> FMU:
    """Read an FMU's model description and check it can run here; loads no binary."""
    from fmpy import read_model_description

    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise FMUError(Problem("no such FMU file", file=where,
                               hint="check the path; relative paths are taken from the "
                                    "scenario file's folder"))
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            unpacked = sum(info.file_size for info in archive.infolist())
            if archive.testzip() is not None:
                raise zipfile.BadZipFile("a member fails its CRC check")
    except (zipfile.BadZipFile, OSError) as error:
        raise FMUError(Problem(f"not a readable FMU (zip archive): {error}", file=where,
                               hint="the file is damaged or not an FMU; export it again")) from None
    if unpacked > MAX_UNPACKED_BYTES:
        raise FMUError(Problem(f"the archive would unpack to {unpacked / 1e9:.1f} GB",
                               file=where, hint="refused as unsafe; an FMU is rarely above 1 GB"))
    if "modelDescription.xml" not in names:
        raise FMUError(Problem("the archive has no modelDescription.xml", file=where,
                               hint="an FMU holds modelDescription.xml at its root"))
    try:
        md = read_model_description(str(path), validate=True)
    except Exception as error:  # fmpy raises plain Exceptions for schema and parse errors
        raise FMUError(Problem(f"invalid modelDescription.xml: {error}".strip(), file=where,
                               hint="run `fmpy validate` on it; ask its exporter to fix it"
                               )) from None
    if not md.fmiVersion.startswith(("2.", "3.")):
        raise FMUError(Problem(f"FMI {md.fmiVersion} FMUs are not supported",
                               file=where, hint="export the model as FMI 2.0 or 3.0"))
    interfaces = {kind: node.modelIdentifier for kind, node in (
        (CO_SIMULATION, md.coSimulation), (MODEL_EXCHANGE, md.modelExchange),
        (SCHEDULED_EXECUTION, md.scheduledExecution)) if node is not None}
    if not interfaces:
        raise FMUError(Problem("the FMU declares no interface (co-simulation, model exchange "
                               "or scheduled execution)", file=where,
                               hint="export it again with an interface"))
    main = md.coSimulation or md.modelExchange or md.scheduledExecution
    identifier = main.modelIdentifier
    platforms = tuple(sorted({n.split("/")[1] for n in names
                              if n.startswith("binaries/") and n.count("/") >= 2
                              and n.split("/")[2]}))

    units = {u.name: from_fmpy(u) for u in md.unitDefinitions}
    variables = {}
    for v in md.modelVariables:
        variables[v.name] = Variable(
            name=v.name, value_reference=int(v.valueReference), type=v.type,
            causality=v.causality or "local", variability=v.variability or "continuous",
            initial=v.initial, unit=(v.unit or (v.declaredType.unit if v.declaredType
                                                 and hasattr(v.declaredType, "unit")
                                                 else None)) or None,
            description=v.description or "", start=v.start,
            dimensions=tuple(int(d.start) if d.variable is None else d.variable.name
                             for d in v.dimensions),
            display_unit=v.displayUnit or None)
    inputs = [v.name for v in md.modelVariables if v.causality == "input"]
    dependencies: dict[str, tuple[str, ...]] = {}
    for unknown in md.outputs:  # no ``dependencies`` attribute: depends on every input
        deps = unknown.dependencies
        dependencies[unknown.variable.name] = (
            tuple(inputs) if deps is None else tuple(d.name for d in deps
                                                     if d.causality == "input"))
    for v in md.modelVariables:
        if v.causality == "output" and v.name not in dependencies:
            dependencies[v.name] = tuple(inputs)
    # InitialUnknowns: an output listed without ``dependencies`` depends on every known, inputs
    # included; an output not listed has its start value (initial exact or approx)
    initial_dependencies = {name: () for name, v in variables.items() if v.causality == "output"}
    for unknown in md.initialUnknowns:
        if unknown.variable.causality == "output":
            deps = unknown.dependencies
            initial_dependencies[unknown.variable.name] = (
                tuple(inputs) if deps is None else tuple(d.name for d in deps
                                                         if d.causality == "input"))
    with open(path, "rb") as stream:
        sha256 = hashlib.file_digest(stream, "sha256").hexdigest()
    return FMU(path=path.resolve(), sha256=sha256, fmi_version=md.fmiVersion,
               model_name=md.modelName, model_identifier=identifier, guid=md.guid,
               generation_tool=md.generationTool or "", variables=variables, units=units,
               dependencies=dependencies, initial_dependencies=initial_dependencies,
               can_get_and_set_state=bool(main.canGetAndSetFMUstate),
               can_handle_variable_step=bool(getattr(
                   main, "canHandleVariableCommunicationStepSize", False)),
               platforms=platforms, description=md,
               only_once_per_process=bool(main.canBeInstantiatedOnlyOncePerProcess),
               interfaces=interfaces)


def _prefer_host_pythonfmu(unzip_dir: Path) -> None:
    """Import the installed pythonfmu before a pythonfmu FMU loads the copy it ships.

    A pythonfmu FMU runs in this interpreter and imports ``pythonfmu`` from its own
    ``resources/`` when the host has not imported it yet. That copy then stays in
    ``sys.modules`` and lives in a temporary folder: a later ``cosim.build.build_fmu`` in the
    same process takes its binaries from there and writes FMUs without any.
    """
    if (unzip_dir / "resources" / "pythonfmu").is_dir():
        try:
            import pythonfmu  # noqa: F401 - imported for its place in sys.modules
        except ImportError:
            pass


def _platform() -> str:
    from fmpy import platform

    return platform


class Instance:
    """One instance of an FMU, driven through the FMI 2.0 co-simulation C API.

    ``interface=MODEL_EXCHANGE`` instantiates the model exchange interface instead (no
    ``do_step``: ``cosim.model_exchange.ModelExchange`` integrates it).
    """

    def __init__(self, fmu: FMU, name: str, interface: str = CO_SIMULATION):
        self.fmu = fmu
        self.name = name
        self.interface = interface
        self.log: deque[str] = deque(maxlen=50)
        # created, instantiated, initializing, stepping, ended (by the FMU), terminated, freed
        self.phase = "created"
        self.time: float | None = None
        self.ended_at: float | None = None  # when the FMU ended the simulation itself
        self._slave = None
        self._component = None
        self._inputs: _Port | None = None
        self._outputs: _Port | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def instantiate(self) -> None:
        """Load the binary and create the FMI component."""
        from fmpy.fmi2 import FMU2Model, FMU2Slave

        self._require("created", "instantiate")
        platform = _platform()
        if platform not in self.fmu.platforms:
            raise FMUError(Problem(
                f"the FMU has no binary for this platform ({platform}); it has: "
                + (", ".join(self.fmu.platforms) or "none (source code only?)"),
                file=str(self.fmu.path), key=self.name,
                hint=f"export or compile the FMU for {platform}"))
        _prefer_host_pythonfmu(self.fmu.unzip_dir())
        exchange = self.interface == MODEL_EXCHANGE
        try:
            self._slave = (FMU2Model if exchange else FMU2Slave)(
                guid=self.fmu.guid, unzipDirectory=str(self.fmu.unzip_dir()),
                modelIdentifier=self.fmu.interfaces[self.interface], instanceName=self.name)
        except Exception as error:
            raise FMUError(Problem(f"cannot load the FMU's binary: {error}",
                                   file=str(self.fmu.path), key=self.name,
                                   hint="the shared library is missing symbols or was built "
                                        "for another system")) from None
        _LOGS[self.name] = self.log
        callbacks = _shared_callbacks()
        dll = self._slave.dll
        _release_pythonfmu_state_at_exit(dll)
        self._fn = {name: getattr(dll, name) for name in self._slave._functions}
        component = self._fn["fmi2Instantiate"](
            self.name.encode(), 0 if exchange else 1, self.fmu.guid.encode(),
            (self.fmu.unzip_dir() / "resources").as_uri().encode(),
            ctypes.byref(callbacks), 0, 1)  # logging on: errors need their reason
        if not component:
            raise SimulationError("fmi2Instantiate returned NULL", instance=self.name,
                                  function="fmi2Instantiate", log=list(self.log))
        self._component = component
        self._slave.component = component
        self.phase = "instantiated"

    def setup_experiment(self, start: float, stop: float | None = None) -> None:
        self._require("instantiated", "setup_experiment")
        self.time = start
        self._check("fmi2SetupExperiment", self._fn["fmi2SetupExperiment"](
            self._component, 0, 0.0, start, stop is not None, stop or 0.0))

    def enter_initialization_mode(self) -> None:
        self._require("instantiated", "enter_initialization_mode")
        self._check("fmi2EnterInitializationMode",
                    self._fn["fmi2EnterInitializationMode"](self._component))
        self.phase = "initializing"

    def exit_initialization_mode(self) -> None:
        self._require("initializing", "exit_initialization_mode")
        self._check("fmi2ExitInitializationMode",
                    self._fn["fmi2ExitInitializationMode"](self._component))
        self.phase = "stepping"

    def terminate(self) -> None:
        if self.phase in ("initializing", "stepping", "ended"):
            self.phase = "terminated"
            self._check("fmi2Terminate", self._fn["fmi2Terminate"](self._component))

    def free(self) -> None:
        if self._component is not None:
            self._fn["fmi2FreeInstance"](self._component)
            self._component = None
        if self._slave is not None:
            try:
                self._slave.freeLibrary()
            except Exception:  # noqa: BLE001 - a library that will not unload is not our failure
                pass
            self._slave = None
        self.phase = "freed"

    def close(self) -> None:
        """Terminate (when initialised) and free; safe in every state, never raises twice.

        After ``fmi2Fatal`` the standard allows no further call into the FMU, so a fatal
        instance is left as it is (its memory is leaked on purpose).
        """
        if self.phase == "fatal":
            return
        try:
            self.terminate()
        except SimulationError:
            pass
        finally:
            self.free()

    # -- values by name (set-up, events, tests) ---------------------------------------------
    def set(self, values: Mapping[str, Any]) -> None:
        """Set variables by name, one batched call per type."""
        by_type: dict[str, tuple[list[int], list[Any]]] = {}
        for name, value in values.items():
            var = self._variable(name)
            refs, vals = by_type.setdefault(var.type, ([], []))
            refs.append(var.value_reference)
            vals.append(value)
        for kind, (refs, vals) in by_type.items():
            n = len(refs)
            vr = (ctypes.c_uint * n)(*refs)
            if kind == REAL:
                self._check("fmi2SetReal", self._fn["fmi2SetReal"](
                    self._component, vr, n, (ctypes.c_double * n)(*map(float, vals))))
            elif kind in (INTEGER, ENUMERATION):
                self._check("fmi2SetInteger", self._fn["fmi2SetInteger"](
                    self._component, vr, n, (ctypes.c_int * n)(*map(int, vals))))
            elif kind == BOOLEAN:
                self._check("fmi2SetBoolean", self._fn["fmi2SetBoolean"](
                    self._component, vr, n, (ctypes.c_int * n)(*(1 if v else 0 for v in vals))))
            elif kind == STRING:
                self._check("fmi2SetString", self._fn["fmi2SetString"](
                    self._component, vr, n,
                    (ctypes.c_char_p * n)(*(str(v).encode() for v in vals))))

    def get(self, names: Iterable[str]) -> dict[str, Any]:
        """Get variables by name, one batched call per type."""
        names = list(names)
        result: dict[str, Any] = {}
        groups: dict[str, list[Variable]] = {}
        for name in names:
            var = self._variable(name)
            groups.setdefault(var.type, []).append(var)
        for kind, group in groups.items():
            n = len(group)
            vr = (ctypes.c_uint * n)(*(v.value_reference for v in group))
            if kind == REAL:
                buf = (ctypes.c_double * n)()
                self._check("fmi2GetReal", self._fn["fmi2GetReal"](self._component, vr, n, buf))
                values = list(buf)
            elif kind == STRING:
                buf = (ctypes.c_char_p * n)()
                self._check("fmi2GetString",
                            self._fn["fmi2GetString"](self._component, vr, n, buf))
                values = [b.decode() if b else "" for b in buf]
            else:
                buf = (ctypes.c_int * n)()
                function = "fmi2GetBoolean" if kind == BOOLEAN else "fmi2GetInteger"
                self._check(function, self._fn[function](self._component, vr, n, buf))
                values = [bool(b) for b in buf] if kind == BOOLEAN else list(buf)
            result.update({v.name: x for v, x in zip(group, values, strict=True)})
        return {name: result[name] for name in names}

    # -- the hot path -------------------------------------------------------------------------
    def bind(self, inputs: Sequence[str], outputs: Sequence[str], output_buffer: np.ndarray
             ) -> np.ndarray:
        """Fix the inputs set and the outputs read every step; returns the input buffer.

        ``output_buffer`` is a contiguous float64 array (a slice of the master's signal array)
        of ``len(outputs)`` entries: ``get_outputs()`` writes the outputs there, in order, the
        Real ones straight from ``fmi2GetReal``. The returned float64 array has one entry per
        input, in order: fill it, then ``set_inputs()``.
        """
        self._inputs = _Port(self, [self._variable(n) for n in inputs],
                             np.zeros(len(inputs)))
        self._outputs = _Port(self, [self._variable(n) for n in outputs], output_buffer)
        self.set_inputs = self._inputs.set  # from now on one call each, not two (hot path)
        self.get_outputs = self._outputs.get
        return self._inputs.values

    def set_inputs(self) -> None:
        self._inputs.set()

    def get_outputs(self) -> None:
        self._outputs.get()

    def do_step(self, time: float, step: float) -> bool | None:
        """``fmi2DoStep`` from ``time`` over ``step``; True when the FMU ended the simulation.

        An FMU that sets terminateSimulation answers ``fmi2Discard`` and then
        ``fmi2GetBooleanStatus(fmi2Terminated)`` = true: an end, not an error. ``ended_at`` is
        then its ``fmi2LastSuccessfulTime`` (the end of the step if it cannot tell), and until it
        is terminated only its values may be read (FMI 2.0 state *stepFailed*). Any other
        discarded step is an error, and so is an end after the FMU logged an error (pythonfmu
        answers "terminated" to every step its model refused).
        """
        status = self._fn["fmi2DoStep"](self._component, time, step, 1)
        if status:
            ended_at = self._ended_at(time + step) if status == 2 else None
            if ended_at is not None:
                self.phase, self.ended_at, self.time = "ended", ended_at, ended_at
                return True
            if status == 2:
                raise self._failure("fmi2DoStep", status,
                                    f"the FMU could not complete a step of {step:g} s "
                                    "(fmi2Discard); try a smaller step", time)
            self._check("fmi2DoStep", status, time)
        self.time = time + step
        return None

    # -- FMU state (rollback, checkpoints) ----------------------------------------------------
    def get_state(self) -> ctypes.c_void_p:
        self._require_state()
        state = ctypes.c_void_p()
        self._check("fmi2GetFMUstate",
                    self._fn["fmi2GetFMUstate"](self._component, ctypes.byref(state)))
        return state

    def set_state(self, state: ctypes.c_void_p) -> None:
        self._require_state()
        self._check("fmi2SetFMUstate", self._fn["fmi2SetFMUstate"](self._component, state))

    def free_state(self, state: ctypes.c_void_p) -> None:
        self._check("fmi2FreeFMUstate",
                    self._fn["fmi2FreeFMUstate"](self._component, ctypes.byref(state)))

    # -- internals --------------------------------------------------------------------------
    def _ended_at(self, end: float) -> float | None:
        """After ``fmi2Discard``: where the FMU ended the simulation (its
        ``fmi2LastSuccessfulTime``, ``end`` if it cannot tell), None if it did not say
        ``fmi2Terminated`` or logged an error."""
        flag, reached = ctypes.c_int(0), ctypes.c_double(end)
        status = self._fn["fmi2GetBooleanStatus"](self._component, FMI2_TERMINATED,
                                                  ctypes.byref(flag))
        if status > 1 or not flag.value or any(line.startswith(("[error]", "[fatal]"))
                                               for line in self.log):
            return None
        status = self._fn["fmi2GetRealStatus"](self._component, FMI2_LAST_SUCCESSFUL_TIME,
                                               ctypes.byref(reached))
        return reached.value if status <= 1 else end

    def _variable(self, name: str) -> Variable:
        try:
            return self.fmu.variables[name]
        except KeyError:
            raise SimulationError(f"the FMU {self.fmu.model_name} has no variable '{name}'",
                                  instance=self.name) from None

    def _require(self, phase: str, call: str) -> None:
        if self.phase != phase:
            raise SimulationError(f"{call}() called in phase '{self.phase}', needs '{phase}'",
                                  instance=self.name)

    def _require_state(self) -> None:
        if not self.fmu.can_get_and_set_state:
            raise SimulationError("the FMU cannot get and set its state "
                                  "(canGetAndSetFMUstate is false)", instance=self.name)

    def _check(self, function: str, status: int, time: float | None = None) -> None:
        """The one choke point for FMI status codes."""
        if status == 0:
            return
        if status == 1:
            self.log.append(f"[warning] {function} returned a warning")
            return
        raise self._failure(function, status, None, time)

    def _failure(self, function: str, status: int, message: str | None,
                 time: float | None) -> SimulationError:
        label = FMI_STATUS[status] if 0 <= status < len(FMI_STATUS) else f"status {status}"
        if status == 4:
            self.phase = "fatal"
        text = message or f"{function} failed ({label})"
        return SimulationError(text, instance=self.name, function=function,
                               time=self.time if time is None else time, log=list(self.log))


_LOGS: dict[str, deque[str]] = {}  # instance name -> its last log messages
_CALLBACKS: list = []  # the one callbacks struct, kept alive for the life of the process


_PYTHONFMU_RELEASES: dict[str, Any] = {}  # binary path -> its finalizePythonInterpreter


def _release_pythonfmu_state_at_exit(dll: ctypes.CDLL) -> None:
    """Have a pythonfmu binary release its interpreter state at Python exit, not after.

    A pythonfmu binary keeps a static ``std::shared_ptr<PyState>`` and resets it again from an
    ``__attribute__((destructor))`` function (``finalizePythonInterpreter``). Its C++ symbols
    make the library impossible to unload, so it is still loaded when the process exits: the
    C++ static destructor frees the state first, then the destructor function releases the
    freed block once more. That write into freed memory corrupts the heap, and a process that
    wrote its results correctly dies at exit, now and then, with ``corrupted double-linked
    list`` (SIGABRT) — how often depends on the heap's layout (environment, paths). Calling
    ``finalizePythonInterpreter`` ourselves while Python shuts down empties the pointer, so both
    later releases find nothing. Instances still alive hold their own reference to the state.
    Binaries of other FMUs do not export the function and are left alone.
    """
    path = dll._name
    if path in _PYTHONFMU_RELEASES or not hasattr(dll, "finalizePythonInterpreter"):
        return
    own = ctypes.CDLL(path)  # our own reference keeps the function loaded until it is called
    release = own.finalizePythonInterpreter
    release.restype, release.argtypes = None, []
    if not _PYTHONFMU_RELEASES:
        atexit.register(_release_pythonfmu_states)
    _PYTHONFMU_RELEASES[path] = release


def _release_pythonfmu_states() -> None:
    for release in _PYTHONFMU_RELEASES.values():
        release()
    _PYTHONFMU_RELEASES.clear()


def _log_message(env, instance_name, status, category, message) -> None:
    """The FMU logger of every instance; routes a message to its instance's log by name."""
    label = FMI_STATUS[status] if 0 <= status < len(FMI_STATUS) else str(status)
    name = instance_name.decode("utf-8", "replace") if instance_name else ""
    text = message.decode("utf-8", "replace") if message else ""
    log = _LOGS.get(name)
    if log is not None:
        log.append(f"[{label}] {text}")


def _shared_callbacks():
    """One process-wide ``fmi2CallbackFunctions`` (fmpy's log-formatting proxy is global)."""
    if not _CALLBACKS:
        from fmpy import calloc, free
        from fmpy.fmi2 import (
            fmi2CallbackAllocateMemoryTYPE,
            fmi2CallbackFreeMemoryTYPE,
            fmi2CallbackFunctions,
            fmi2CallbackLoggerTYPE,
        )

        callbacks = fmi2CallbackFunctions()
        callbacks.logger = fmi2CallbackLoggerTYPE(_log_message)
        callbacks.allocateMemory = fmi2CallbackAllocateMemoryTYPE(calloc)
        callbacks.freeMemory = fmi2CallbackFreeMemoryTYPE(free)
        try:  # formats printf-style messages; without it they arrive unformatted
            from fmpy.logging import addLoggerProxy

            addLoggerProxy(ctypes.byref(callbacks))
        except (ImportError, OSError, AttributeError):
            pass
        _CALLBACKS.append(callbacks)
    return _CALLBACKS[0]


class _Port:
    """Preallocated value references and buffers for one direction of an instance."""

    def __init__(self, instance: Instance, variables: list[Variable], values: np.ndarray):
        self.instance = instance
        self.values = values
        reals = [i for i, v in enumerate(variables) if v.type == REAL]
        ints = [i for i, v in enumerate(variables) if v.type in INT_TYPES]
        others = [v.name for v in variables if v.type not in (REAL, *INT_TYPES)]
        if others:
            raise SimulationError(f"String variables cannot be coupled: {others}",
                                  instance=instance.name)
        if reals != list(range(len(reals))):
            raise SimulationError("Real variables must come first in a port",
                                  instance=instance.name)
        self.n_real = len(reals)
        self.real_vr = (ctypes.c_uint * self.n_real)(
            *(variables[i].value_reference for i in reals))
        if self.n_real:
            assert values.flags["C_CONTIGUOUS"] and values.dtype == np.float64
            self.real_ptr = values.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self.int_groups = []
        for kind, function in ((INTEGER, "Integer"), (ENUMERATION, "Integer"),
                               (BOOLEAN, "Boolean")):
            index = [i for i in ints if variables[i].type == kind]
            if index:
                buf = (ctypes.c_int * len(index))()
                vr = (ctypes.c_uint * len(index))(*(variables[i].value_reference for i in index))
                self.int_groups.append((function, np.array(index), vr, buf,
                                        np.ctypeslib.as_array(buf)))
        fn = instance._fn
        self._set_real = fn["fmi2SetReal"]
        self._get_real = fn["fmi2GetReal"]
        self._fn = fn

    def set(self) -> None:
        inst = self.instance
        if self.n_real:
            status = self._set_real(inst._component, self.real_vr, self.n_real, self.real_ptr)
            if status:
                inst._check("fmi2SetReal", status)
        for function, index, vr, buf, view in self.int_groups:
            view[:] = np.rint(self.values[index])
            status = self._fn[f"fmi2Set{function}"](inst._component, vr, len(index), buf)
            if status:
                inst._check(f"fmi2Set{function}", status)

    def get(self) -> None:
        inst = self.instance
        if self.n_real:
            status = self._get_real(inst._component, self.real_vr, self.n_real, self.real_ptr)
            if status:
                inst._check("fmi2GetReal", status)
        for function, index, vr, buf, view in self.int_groups:
            status = self._fn[f"fmi2Get{function}"](inst._component, vr, len(index), buf)
            if status:
                inst._check(f"fmi2Get{function}", status)
            self.values[index] = view
