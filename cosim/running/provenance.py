"""What produced a results file: cosim's version and commit, the host, the command line, and
the SHA-256 of the inputs (scenario file, cohort table; the FMUs' are recorded per instance).

Everything here is read from this process and the files, never from the network; a value that
cannot be known is ``"none"``, never a guess.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import cosim

CHECKOUT = Path(cosim.__file__).resolve().parent.parent  # a git checkout when run from source


def source_commit(root: Path = CHECKOUT) -> tuple[str, bool | None]:
    """``(commit, modified)`` of the git checkout cosim runs from; ``("none", None)`` when it
    does not run from one (an installed package) or git is not available."""
    if not (root / ".git").exists():
        return "none", None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True)
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                                 "--untracked-files=no"], capture_output=True, text=True,
                                timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "none", None
    return commit.stdout.strip(), bool(status.stdout.strip())


COMMAND_LINE = "COSIM_COMMAND_LINE"  # set by ``cosim run``'s supervisor for its worker


def command_line(argv: list[str] | None = None) -> str:
    """The command as the user typed it: ``cosim run s.yaml -o x.h5`` (program name only).
    In a supervised worker: the supervisor's command (``COSIM_COMMAND_LINE``), not the
    worker's own."""
    if argv is None and os.environ.get(COMMAND_LINE):
        return os.environ[COMMAND_LINE]
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return ""
    return shlex.join([Path(argv[0]).name, *argv[1:]])


def file_sha256(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def measured_provenance(table) -> dict[str, Any]:
    """What a results file says of a measured data file (``cosim.fmi.measured.Table``), by its
    ``store``: ``full`` and ``hash``: its SHA-256, columns and units, samples (``full`` also
    copies the data: ``cosim.fmi.measured.store_measured``); ``none``: only that there was one.
    Never the file's path or name (they may name the patient)."""
    if table.store == "none":
        return {"store": "none"}
    return {"store": table.store, "sha256": table.sha256, "samples": len(table.time),
            "columns": dict(table.units), "interpolation": table.interpolation}


def run_provenance(scenario) -> dict[str, Any]:
    """Root attributes naming the software, machine, command and inputs of a run."""
    commit, modified = source_commit()
    info: dict[str, Any] = {
        "cosim_version": cosim.__version__,
        "cosim_commit": commit,
        "cosim_modified": {None: "none", True: "yes", False: "no"}[modified],
        "host": socket.gethostname(),
        "command_line": command_line(),
        "scenario_file": str(Path(scenario.file).resolve()) if scenario.file else "none",
        "scenario_sha256": scenario.sha256,
    }
    if getattr(scenario, "patient", ""):
        info["patient"] = scenario.patient
    measured = getattr(scenario, "measured", {})
    if measured:
        info["measured_data"] = {name: measured_provenance(table)
                                 for name, table in measured.items()}
    cohort = scenario.cohort
    if isinstance(cohort, dict) and cohort.get("method") == "table" and scenario.file:
        table = (Path(scenario.file).parent / str(cohort.get("table"))).resolve()
        info["cohort_table"] = {"file": str(table), "sha256": file_sha256(table)}
    return info
