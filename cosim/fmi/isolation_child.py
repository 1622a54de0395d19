"""The child process of an isolated FMU instance: one ``cosim.fmi.fmu.Instance`` run for its parent.

``cosim.fmi.isolation.ProcessInstance`` starts it as::

    python -m cosim.fmi.isolation_child COMMAND_FD REPLY_FD SHARED_FD PARENT_PID MEMORY_BYTES

and then drives it with requests on ``COMMAND_FD``; each gets exactly one reply on
``REPLY_FD``. The FMU's binary, its extraction folder, its Python objects (a pythonfmu model)
and its memory live here only: whatever it does, the parent's process stays as it was.

The wire (little-endian; this module only defines it, ``cosim.fmi.isolation`` speaks it too):

- request: ``REQUEST`` (operation, flags, payload size), then the payload. ``OPEN``: a pickle of
  ``(FMU, instance name, interface, solver)`` (the parent is trusted); ``CALL``: JSON
  ``{"method", "args"}`` for the instance's lifecycle and by-name methods; ``STEP``:
  ``STEP_ARGS`` (time, step size); ``OUTPUTS``: nothing. Flag ``INPUTS_CHANGED``: set the
  inputs from shared memory first.
- reply: ``REPLY`` (status ``OK``/``FAILED``, payload size), then JSON. The parent trusts
  nothing in a reply: it is parsed as JSON (never unpickled) with a size limit.
- shared memory (a memfd sized by ``bind``): an int32 naming the FMI call in progress during a
  step (so a crash can name it), padding to ``HEADER_BYTES``, the inputs (float64), the
  outputs (float64). A ``STEP`` sets the inputs, steps and writes the outputs: one round trip.

Before anything else the child asks the kernel to kill it when its parent dies, limits its
memory (``RLIMIT_DATA``), ignores Ctrl-C (the parent decides) and turns on ``faulthandler``
(a crash prints the Python stack to the child's output file, which the parent quotes).
"""

from __future__ import annotations

import base64
import ctypes
import faulthandler
import json
import mmap
import os
import pickle
import resource
import signal
import struct
import sys
from collections import deque
from typing import Any

REQUEST = struct.Struct("<BBI")  # operation, flags, payload bytes
REPLY = struct.Struct("<BI")  # status, payload bytes
STEP_ARGS = struct.Struct("<dd")  # time, step size
OPEN, CALL, STEP, OUTPUTS = 1, 2, 3, 4
INPUTS_CHANGED = 1
OK, FAILED = 0, 1
HEADER_BYTES = 8
IN_STEP = ("", "fmi2SetReal", "fmi2DoStep", "fmi2GetReal")  # the shared int32 -> FMI call
MAX_REPLY_BYTES = 64 << 20  # the parent refuses longer replies (a serialised state is one)
MAX_LOG_LINES, MAX_LOG_CHARS = 50, 2000
PR_SET_PDEATHSIG = 1


class _Tap(deque):
    """An instance's log that also keeps the lines the parent has not seen yet."""

    def __init__(self) -> None:
        super().__init__(maxlen=MAX_LOG_LINES)
        self.unseen: deque[str] = deque(maxlen=MAX_LOG_LINES)

    def append(self, line: str) -> None:
        line = line[:MAX_LOG_CHARS]
        super().append(line)
        self.unseen.append(line)

    def take(self) -> list[str]:
        lines = list(self.unseen)
        self.unseen.clear()
        return lines


class _Host:
    """Serves requests for one instance until the parent closes it or goes away."""

    def __init__(self, commands: int, replies: int, shared: int):
        self.commands, self.replies, self.shared = commands, replies, shared
        self.instance = None
        self.states: dict[int, Any] = {}
        self.marker = None  # int32 view of the shared header
        self.shared_inputs = self.inputs = None

    def serve(self) -> None:
        self.reply(OK, None)  # ready: imports done
        while True:
            header = _read(self.commands, REQUEST.size)
            if header is None:
                return  # the parent closed the pipe (it ended or gave up on us)
            operation, flags, size = REQUEST.unpack(header)
            payload = _read(self.commands, size) if size else b""
            if payload is None:
                return
            try:
                if flags & INPUTS_CHANGED:
                    self.marker[0] = 1
                    self.inputs[:] = self.shared_inputs
                    self.instance.set_inputs()
                if operation == STEP:
                    ended = self.step(*STEP_ARGS.unpack(payload))
                    result = self.news()
                    if ended:  # the FMU ended the simulation (terminateSimulation)
                        result = {**(result or {}), "ended_at": self.instance.ended_at}
                elif operation == OUTPUTS:
                    self.marker[0] = 3
                    self.instance.get_outputs()
                    self.marker[0] = 0
                    result = self.news()
                elif operation == CALL:
                    request = json.loads(payload)
                    result = self.call(request["method"], request.get("args", []))
                elif operation == OPEN:
                    self.open(*pickle.loads(payload))
                    result = None
                else:
                    raise ValueError(f"unknown request {operation}")
            except BaseException as error:  # noqa: BLE001 - every failure goes to the parent
                self.reply(FAILED, self.describe(error))
                continue
            self.reply(OK, result)
            if operation == CALL and request["method"] in ("close", "free"):
                return

    def step(self, time: float, step: float) -> bool | None:
        """``do_step`` then ``get_outputs``; True when the FMU ended the simulation."""
        marker, instance = self.marker, self.instance
        marker[0] = 2
        ended = instance.do_step(time, step)
        marker[0] = 3
        instance.get_outputs()
        marker[0] = 0
        return ended

    def news(self) -> dict | None:
        """New FMU log lines for the parent, if any (None keeps a step's reply empty)."""
        if self.instance is None or not self.instance.log.unseen:
            return None
        return {"log": self.instance.log.take()}

    def open(self, fmu, name: str, interface: str | None, solver) -> None:
        from cosim.fmi.instances import new_instance

        self.instance = new_instance(fmu, name, interface, solver)
        self.instance.log = _Tap()

    def call(self, method: str, args: list) -> dict:
        instance = self.instance
        result = None
        if method == "bind":
            result = self.bind(*args)
        elif method == "get":
            result = instance.get(*args)
        elif method == "get_state":
            state = instance.get_state()
            result = len(self.states) + 1
            while result in self.states:
                result += 1
            self.states[result] = state
        elif method in ("set_state", "free_state"):
            state = self.states[args[0]]
            getattr(instance, method)(state)
            if method == "free_state":
                del self.states[args[0]]
        elif method == "serialize_state":
            result = base64.b64encode(instance.serialize_state()).decode("ascii")
        elif method == "restore_state":
            instance.restore_state(base64.b64decode(args[0], validate=True))
        elif method in ("instantiate", "setup_experiment", "enter_initialization_mode",
                        "exit_initialization_mode", "terminate", "set", "free", "close"):
            getattr(instance, method)(*args)
        else:
            raise ValueError(f"unknown method {method!r}")
        return {"result": result, "phase": instance.phase, "time": instance.time,
                "log": instance.log.take()}

    def bind(self, inputs: list[str], outputs: list[str], inputs_size: int, outputs_size: int
             ) -> None:
        import numpy as np

        size = HEADER_BYTES + 8 * (inputs_size + outputs_size)
        memory = mmap.mmap(self.shared, size)
        self.marker = memoryview(memory)[:4].cast("i")
        self.shared_inputs = np.frombuffer(memory, np.float64, inputs_size, HEADER_BYTES)
        outputs_view = np.frombuffer(memory, np.float64, outputs_size,
                                     HEADER_BYTES + 8 * inputs_size)
        self.inputs = self.instance.bind(inputs, outputs, outputs_view)

    def describe(self, error: BaseException) -> dict:
        """An exception as data the parent can check and raise again as its own."""
        from cosim.errors import ScenarioError, SimulationError

        phase = self.instance.phase if self.instance is not None else "created"
        if self.instance is not None:
            self.instance.log.take()
        if isinstance(error, SimulationError):
            return {"kind": "simulation", "message": str(error.args[0]),
                    "function": error.function, "time": error.time,
                    "log": [str(line) for line in error.log], "phase": phase,
                    "peak_mb": _peak_memory_mb()}
        if isinstance(error, ScenarioError):
            return {"kind": "fmu", "phase": phase,
                    "problems": [{"message": p.message, "file": p.file, "key": p.key,
                                  "hint": p.hint} for p in error.problems]}
        if isinstance(error, MemoryError):
            return {"kind": "memory", "phase": phase}
        return {"kind": "other", "message": f"{type(error).__name__}: {error}", "phase": phase}

    def reply(self, status: int, payload: Any) -> None:
        data = b"" if payload is None else json.dumps(payload, default=_plain).encode()
        if len(data) > MAX_REPLY_BYTES:
            status, data = FAILED, json.dumps({"kind": "other", "message": "reply too long",
                                               "phase": "fatal"}).encode()
        _write(self.replies, REPLY.pack(status, len(data)) + data)


def _peak_memory_mb() -> float | None:
    """The most memory this process has held (peak resident set, VmHWM), in MB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except (OSError, ValueError, IndexError):
        pass
    return None


def _plain(value: Any) -> Any:
    """numpy scalars (and anything with ``item()``) as plain Python values for JSON."""
    return value.item()


def _read(fd: int, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _prepare(parent: int, memory_bytes: int) -> None:
    """Die with the parent, limit memory, leave Ctrl-C to the parent, report crashes."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)
    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    faulthandler.enable()


def main(argv: list[str]) -> None:
    commands, replies, shared, parent, memory_bytes = (int(a) for a in argv)
    _prepare(parent, memory_bytes)
    from cosim.launcher import limit_threads

    limit_threads()  # as in the parent's process: one BLAS/OpenMP thread
    import cosim.fmi.fmu  # noqa: F401 - loaded before the parent is told we are ready

    _Host(commands, replies, shared).serve()


if __name__ == "__main__":
    main(sys.argv[1:])
