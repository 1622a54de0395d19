"""Process set-up done before numpy loads: MPI detection and one thread per process for BLAS.

BLAS and OpenMP thread pools (numpy's and scipy's OpenBLAS, MKL, an FMU's own OpenMP code)
size themselves to every core of the machine, and OpenBLAS workers busy-wait for a while after
each call that woke them. In a co-simulation that costs without paying: a pythonfmu model that
calls ``scipy.linalg.expm`` once per instance keeps one worker spinning through a whole cohort,
so under MPI, with one rank per core, every rank's spinning worker took half the CPU from the
ranks (a 64-member cohort ran 1.03× faster on 2 ranks instead of about 2×). The thread count
also decides how large dot products are summed, so it must not depend on the rank count if
results are to be identical for any number of ranks.

So a cosim process — the ``cosim`` command, or any process an MPI launcher started that
imports cosim before numpy — sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
``MKL_NUM_THREADS`` and ``BLIS_NUM_THREADS`` to 1 unless the user set one of them (then nothing
is changed: the user's choice, and its cost, stand). Parallelism comes from ranks. The libraries
read these variables once, when loaded: a script that imports numpy before cosim under
``mpiexec`` must export ``OMP_NUM_THREADS=1`` itself. Standard library only.
"""

from __future__ import annotations

import os

MPI_ENV = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS")
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def launched_by_mpi() -> bool:
    """Whether an MPI launcher started this process (avoids initialising MPI otherwise)."""
    return any(name in os.environ for name in MPI_ENV)


def rank_and_size() -> tuple[int, int]:
    """This process's rank and the number of ranks, as the MPI launcher's environment says
    (without initialising MPI); ``(0, 1)`` outside a launcher."""
    for rank, size in (("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
                       ("PMIX_RANK", "OMPI_COMM_WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if rank in os.environ and size in os.environ:
            try:
                return int(os.environ[rank]), int(os.environ[size])
            except ValueError:
                continue
    return 0, 1


def limit_threads() -> bool:
    """One BLAS/OpenMP thread per process, unless the user set a count; True if set here."""
    if any(name in os.environ for name in THREAD_ENV):
        return False
    for name in THREAD_ENV:
        os.environ[name] = "1"
    return True
