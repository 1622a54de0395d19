"""What ``cosim run`` would refuse before its first step, found by ``cosim check`` without running.

``scenario.build`` finds everything the files say is wrong (keys, types, units, ranges, binaries
named in the archive, …): run and check share it. What only the FMUs know shows when they start:
a parameter value their code refuses (the generator's ``mode_name: VVX``), a binary that does not
load, an initialisation that fails. ``trial_start`` does what a run does before its first step
(``Execution.start``: instantiate, set parameters, initialise) with the scenario's values, frees
everything, and turns a failure into a ``Problem`` at the instance's line. What the FMUs print
meanwhile is captured, not shown. Cohort members' drawn values are not tried (that would cost
one start per member); a member that does not start fails alone in ``run``.

The start runs in a forked child process (``cosim run`` runs under a supervisor for the same
reason): an FMU that crashes or never returns while starting ends that child, and ``check``
names the instance and the call from the position the child kept in shared memory
(``cosim.master.journal``). Its temporary files (the extracted FMUs) live in one folder the parent
removes whatever happened.
"""

from __future__ import annotations

import contextlib
import faulthandler
import mmap
import os
import pickle
import select
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import replace

from cosim.coupling.graph import CouplingGraph
from cosim.errors import FMUError, Problem, SimulationError
from cosim.master import journal
from cosim.master.description import Settings
from cosim.master.execution import Execution
from cosim.scenario.scenario import Scenario

_HINT = ("the FMU refused the instance's parameters or start values at initialisation (its "
         "messages above); `cosim run` stops there too")


def trial_start(scenario: Scenario, graph: CouplingGraph, settings: Settings
                ) -> tuple[list[Problem], int]:
    """Start every instance as ``run`` would, in a child process, then free them; the problems
    found, and how many lines the FMUs printed meanwhile."""
    shared = mmap.mmap(-1, journal.HEADER_BYTES)  # anonymous, shared with the child
    position = memoryview(shared).cast("q")
    folder = tempfile.mkdtemp(prefix="cosim_check_")
    read_end, write_end = os.pipe()
    for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
        stream.flush()
    try:
        pid = os.fork()
        if pid == 0:  # the child: start, report through the pipe, leave without clean-up
            os.close(read_end)
            faulthandler.disable()  # a crash here is the parent's to report, in one line
            tempfile.tempdir = folder
            try:
                reply = _start(scenario, graph, settings, position)
            except BaseException as error:  # noqa: BLE001 - whatever it is, the parent says it
                reply = ([Problem(f"cosim check failed while starting the instances: {error}")],
                         0)
            with open(write_end, "wb") as pipe:
                pipe.write(pickle.dumps(reply))
            os._exit(0)
        os.close(write_end)
        return _wait(pid, read_end, position, scenario, graph, settings.call_timeout)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        position.release()
        shared.close()


def _start(scenario: Scenario, graph: CouplingGraph, settings: Settings, position: memoryview
           ) -> tuple[list[Problem], int]:
    execution = Execution(graph, replace(settings, record={}), position=position)
    try:
        execution.run_start()
    except FMUError as error:
        return [_at_instance(scenario, p.key, p.message, p.hint) for p in error.problems], \
            execution.output.lines
    except SimulationError as error:
        said = [line for line in error.log if not line.startswith("[warning]")][-3:]
        message = f"does not start: {error.args[0]}" + "".join(
            "\n      FMU: " + line.replace("\n", "\n           ") for line in said)
        return [_at_instance(scenario, error.instance, message, _HINT)], execution.output.lines
    return [], execution.output.lines


def _wait(pid: int, pipe: int, position: memoryview, scenario: Scenario, graph: CouplingGraph,
          call_timeout: float) -> tuple[list[Problem], int]:
    """The child's reply; or, if it died or a call did not return, where that happened."""
    data, marker, since, status = b"", None, time.monotonic(), None
    with open(pipe, "rb", buffering=0) as reply:
        while status is None:
            if select.select([reply], [], [], 0.1)[0]:
                data += reply.read(1 << 16) or b""
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status = code
                data += reply.read() or b""
                break
            now = (position[journal.PHASE], position[journal.CALL])
            if now != marker:
                marker, since = now, time.monotonic()
            elif now[1] and time.monotonic() - since > call_timeout:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return [_lost(scenario, graph, position, f"did not return within "
                              f"{call_timeout:g} s (simulation.call_timeout)")], 0
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0 and data:
        return pickle.loads(data)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return [_lost(scenario, graph, position, f"crashed the process ({name})")], 0
    return [_lost(scenario, graph, position, "ended the process (exit code "
                  f"{os.WEXITSTATUS(status)}; exit() called in an FMU?)")], 0


def _lost(scenario: Scenario, graph: CouplingGraph, position: memoryview, what: str
          ) -> Problem:
    """A start that ended the child: at the instance it was in, from the shared position."""
    call = position[journal.CALL]
    names = graph.instances
    instance = names[(call - 1) // 4] if 0 < call <= 4 * len(names) else None
    phase = journal.PHASES[position[journal.PHASE]] if 0 <= position[
        journal.PHASE] < len(journal.PHASES) else "starting"
    return _at_instance(scenario, instance, f"the FMU {what} while {phase}",
                        "`cosim run` would stop there too; the FMU needs fixing by its maker "
                        "(isolation: process keeps it away from cosim's own process)")


def _at_instance(scenario: Scenario, name: str | None, message: str, hint: str | None
                 ) -> Problem:
    spec = scenario.instances.get(name or "")
    if spec is None:
        return Problem(message, file=str(scenario.file) if scenario.file else None, hint=hint)
    path = ("instances", spec.name, "parameters") if spec.parameters else ("instances",
                                                                           spec.name)
    return scenario.source(*path).problem(message, hint)
