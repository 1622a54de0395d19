"""The FMU layer: run instances of an FMU through the FMI 2.0 C API.

Two objects:

- ``FMU``: what a file declares (``cosim.fmi.fmu_file``; ``read_fmu`` is re-exported here). It
  reads FMI 2.0 and 3.0 (``cosim.fmi.fmi3`` runs the FMI 3 ones) and every interface an FMU offers
  (co-simulation, model exchange: ``cosim.fmi.model_exchange``; scheduled execution).
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
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from cosim.errors import FMUError, Problem, SimulationError, StepDiscarded
from cosim.fmi.capture import printable
from cosim.fmi.fmu_file import (
    BOOLEAN,
    CO_SIMULATION,
    COUPLED_TYPES,
    ENUMERATION,
    FLOAT64_TYPES,
    FLOAT_TYPES,
    FMI3_INT_TYPES,
    FMU,
    INT_TYPES,
    INTEGER,
    INTERFACES,
    MODEL_EXCHANGE,
    REAL,
    SCHEDULED_EXECUTION,
    STRING,
    Variable,
    binary_problem,
    read_fmu,
)

__all__ = ["BOOLEAN", "CO_SIMULATION", "COUPLED_TYPES", "ENUMERATION", "FLOAT64_TYPES",
           "FLOAT_TYPES", "FMI3_INT_TYPES", "FMI_STATUS", "FMU", "INTEGER", "INTERFACES",
           "INT_TYPES", "MODEL_EXCHANGE", "REAL", "SCHEDULED_EXECUTION", "STRING", "Instance",
           "Variable", "read_fmu"]  # the FMU layer's names, in one place

KEEP_MESSAGES = 500  # per instance: the first and the last that many messages are kept
MAX_MESSAGE = 2000  # characters kept of one message

FMI_STATUS = ("ok", "warning", "discard", "error", "fatal", "pending")
FMI2_LAST_SUCCESSFUL_TIME, FMI2_TERMINATED = 2, 3  # fmi2StatusKind values


def _prefer_host_pythonfmu(unzip_dir: Path) -> None:
    """Import the installed pythonfmu before a pythonfmu FMU loads the copy it ships.

    A pythonfmu FMU runs in this interpreter and imports ``pythonfmu`` from its own
    ``resources/`` when the host has not imported it yet. That copy then stays in
    ``sys.modules`` and lives in a temporary folder: a later ``cosim.library.build.build_fmu`` in
    the
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
    ``do_step``: ``cosim.fmi.model_exchange.ModelExchange`` integrates it).
    """

    def __init__(self, fmu: FMU, name: str, interface: str = CO_SIMULATION):
        self.fmu = fmu
        self.name = name
        self.interface = interface
        self.log: deque[str] = deque(maxlen=50)  # the last messages, quoted in errors
        self.messages = MessageLog()  # all it said, bounded: the results file's log
        # created, instantiated, initializing, stepping, ended (by the FMU), terminated, freed
        self.phase = "created"
        self.time: float | None = None
        self.ended_at: float | None = None  # when the FMU ended the simulation itself
        self._slave = None
        self._component = None
        self._inputs: _Port | None = None
        self._outputs: _Port | None = None
        self._kept = ctypes.c_void_p()  # the FMU state kept for a rollback (keep_state)
        self._kept_ref = ctypes.byref(self._kept)

    # -- lifecycle -------------------------------------------------------------------------
    def instantiate(self) -> None:
        """Load the binary and create the FMI component."""
        from fmpy.fmi2 import FMU2Model, FMU2Slave

        self._require("created", "instantiate")
        self._unpack(_platform())
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
        _INSTANCES[self.name] = self
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
            if self._kept.value:
                self._fn["fmi2FreeFMUstate"](self._component, self._kept_ref)
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
                failure = self._failure("fmi2DoStep", status,
                                        f"the FMU could not complete a step of {step:g} s "
                                        "(fmi2Discard); try a smaller step", time)
                raise StepDiscarded(failure.args[0], instance=self.name, function="fmi2DoStep",
                                    time=time, log=failure.log)
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

    def keep_state(self) -> None:
        """``fmi2GetFMUstate`` into the state kept for a rollback: allocated by the first call,
        updated in place by the next ones (FMI 2.0, 2.1.8)."""
        self._check("fmi2GetFMUstate",
                    self._fn["fmi2GetFMUstate"](self._component, self._kept_ref))

    def return_to_kept_state(self) -> None:
        """``fmi2SetFMUstate`` to the state ``keep_state`` kept."""
        self._check("fmi2SetFMUstate", self._fn["fmi2SetFMUstate"](self._component,
                                                                   self._kept))

    def serialize_state(self) -> bytes:
        """The FMU's whole state as bytes (a checkpoint): get, serialise, free."""
        self._require_serialize()
        state = self.get_state()
        try:
            size = ctypes.c_size_t()
            self._check("fmi2SerializedFMUstateSize", self._fn["fmi2SerializedFMUstateSize"](
                self._component, state, ctypes.byref(size)))
            data = (ctypes.c_char * size.value)()
            self._check("fmi2SerializeFMUstate", self._fn["fmi2SerializeFMUstate"](
                self._component, state, data, size))
            return bytes(data)
        finally:
            self.free_state(state)

    def restore_state(self, data: bytes) -> None:
        """Put the FMU back into a state ``serialize_state`` gave: deserialise, set, free."""
        self._require_serialize()
        state = ctypes.c_void_p()
        self._check("fmi2DeSerializeFMUstate", self._fn["fmi2DeSerializeFMUstate"](
            self._component, ctypes.create_string_buffer(data, len(data)), len(data),
            ctypes.byref(state)))
        try:
            self.set_state(state)
        finally:
            self.free_state(state)

    # -- internals --------------------------------------------------------------------------
    def _unpack(self, platform: str) -> None:
        """Before loading: refuse a missing binary for ``platform``, extract the FMU (a damaged
        member names this instance, which needed it)."""
        problem = binary_problem(self.fmu, platform, self.interface)
        if problem:
            raise FMUError(Problem(problem.message, file=problem.file, key=self.name,
                                   hint=problem.hint))
        try:
            _prefer_host_pythonfmu(self.fmu.unzip_dir())
        except FMUError as error:
            raise FMUError([replace(p, key=self.name) for p in error.problems]) from None

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

    def _require_serialize(self) -> None:
        if not self.fmu.can_serialize_state:
            raise SimulationError("the FMU cannot save its state into bytes "
                                  "(canSerializeFMUstate is false)", instance=self.name)

    def _require_state(self) -> None:
        if not self.fmu.can_get_and_set_state:
            raise SimulationError("the FMU cannot get and set its state "
                                  "(canGetAndSetFMUstate is false)", instance=self.name)

    def _check(self, function: str, status: int, time: float | None = None) -> None:
        """The one choke point for FMI status codes."""
        if status == 0:
            return
        if status == 1:
            version = "fmi3" if self.fmu.fmi3 else "fmi2"
            self._record("warning", function, f"{function} returned {version}Warning", time)
            return
        raise self._failure(function, status, None, time)

    def _record(self, status: str, category: str, text: str, time: float | None = None
                ) -> None:
        """One message from (or about) the FMU: into the log and the recent lines."""
        self.messages.add(self.time if time is None else time, status, category, text)
        self.log.append(f"[{status}] {printable(text, MAX_MESSAGE, newlines=True)}")

    def _failure(self, function: str, status: int, message: str | None,
                 time: float | None) -> SimulationError:
        label = FMI_STATUS[status] if 0 <= status < len(FMI_STATUS) else f"status {status}"
        if status == 4:
            self.phase = "fatal"
        text = message or f"{function} failed ({label})"
        self.messages.add(self.time if time is None else time, label, function, text)
        return SimulationError(text, instance=self.name, function=function,
                               time=self.time if time is None else time, log=list(self.log))


_INSTANCES: dict[str, Instance] = {}  # instance name -> the instance its FMU logs to


class MessageLog:
    """What an FMU said during a run: its log messages and the statuses above ok of its calls,
    each with the simulation time. The first and the last ``KEEP_MESSAGES`` are kept, each cut
    at ``MAX_MESSAGE`` characters with control characters escaped; all are counted (an FMU
    that warns at every step of a long run costs memory for 2 × ``KEEP_MESSAGES`` only)."""

    def __init__(self) -> None:
        self.head: list[tuple[float, str, str, str]] = []
        self.tail: deque[tuple[float, str, str, str]] = deque(maxlen=KEEP_MESSAGES)
        self.count = 0

    def add(self, time: float | None, status: str, category: str, text: str) -> None:
        self.count += 1
        entry = (float("nan") if time is None else float(time), status,
                 printable(category, 100), printable(text, MAX_MESSAGE, newlines=True))
        (self.head if len(self.head) < KEEP_MESSAGES else self.tail).append(entry)

    def kept(self) -> list[tuple[float, str, str, str]]:
        """``(time, status, category, message)`` of the messages kept, in order."""
        return [*self.head, *self.tail]

    @property
    def dropped(self) -> int:
        return self.count - len(self.head) - len(self.tail)


_CALLBACKS: list = []  # cosim's one callbacks struct, kept alive for the life of the process


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
    instance = _INSTANCES.get(name)
    if instance is not None:
        category = category.decode("utf-8", "replace") if category else ""
        instance._record(label, category, text)  # noqa: SLF001 - the FMU's own callback


def _shared_callbacks():
    """cosim's one ``fmi2CallbackFunctions``: every instance's messages, formatted, to its log."""
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
        add_proxy = _private_logger_proxy()
        if add_proxy is not None:  # formats printf-style messages; else they come unformatted
            add_proxy(ctypes.byref(callbacks))
        _CALLBACKS.append(callbacks)
    return _CALLBACKS[0]


def _private_logger_proxy():
    """``addLoggerProxy`` of a private copy of fmpy's native log-formatting library, or None.

    The FMI logger is variadic, which ctypes cannot receive, so fmpy's small C library formats
    the message and forwards it to a Python logger. It keeps that logger in one static
    variable, and each ``addLoggerProxy`` call replaces it: had cosim used fmpy's library, its
    logger would have received the messages of every FMU fmpy runs in the process (fmpy's own
    printing silenced), and a later ``fmpy.simulate_fmu(logger=...)`` would have taken cosim's
    instances' messages (and crashed the process once that logger was garbage-collected). A
    copy of the file loaded from another path is a separate library with its own static.
    """
    try:
        import fmpy

        name = "logging" + fmpy.sharedLibraryExtension
        source = Path(fmpy.__file__).parent / "logging" / fmpy.platform / name
        folder = Path(tempfile.mkdtemp(prefix="cosim-logger-"))
        try:
            shutil.copyfile(source, folder / name)
            library = ctypes.CDLL(str(folder / name))
        finally:  # the loaded library stays mapped (removal fails harmlessly on Windows)
            shutil.rmtree(folder, ignore_errors=True)
        add_proxy = library.addLoggerProxy
    except (ImportError, OSError, AttributeError):
        return None
    add_proxy.argtypes = [ctypes.c_void_p]
    add_proxy.restype = None
    return add_proxy


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
