#!/usr/bin/env bash
# Set-up from a fresh clone: a virtual environment in .venv with cosim and everything it needs
# (MPI from the mpich wheel, so `mpiexec` is .venv/bin/mpiexec), then the model library built
# from fmus/ into build/fmus/ (the C models with the system C compiler: cc or gcc, or $CC).
# Safe to run again: it only does what is missing or stale (an FMU is rebuilt only when its
# sources, documentation or build tools changed).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: cosim needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
.venv/bin/cosim build-fmus
