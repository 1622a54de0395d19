"""Where an FMU instance runs: in the master's process, or alone in a child process.

``make_instance(fmu, name, isolation)`` is the instance factory ``System`` calls. With
``Isolation(mode="process")`` it returns a ``ProcessInstance``: the same methods and attributes
as ``cosim.fmi.fmu.Instance`` (``instantiate … do_step … close``, ``name``, ``fmu``, ``log``,
``phase``, ``time``), with the FMU loaded and called in a child process
(``cosim.fmi.isolation_child``). What the FMU does there (crash, hang, exhaust memory, rewrite
Python modules) cannot reach the master, the results file or other instances; what it costs
and what it does not protect against is in ``docs/isolation.md``.

The hot path is one round trip per step: ``set_inputs`` only marks the inputs (which
``System.gather`` writes straight into shared memory) as changed, ``do_step`` sends one
request that sets them, steps and writes the outputs back into shared memory, and
``get_outputs`` copies those into the signal array, asking the child again only when the
inputs or the state changed after the last step.

Any failure ends as a ``SimulationError`` naming the instance, the FMI call and the time: an
error status (with the FMU's log, as in one process), a crash (the signal or exit code, and the
last lines the child printed), a call that does not return within ``Isolation.timeout`` (the
child is killed), or a reply that breaks the protocol. The child process and its temporary
folder (the FMU's extraction) are removed when the instance closes, fails, is garbage
collected, or Python exits.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import mmap
import os
import pickle
import select
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time as clock
import weakref
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cosim.errors import FMUError, Problem, SimulationError
from cosim.fmi.fmu import FMU, MAX_MESSAGE, Instance, MessageLog
from cosim.fmi.instances import new_instance
from cosim.fmi.isolation_child import (
    CALL,
    FAILED,
    HEADER_BYTES,
    IN_STEP,
    INPUTS_CHANGED,
    MAX_REPLY_BYTES,
    OK,
    OPEN,
    OUTPUTS,
    REPLY,
    REQUEST,
    STEP,
    STEP_ARGS,
)
from cosim.fmi.measured import MEASURED

MODES = ("none", "process")
DEFAULT_TIMEOUT = 60.0  # seconds one FMI call into a child process may take
CLOSE_TIMEOUT = 10.0  # at most this long for terminate + free when closing
MEMORY_NEAR_LIMIT = 0.8  # a failure with the peak memory above this share of the limit
PHASES = ("created", "instantiated", "initializing", "stepping", "ended", "terminated", "freed",
          "fatal")
# what a method call does in FMI terms, for messages
FUNCTIONS = {"instantiate": "fmi2Instantiate", "setup_experiment": "fmi2SetupExperiment",
             "enter_initialization_mode": "fmi2EnterInitializationMode",
             "exit_initialization_mode": "fmi2ExitInitializationMode",
             "terminate": "fmi2Terminate", "free": "fmi2FreeInstance",
             "close": "fmi2Terminate/fmi2FreeInstance", "set": "fmi2Set…",
             "get": "fmi2Get…", "bind": "binding inputs and outputs",
             "get_state": "fmi2GetFMUstate", "set_state": "fmi2SetFMUstate",
             "free_state": "fmi2FreeFMUstate", "serialize_state": "fmi2SerializeFMUstate",
             "restore_state": "fmi2DeSerializeFMUstate/fmi2SetFMUstate",
             "open": "starting the FMU's process"}


def default_memory_mb() -> float:
    """Half of this machine's physical memory, in MB: the default limit of a child."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 / 1e6


@dataclass(frozen=True)
class Isolation:
    """How one instance is isolated: ``mode`` none (in the master's process) or process."""

    mode: str = "none"
    timeout: float = DEFAULT_TIMEOUT  # s: longest FMI call (a step) in a child process
    memory_mb: float | None = None  # MB of data memory a child may use (None: half of RAM)

    @property
    def process(self) -> bool:
        return self.mode == "process"


def make_instance(fmu: FMU, name: str, isolation: Isolation | None = None,
                  interface: str | None = None, solver: Any = None
                  ) -> Instance | ProcessInstance:
    """The instance factory: in this process, or in a child process; ``interface`` and
    ``solver``: how it runs (``cosim.fmi.instances.new_instance``). A measured source (no
    binary) always runs here."""
    if isolation is not None and isolation.process and MEASURED not in fmu.interfaces:
        return ProcessInstance(fmu, name, isolation, interface, solver)
    return new_instance(fmu, name, interface, solver)


def isolation_by_instance(graph) -> dict[str, Isolation | None]:
    """Each instance's isolation as run: what the graph says, plus the FMI rule that an FMU
    declaring ``canBeInstantiatedOnlyOncePerProcess`` has at most one instance in this
    process — its later instances (declaration order) run in child processes."""
    chosen: dict[str, Isolation | None] = {}
    in_process: set[str] = set()
    for name in graph.instances:
        isolation, fmu = graph.isolation(name), graph.fmu(name)
        if fmu.only_once_per_process and not (isolation and isolation.process):
            if fmu.guid in in_process:
                isolation = dataclasses.replace(isolation or Isolation(), mode="process")
            else:
                in_process.add(fmu.guid)
        chosen[name] = isolation
    return chosen


@dataclass(frozen=True)
class ChildState:
    """An FMU state kept in the child process (``get_state`` → ``set_state``)."""

    handle: int


class _Child:
    """A child process and what belongs to it; ``stop()`` ends and removes all of it."""

    def __init__(self, name: str, memory_mb: float | None):
        self.workdir = Path(tempfile.mkdtemp(prefix=f"cosim_isolated_{name}_"))
        self.output = self.workdir / "output.log"  # the child's stdout and stderr
        command_read, self.commands = os.pipe()
        self.replies, reply_write = os.pipe()
        self.shared = os.memfd_create(f"cosim-{name}")
        memory = memory_mb if memory_mb is not None else default_memory_mb()
        self.stopped = False
        try:
            with open(self.output, "wb") as output:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "cosim.fmi.isolation_child", str(command_read),
                     str(reply_write), str(self.shared), str(os.getpid()),
                     str(int(memory * 1e6))],
                    pass_fds=(command_read, reply_write, self.shared), stdin=subprocess.DEVNULL,
                    stdout=output, stderr=subprocess.STDOUT, cwd=self.workdir,
                    env=_child_environment(self.workdir), start_new_session=True)
        except BaseException:
            for fd in (self.commands, self.replies, self.shared):
                os.close(fd)
            shutil.rmtree(self.workdir, ignore_errors=True)
            raise
        finally:
            os.close(command_read)
            os.close(reply_write)
        os.set_blocking(self.commands, False)
        self.poll_in = select.poll()
        self.poll_in.register(self.replies, select.POLLIN)
        self.poll_out = select.poll()
        self.poll_out.register(self.commands, select.POLLOUT)

    def stop(self, wait: float = 2.0) -> int | None:
        """Close the pipes, let the child exit (kill it after ``wait`` s), remove its folder;
        returns its exit status (negative: the signal that ended it)."""
        if self.stopped:
            return self.process.returncode
        self.stopped = True
        for fd in (self.commands, self.replies, self.shared):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            self.process.wait(wait)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
        return self.process.returncode

    def output_tail(self, count: int = 5) -> list[str]:
        """What the child printed last; after a crash, where it crashed (faulthandler's
        report, innermost frames first)."""
        try:
            with open(self.output, "rb") as stream:
                stream.seek(max(0, stream.seek(0, os.SEEK_END) - 8000))
                text = stream.read().decode("utf-8", "replace")
        except OSError:
            return []
        lines = [line.rstrip() for line in text.splitlines() if line.strip()]
        crash = [i for i, line in enumerate(lines) if line.startswith("Fatal Python error")]
        lines = lines[crash[-1]:][:count] if crash else lines[-count:]
        return [f"[process output] {line}" for line in lines]


def _child_environment(workdir: Path) -> dict[str, str]:
    """The parent's environment without MPI's variables, with temporary files in ``workdir``
    and this copy of cosim importable."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PMI_", "PMIX_", "OMPI_", "HYDRA_", "MPI_"))}
    env["TMPDIR"] = str(workdir)
    package_root = str(Path(__file__).resolve().parents[2])
    if package_root not in {*site.getsitepackages(), site.getusersitepackages()}:
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_root, env.get("PYTHONPATH")) if p)  # a source tree
    return env


class ProcessInstance:
    """An FMU instance run in a child process; a drop-in for ``cosim.fmi.fmu.Instance``.

    The child starts when the instance is made, so the children of a system boot side by side
    while it is built; ``instantiate`` waits for it to be ready.
    """

    keep_state = None  # a rollback keeps this instance's state as bytes (System.keep)
    return_to_kept_state = None

    def __init__(self, fmu: FMU, name: str, isolation: Isolation, interface: str | None = None,
                 solver: Any = None):
        if not hasattr(os, "memfd_create"):
            raise SimulationError("isolation: process needs Linux (memfd, prctl); here FMUs "
                                  "can only run in cosim's process", instance=name)
        self.fmu = fmu
        self.name = name
        self.isolation = isolation
        self.interface, self.solver = interface, solver
        self.structural: dict[str, Any] = {}  # structural parameters set (array sizes)
        self.log: deque[str] = deque(maxlen=50)
        self.messages = MessageLog()  # what the FMU said, as its process relays it
        self.phase = "created"
        self.time: float | None = None
        self.ended_at: float | None = None  # when the FMU ended the simulation itself
        self._child = _Child(name, isolation.memory_mb)
        weakref.finalize(self, self._child.stop)
        self._ready = False  # the child said it is ready (its imports are done)
        self._broken = False  # a request was interrupted: the wire is out of step
        self._inputs_changed = False
        self._outputs_fresh = False
        self._shared_outputs = self._output_buffer = self._marker = None

    # -- lifecycle -------------------------------------------------------------------------
    def instantiate(self) -> None:
        """Wait for the child process, load the FMU there and create the FMI component."""
        if self.phase != "created":
            raise SimulationError(f"instantiate() called in phase '{self.phase}', needs "
                                  "'created'", instance=self.name)
        fmu = dataclasses.replace(self.fmu, _unzip_dir=None)
        self._request(OPEN, pickle.dumps((fmu, self.name, self.interface, self.solver)), "open",
                      self.time)
        self._call("instantiate")

    def setup_experiment(self, start: float, stop: float | None = None) -> None:
        self._call("setup_experiment", start, stop)

    def enter_initialization_mode(self) -> None:
        self._call("enter_initialization_mode")

    def exit_initialization_mode(self) -> None:
        self._call("exit_initialization_mode")

    def terminate(self) -> None:
        self._call("terminate")

    def free(self) -> None:
        if self._usable() and self.phase not in ("created", "freed"):
            try:
                self._call("free", timeout=min(self.isolation.timeout, CLOSE_TIMEOUT))
            except SimulationError:
                pass
        self._stop()
        self.phase = "freed"

    def close(self) -> None:
        """Terminate and free the FMU, end the child and remove its folder; never raises."""
        if self._usable() and self.phase not in ("created", "freed"):
            try:
                self._call("close", timeout=min(self.isolation.timeout, CLOSE_TIMEOUT))
            except SimulationError:
                pass
        self._stop()
        if self.phase != "fatal":
            self.phase = "freed"

    # -- values by name ----------------------------------------------------------------------
    def set(self, values: Mapping[str, Any]) -> None:
        self._call("set", dict(values))
        self.structural.update({n: v for n, v in values.items()
                                if self.fmu.variables[n].causality == "structuralParameter"})

    def get(self, names: Iterable[str]) -> dict[str, Any]:
        names = list(names)
        result = self._call("get", names)
        if (not isinstance(result, dict) or set(result) != set(names) or not all(
                isinstance(v, (int, float, bool, str)) for v in result.values())):
            raise self._broken_wire("get", "values for other variables than asked")
        return {name: result[name] for name in names}

    # -- the hot path ------------------------------------------------------------------------
    def bind(self, inputs: Sequence[str], outputs: Sequence[str], output_buffer: np.ndarray
             ) -> np.ndarray:
        """As ``Instance.bind``; the returned input buffer is memory shared with the child."""
        inputs_size = sum(self.fmu.size(n, self.structural) for n in inputs)
        size = HEADER_BYTES + 8 * (inputs_size + len(output_buffer))
        os.ftruncate(self._child.shared, size)
        memory = mmap.mmap(self._child.shared, size)
        self._marker = memoryview(memory)[:4].cast("i")
        shared_inputs = np.frombuffer(memory, np.float64, inputs_size, HEADER_BYTES)
        self._shared_outputs = np.frombuffer(memory, np.float64, len(output_buffer),
                                             HEADER_BYTES + 8 * inputs_size)
        self._output_buffer = output_buffer
        self._call("bind", list(inputs), list(outputs), inputs_size, len(output_buffer))
        return shared_inputs

    def set_inputs(self) -> None:
        """Mark the inputs as changed: the next request sets them first."""
        self._inputs_changed = True

    def get_outputs(self) -> None:
        if self._inputs_changed or not self._outputs_fresh:
            self._exchange(OUTPUTS, b"", "fmi2GetReal", self.time)
            self._outputs_fresh = True
        self._output_buffer[:] = self._shared_outputs

    def do_step(self, time: float, step: float) -> bool | None:
        """Set changed inputs, ``fmi2DoStep`` and read the outputs: one round trip. True when
        the FMU ended the simulation (as ``Instance.do_step``)."""
        reply = self._request(STEP, STEP_ARGS.pack(time, step), "fmi2DoStep", time)
        if reply is not None:
            self._take_log(reply)  # what it said during the step, at the step's start time
        self.time = time + step
        self._outputs_fresh = True
        if reply is None:
            return None
        if not isinstance(reply.get("ended_at"), (float, int)):
            return None
        self.phase, self.ended_at = "ended", float(reply["ended_at"])
        self.time = self.ended_at
        return True

    # -- FMU state ---------------------------------------------------------------------------
    def get_state(self) -> ChildState:
        handle = self._call("get_state")
        if not isinstance(handle, int):
            raise self._broken_wire("get_state", "no state handle")
        return ChildState(handle)

    def set_state(self, state: ChildState) -> None:
        self._call("set_state", state.handle)

    def free_state(self, state: ChildState) -> None:
        self._call("free_state", state.handle)

    def serialize_state(self) -> bytes:
        data = self._call("serialize_state")
        try:
            return base64.b64decode(data, validate=True)
        except (TypeError, ValueError):
            raise self._broken_wire("serialize_state", "a state that is not base64") from None

    def restore_state(self, data: bytes) -> None:
        self._call("restore_state", base64.b64encode(data).decode("ascii"))

    # -- the wire ----------------------------------------------------------------------------
    def _call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """A method run by the child's ``Instance``; returns its result."""
        payload = json.dumps({"method": method, "args": list(args)}, default=_plain).encode()
        self._outputs_fresh = False
        reply = self._request(CALL, payload, method, self.time, timeout)
        if not isinstance(reply, dict) or reply.get("phase") not in PHASES or not isinstance(
                reply.get("time"), (float, int, type(None))):
            raise self._broken_wire(method, "a reply without phase and time")
        self.phase, self.time = reply["phase"], reply["time"]
        self._take_log(reply)
        return reply.get("result")

    def _exchange(self, operation: int, payload: bytes, function: str, time: float | None
                  ) -> None:
        reply = self._request(operation, payload, function, time)
        if reply is not None:
            self._take_log(reply)

    def _request(self, operation: int, payload: bytes, what: str, time: float | None,
                 timeout: float | None = None) -> Any:
        """Send one request and wait for its reply (``what``: a method or an FMI call)."""
        if not self._usable():
            raise SimulationError(f"{FUNCTIONS.get(what, what)} called after the FMU's "
                                  f"process ended (phase '{self.phase}')", instance=self.name,
                                  time=time)
        flags = INPUTS_CHANGED if self._inputs_changed else 0
        self._broken = True  # until the reply is in: an interruption leaves the wire unusable
        if not self._ready:
            self._receive("open", time)
            self._ready = True
        deadline = clock.monotonic() + (timeout or self.isolation.timeout)
        self._send(REQUEST.pack(operation, flags, len(payload)) + payload, deadline, what, time)
        self._inputs_changed = False
        reply = self._receive(what, time, deadline)
        self._broken = False
        return reply

    def _send(self, data: bytes, deadline: float, what: str, time: float | None) -> None:
        view = memoryview(data)
        child = self._child
        while view:
            try:
                view = view[os.write(child.commands, view):]
            except BlockingIOError:
                if not child.poll_out.poll(max(0.0, deadline - clock.monotonic()) * 1000):
                    raise self._lost(what, time, hung=True) from None
            except OSError:  # the child closed its end: it has ended
                raise self._lost(what, time) from None

    def _receive(self, what: str, time: float | None, deadline: float | None = None) -> Any:
        """One reply: ``None`` or its JSON payload; raises the child's error when it failed."""
        if deadline is None:
            deadline = clock.monotonic() + self.isolation.timeout
        status, size = REPLY.unpack(self._read(REPLY.size, deadline, what, time))
        if status not in (OK, FAILED) or size > MAX_REPLY_BYTES:
            raise self._broken_wire(what, "a malformed reply")
        reply = None
        if size:
            try:
                reply = json.loads(self._read(size, deadline, what, time))
            except (ValueError, UnicodeDecodeError):
                raise self._broken_wire(what, "a reply that is not JSON") from None
        if status == FAILED:
            self._broken = False
            raise self._child_error(reply, what, time)
        return reply

    def _read(self, size: int, deadline: float, what: str, time: float | None) -> bytes:
        child = self._child
        data = b""
        while len(data) < size:
            if not child.poll_in.poll(max(0.0, deadline - clock.monotonic()) * 1000):
                raise self._lost(what, time, hung=True)
            chunk = os.read(child.replies, size - len(data))
            if not chunk:
                raise self._lost(what, time)
            data += chunk
        return data

    # -- failures ----------------------------------------------------------------------------
    def _child_error(self, reply: Any, what: str, time: float | None) -> Exception:
        """The error the child reported, raised here as cosim's own exception."""
        if not isinstance(reply, dict) or reply.get("phase") not in PHASES:
            return self._broken_wire(what, "an unreadable error")
        self.phase = reply["phase"]
        function = FUNCTIONS.get(what, what)
        if reply.get("kind") == "fmu" and isinstance(reply.get("problems"), list):
            return FMUError([Problem(str(p.get("message")), file=_text(p.get("file")),
                                     key=_text(p.get("key")), hint=_text(p.get("hint")))
                             for p in reply["problems"] if isinstance(p, dict)])
        log = reply.get("log") if isinstance(reply.get("log"), list) else []
        self._heard(log)
        if reply.get("kind") == "memory":
            message = (f"{function}: the FMU's process ran out of memory (limit "
                       f"{self._memory_mb():.0f} MB, isolation memory)")
        else:
            message = str(reply.get("message", "failed"))
            function = _text(reply.get("function")) or function
            peak, limit = reply.get("peak_mb"), self._memory_mb()
            if isinstance(peak, (int, float)) and peak >= MEMORY_NEAR_LIMIT * limit:
                message += (f"; its process had used {peak:.0f} MB of its {limit:.0f} MB "
                            "limit (isolation memory): it probably ran out of memory")
        when = reply.get("time") if isinstance(reply.get("time"), (int, float)) else time
        return SimulationError(message, instance=self.name, function=function, time=when,
                               log=list(self.log))

    def _lost(self, what: str, time: float | None, hung: bool = False) -> SimulationError:
        """The child crashed, exited or hangs: end it and say which call, when and why."""
        function = FUNCTIONS.get(what, what)
        if what in ("fmi2DoStep", "fmi2GetReal") and self._marker is not None:
            function = IN_STEP[self._marker[0]] if 0 < self._marker[0] < len(IN_STEP) \
                else function
        child = self._child
        if hung:
            child.process.kill()
        else:
            try:
                child.process.wait(2.0)
            except subprocess.TimeoutExpired:
                child.process.kill()
        child.process.wait()
        tail = child.output_tail()
        code = child.process.returncode
        if hung:
            cause = (f"did not return within {self.isolation.timeout:g} s "
                     "(simulation.call_timeout); its process was stopped")
        elif code is not None and code < 0:
            cause = f"did not return: the FMU's process was killed by {_signal_text(-code)}"
            if -code == signal.SIGKILL:
                cause += " (by the system's out-of-memory killer, or by someone else)"
        else:
            cause = f"did not return: the FMU's process exited with code {code}"
        self._stop()
        self.phase = "fatal"
        self._broken = False
        return SimulationError(f"{function} {cause}", instance=self.name, function=function,
                               time=time, log=list(self.log) + tail)

    def _broken_wire(self, what: str, detail: str) -> SimulationError:
        """A reply the protocol does not allow: the child is not trusted any further."""
        self._child.process.kill()
        self._stop()
        self.phase = "fatal"
        self._broken = False
        function = FUNCTIONS.get(what, what)
        return SimulationError(f"{function}: the FMU's process sent {detail}; it was stopped",
                               instance=self.name, function=function, time=self.time,
                               log=list(self.log))

    def _take_log(self, reply: Any) -> None:
        if isinstance(reply, dict) and isinstance(reply.get("log"), list):
            self._heard(reply["log"][-50:])

    def _heard(self, lines: list) -> None:
        """Lines ``[status] text`` the child relayed from its instance's log."""
        for line in lines:
            text = str(line)[:MAX_MESSAGE]
            status, bracket, rest = text[1:].partition("] ")
            if not (text.startswith("[") and bracket):
                status, rest = "ok", text
            self.messages.add(self.time, status, "", rest)
            self.log.append(text)

    def _usable(self) -> bool:
        return not self._broken and self.phase != "fatal" and not self._child.stopped

    def _memory_mb(self) -> float:
        return self.isolation.memory_mb or default_memory_mb()

    def _stop(self) -> None:
        self._child.stop()


def _signal_text(number: int) -> str:
    try:
        return f"{signal.Signals(number).name} ({signal.strsignal(number)})"
    except ValueError:
        return f"signal {number}"


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _plain(value: Any) -> Any:
    """numpy scalars as plain Python values for JSON."""
    return value.item()
