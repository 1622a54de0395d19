"""MPI: which rank this is, and running scenarios over several ranks (mpi4py)."""

from __future__ import annotations

import os

_MPI_ENV = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")


def launched_by_mpi() -> bool:
    """Whether an MPI launcher started this process (avoids initialising MPI otherwise)."""
    return any(name in os.environ for name in _MPI_ENV)


def world():
    if not launched_by_mpi():
        return None
    from mpi4py import MPI

    return MPI.COMM_WORLD


def size() -> int:
    comm = world()
    return comm.Get_size() if comm is not None else 1


def rank() -> int:
    comm = world()
    return comm.Get_rank() if comm is not None else 0
