"""Process set-up before numpy loads (cosim.launcher): MPI detection, one BLAS thread."""

from __future__ import annotations

import pytest

from cosim import launcher


@pytest.fixture
def clean_env(monkeypatch):
    for name in launcher.THREAD_ENV + launcher.MPI_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_one_thread_for_every_pool_when_the_user_set_none(clean_env):
    import os

    assert launcher.limit_threads() is True
    assert all(os.environ[name] == "1" for name in launcher.THREAD_ENV)


def test_a_count_the_user_set_is_kept_and_nothing_added(clean_env):
    import os

    clean_env.setenv("OMP_NUM_THREADS", "4")
    assert launcher.limit_threads() is False
    assert os.environ["OMP_NUM_THREADS"] == "4"
    assert "OPENBLAS_NUM_THREADS" not in os.environ  # OpenBLAS then follows OMP_NUM_THREADS


@pytest.mark.parametrize("name", ["PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"])
def test_mpi_launchers_are_recognised(clean_env, name):
    assert not launcher.launched_by_mpi()
    clean_env.setenv(name, "2")
    assert launcher.launched_by_mpi()
