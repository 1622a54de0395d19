"""cosim: multiscale FMI co-simulation of medical digital twins."""

from cosim.launcher import launched_by_mpi, limit_threads

if launched_by_mpi():
    limit_threads()  # one BLAS thread per rank, set before numpy loads (see cosim/launcher.py)


def __getattr__(name: str):
    """``cosim.__version__``, read from the installed package's metadata when first asked
    (importing importlib.metadata costs ~20 ms, paid by every process otherwise)."""
    if name != "__version__":
        raise AttributeError(f"module 'cosim' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("cosim")
    except PackageNotFoundError:  # running from a source tree that was not installed
        return "0.0.0+source"
