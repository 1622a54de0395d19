"""Shared fixtures: FMUs built from the sources in ``fmus/`` into a temporary folder, once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cosim.library.build import library_fmu

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def build_model(tmp_path_factory) -> Callable[..., Path]:
    """``build_model("cell")`` builds the library FMU of ``fmus/cell`` (the C edition where
    there is one), ``build_model("cell", python=True)`` its Python edition,
    ``build_model("cell", fmi3=True)`` its FMI 3.0 edition; once per session, into a
    temporary folder."""
    out = tmp_path_factory.mktemp("fmus")
    cache: dict[tuple[str, bool, bool], Path] = {}

    def build(name: str, python: bool = False, fmi3: bool = False) -> Path:
        if (name, python, fmi3) not in cache:
            cache[name, python, fmi3] = library_fmu(name, out, python=python, fmi3=fmi3)
        return cache[name, python, fmi3]

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


# -- verification and validation evidence (cosim.scenario.credibility) -----------------------------
# A session that runs every test of tests/models/test_<model>.py records their outcomes, with
# each test's docstring, for the library FMU built from the same sources (its SHA-256), in
# build/evidence/: what `cosim report` shows as that model's V&V evidence.
_DOCS: dict[str, str] = {}
_COLLECTED: dict[str, int] = {}
_OUTCOMES: dict[str, list[dict[str, str]]] = {}


def _model_module(nodeid: str) -> str | None:
    path = Path(nodeid.split("::")[0])
    return path.stem if path.parent.name == "models" and path.stem.startswith("test_") else None


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        module = _model_module(item.nodeid)
        if module is not None:
            doc = (getattr(item, "obj", None).__doc__ or "").strip().split("\n\n")[0]
            _DOCS[item.nodeid] = " ".join(doc.split()) or item.originalname.removeprefix(
                "test_").replace("_", " ")
            _COLLECTED[module] = _COLLECTED.get(module, 0) + 1


def pytest_runtest_logreport(report) -> None:
    module = _model_module(report.nodeid)
    if module is not None and (report.when == "call" or report.outcome != "passed"):
        _OUTCOMES.setdefault(module, []).append(
            {"test": report.nodeid, "doc": _DOCS.get(report.nodeid, ""),
             "outcome": report.outcome})


def pytest_sessionfinish(session) -> None:
    from cosim.library.build import library_fmu, library_model_names
    from cosim.running.provenance import file_sha256, source_commit
    from cosim.scenario.credibility import EVIDENCE, write_evidence

    complete = {m for m, tests in _OUTCOMES.items()
                if len({t["test"] for t in tests}) == _COLLECTED.get(m)}
    editions = _OUTCOMES.get("test_editions", []) if "test_editions" in complete else []
    for module in complete - {"test_editions"}:
        model = module.removeprefix("test_")
        if model not in library_model_names():
            continue
        fmu = library_fmu(model)
        tests = _OUTCOMES[module] + [t for t in editions if f"[{model}" in t["test"]]
        write_evidence(EVIDENCE, model, fmu, file_sha256(fmu), tests, source_commit()[0])
