"""cosim: multiscale FMI co-simulation of medical digital twins."""

from importlib.metadata import PackageNotFoundError, version

from cosim.launcher import launched_by_mpi, limit_threads

if launched_by_mpi():
    limit_threads()  # one BLAS thread per rank, set before numpy loads (see cosim/launcher.py)

try:
    __version__ = version("cosim")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+source"
