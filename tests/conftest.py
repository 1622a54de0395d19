"""Shared fixtures: FMUs built from the sources in ``fmus/`` into a temporary folder, once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cosim.build import library_fmu

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def build_model(tmp_path_factory) -> Callable[..., Path]:
    """``build_model("cell")`` builds the library FMU of ``fmus/cell`` (the C edition where
    there is one), ``build_model("cell", python=True)`` its Python edition; once per session,
    into a temporary folder."""
    out = tmp_path_factory.mktemp("fmus")
    cache: dict[tuple[str, bool], Path] = {}

    def build(name: str, python: bool = False) -> Path:
        if (name, python) not in cache:
            cache[name, python] = library_fmu(name, out, python=python)
        return cache[name, python]

    return build


@pytest.fixture(scope="session")
def c_test_fmu(tmp_path_factory) -> Callable[[str], Path]:
    """``c_test_fmu("arrays")`` compiles tests/fixtures/fmi3/<name> (once per session)."""
    import fmu_kit  # tests/fmu_kit.py

    build = fmu_kit.load_script(REPO_ROOT / "tests" / "fixtures" / "fmi3" / "build.py",
                                "fmi3_fixtures_build")
    out = tmp_path_factory.mktemp("c_test_fmus")
    cache: dict[str, Path] = {}

    def make(name: str) -> Path:
        if name not in cache:
            cache[name] = build.build_fmu(name, out)
        return cache[name]

    return make
