"""The worker: the process that runs a scenario for a supervising ``cosim run`` process.

Started by ``cosim.running.supervise`` as ``python -m cosim.running.worker <folder>``. It reads
``request.json``
from the folder (scenario, output file, options), runs the scenario with a journal
(``cosim.master.journal``) the supervisor can read, and writes ``outcome.json`` (the exit code, the
text to print, the error). It never prints the run's report itself: the supervisor does, so the
words a user reads come from the process that cannot be taken down by an FMU.

SIGTERM (a cluster scheduler's time limit, or the supervisor passing on a Ctrl-C) ends the run
like Ctrl-C: the results written so far are kept, the file says ``interrupted``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from cosim.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_VERDICT_FAIL
from cosim.launcher import launched_by_mpi, limit_threads
from cosim.master.journal import STOP

_interrupted: list[str] = []  # the signal that asked this worker to stop, once received
_position: list[memoryview] = []  # the journal's slots, once the journal exists


def _stop(signum: int, frame) -> None:
    """SIGTERM/SIGINT: ask the run to stop at its next communication point
    (cosim.master.journal)."""
    if not _interrupted:
        _interrupted.append(signal.Signals(signum).name)
    if _position:
        _position[0][STOP] = 1
    else:  # nothing runs yet
        raise KeyboardInterrupt(_interrupted[0])


def main(folder: str) -> int:
    limit_threads()  # before numpy loads (cosim/launcher.py)
    folder = Path(folder)
    request = json.loads((folder / "request.json").read_text(encoding="utf-8"))
    if launched_by_mpi() and not request.get("members"):
        import cosim.running.pipeline  # noqa: F401 - loaded once, for this process and its fork
        from cosim.running.runner import prefork

        prefork(main)  # before MPI starts here: the member runner of a cohort, ready
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if launched_by_mpi():
        _exit_on(signal.SIGUSR1)
    from cosim.errors import CosimError
    from cosim.master.journal import Journal

    journal = Journal(folder / "journal")
    _position.append(journal.position)
    outcome: dict = {}
    try:
        if request.get("members"):
            _serve_members(request, journal)
            outcome = {"exit": EXIT_OK}
        else:
            report = _run(request, journal)
            outcome = {"exit": EXIT_VERDICT_FAIL if report.passed is False else EXIT_OK,
                       "text": report.text()}
    except KeyboardInterrupt:
        outcome = {"exit": EXIT_INTERRUPTED, "interrupted": _interrupted[0] if _interrupted
                   else "SIGINT"}
    except CosimError as error:
        outcome = {"exit": EXIT_ERROR, "error": str(error) + _memory_note(),
                   "every_rank": getattr(error, "every_rank", False)}
    except Exception as error:  # a bug in cosim: say so once, with the traceback for a report
        import traceback

        traceback.print_exc()
        outcome = {"exit": EXIT_ERROR, "error": f"internal error ({type(error).__name__}: "
                   f"{error}); this is a bug in cosim — please report it with the traceback "
                   "above"}
    temporary = folder / "outcome.tmp"
    temporary.write_text(json.dumps(outcome), encoding="utf-8")
    os.replace(temporary, folder / "outcome.json")
    journal.finish()
    if (outcome["exit"] in (EXIT_ERROR, EXIT_INTERRUPTED) and launched_by_mpi()
            and not outcome.get("every_rank")):
        os._exit(outcome["exit"])  # the other ranks are gone: MPI_Finalize would wait for them
    # else every rank ends the same way (an error found by all of them): MPI ends normally;
    # ended without MPI_Finalize, mpiexec took the job for crashed and killed the slower ranks
    return outcome["exit"]


def _run(request: dict, journal):
    """In one process: run into the partial file the supervisor claimed (``output``), the
    plot beside the target; under MPI: the whole of ``run_scenario`` (rank 0's worker claims
    and commits the target, ``target``)."""
    from cosim.running.mpi import size
    from cosim.running.pipeline import plotted, prepare, run_into, run_scenario

    scenario, target = _scenario(request), Path(request["target"])
    if size() > 1:
        return run_scenario(scenario, target, plot=request["plot"], journal=journal,
                            resume=_resume(request))
    prepared = prepare(scenario)
    report = run_into(prepared, Path(request["output"]), journal=journal,
                      resume=request.get("resume", False))
    if request["plot"]:
        report = plotted(report, prepared.scenario, report.results, target.with_suffix(".png"))
    report.results = target  # where the supervisor commits it
    return report


def _serve_members(request: dict, journal) -> None:
    """Members mode (``cosim.running.runner``): run the cohort members whose numbers arrive on stdin
    into the part file ``output``, each judged here and answered on ``reply_fd`` with how it
    ended (``cosim.running.runner.answer``)."""
    import pickle

    from cosim.errors import INTERRUPTED
    from cosim.running.runner import READY, answer
    from cosim.running.strategies import run_member

    with open(request["prepared"], "rb") as stream:  # written by this worker's parent rank
        prepared = pickle.load(stream)
    journal.describe_instances(list(prepared.graph.instances))
    journal.limit_calls(prepared.settings.call_timeout)
    part, reply = Path(request["output"]), int(request["reply_fd"])
    os.write(reply, READY + b"\n")
    for line in sys.stdin:
        end = run_member(part, int(line), prepared, journal)
        os.write(reply, answer(end))
        if end.status == INTERRUPTED:
            break


def _scenario(request: dict):
    """The request's scenario: its file, or the ``Scenario`` made in Python that the supervisor
    pickled (``description``)."""
    if request.get("description"):
        import pickle

        with open(request["description"], "rb") as stream:  # written by our supervisor
            return pickle.load(stream)
    return Path(request["scenario"])


def _resume(request: dict) -> bool | Path:
    """The request's ``resume``: False, True (the newest unfinished file) or a file."""
    value = request.get("resume", False)
    return Path(value) if isinstance(value, str) else bool(value)


def _exit_on(signum: int) -> None:
    """Exit at once on ``signum``, even while blocked inside MPI (a C-level handler: Python's
    handlers only run between bytecodes). The supervisor sends it to a worker waiting forever
    for a rank that died: an exit, unlike a death by signal, lets mpiexec end the job quietly."""
    import ctypes

    libc = ctypes.CDLL(None)
    libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.signal.restype = ctypes.c_void_p
    libc.signal(signum, ctypes.cast(libc._exit, ctypes.c_void_p))


def _memory_note() -> str:
    """Why an FMU may have failed: this process reached its memory limit (``--memory-limit``)."""
    import resource

    limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    if limit == resource.RLIM_INFINITY:
        return ""
    try:
        with open("/proc/self/status", encoding="ascii") as stream:
            peak = next(int(line.split()[1]) * 1024 for line in stream
                        if line.startswith("VmPeak:"))
    except (OSError, StopIteration, ValueError):
        return ""
    if peak < 0.9 * limit:
        return ""
    return (f"\n  the run reached its memory limit ({limit / 1e9:.1f} GB, --memory-limit): "
            "an allocation failed")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
