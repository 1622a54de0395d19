"""docs/tutorial.md, step by step: the model builds and validates, its scenario passes, the
cohort fails its weakest heart only, the MPI command runs the cohort on 3 ranks, and every
YAML and Python block of the page is in the tutorial's files."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cosim.fmi.fmu import read_fmu
from cosim.library.build import build_fmu
from cosim.results.reader import open_results
from cosim.running.pipeline import run_scenario

REPO = Path(__file__).resolve().parent.parent
TUTORIAL = REPO / "scenarios" / "tutorial"
PAGE = (REPO / "docs" / "tutorial.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The tutorial's files as a user has them: the monitor built where the page says."""
    root = tmp_path_factory.mktemp("tutorial")
    (root / "scenarios").mkdir()
    shutil.copytree(TUTORIAL, root / "scenarios" / "tutorial")
    built = build_fmu(root / "scenarios" / "tutorial" / "cosim_monitor.py",
                      root / "build" / "fmus" / "tutorial")
    assert built == root / "build" / "fmus" / "tutorial" / "Monitor.fmu"
    return root / "scenarios" / "tutorial"


def test_every_block_of_the_page_is_in_the_tutorials_files():
    files = {p.name: p.read_text(encoding="utf-8") for p in TUTORIAL.iterdir() if p.is_file()}
    blocks = re.findall(r"```yaml\n(.*?)```", PAGE, re.S)
    assert len(blocks) == 4
    for block in blocks:
        assert any(block in text for text in files.values()), block
    for command in re.findall(r"scenarios/tutorial/(\w+\.\w+)", PAGE):
        assert command in files, command


def test_the_python_model_builds_describes_its_variables_and_validates(folder):
    fmu = folder.parent.parent / "build" / "fmus" / "tutorial" / "Monitor.fmu"
    model = read_fmu(fmu)
    assert all(v.description for v in model.variables.values())
    assert (model.variables["P"].unit, model.dependencies["P_mean"]) == ("mmHg", ())
    done = subprocess.run([str(BIN / "fmpy"), "validate", str(fmu)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout


def test_the_monitored_scenario_passes(folder):
    report = run_scenario(folder / "monitor.yaml", folder / "monitor.h5", plot=False)
    assert report.passed, report.text()
    with open_results(report.results) as res:
        assert res["monitor.P_mean"][-1] > 70 and not res["monitor.alarm"].any()


@pytest.mark.slow
@pytest.mark.mpi
def test_the_cohort_fails_only_the_weakest_heart_and_mpi_gives_the_same(folder):
    report = run_scenario(folder / "monitor_cohort.yaml", folder / "cohort.h5", plot=False)
    with open_results(report.results) as res:
        table = res.summary()
    assert list(table["heart.E_es_lvf"]) == [1.0, 2.0, 2.88]
    assert list(table["passed"]) == [False, True, True]
    command = [str(BIN / "mpiexec"), "-n", "3", str(BIN / "cosim"), "run",
               str(folder / "monitor_cohort.yaml"), "-o", str(folder / "mpi.h5"), "--no-plot"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr  # a member failed: the cohort's verdict is FAIL
    assert "COHORT VERDICT: FAIL (2 of 3 members passed" in done.stdout, done.stdout
    with open_results(folder / "mpi.h5") as res:
        mpi = res.summary()
        assert res.attrs["mpi_ranks"] == 3
    for name in table:
        if table[name].dtype.kind == "f":
            np.testing.assert_array_equal(mpi[name], table[name], err_msg=name)
