"""The SLURM batch script of ``docs/cluster.md`` (``scripts/slurm/cosim.sbatch``), checked as far
as a machine without SLURM allows: its syntax and directives, and a run of it as a job's node
would (the job's environment given, ``srun`` absent: the wheel's ``mpiexec`` starts 2 ranks)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import h5py
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm" / "cosim.sbatch"
COHORT = """\
version: 1
name: slurm cohort
fmus: {osc: oscillator}
instances:
  a: {fmu: osc}
  b: {fmu: osc, parameters: {x0: 0.0}}
connections: [a.x -> b.x_other, b.x -> a.x_other]
simulation: {start: 0, stop: 0.2, step: 0.001}
record: {interval: 0.01, variables: [a.x]}
criteria:
  - {name: bounded, signal: a.x, measure: max, max: 2.0}
cohort: {method: grid, parameters: {a.m: {values: [1.0, 1.5, 2.0]}}}
"""


def test_the_batch_script_is_valid_bash_with_the_directives_the_docs_give():
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    directives = dict(re.findall(r"^#SBATCH --([\w-]+)=(\S+)$", SCRIPT.read_text(), re.M))
    assert directives.keys() >= {"nodes", "ntasks-per-node", "cpus-per-task", "time"}
    assert SCRIPT.read_text() in (ROOT / "docs" / "cluster.md").read_text()


@pytest.mark.mpi
def test_the_batch_script_runs_a_cohort_where_srun_is_absent(tmp_path):
    scenario = tmp_path / "cohort.yaml"
    scenario.write_text(COHORT)
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("SLURM_", "PMI_", "VIRTUAL_ENV"))}
    env.update(SLURM_NTASKS="2", SLURM_SUBMIT_DIR=str(ROOT), SLURM_JOB_ID="4242",
               SCRATCH=str(tmp_path), PATH="/usr/bin:/bin")
    done = subprocess.run(["bash", str(SCRIPT), str(scenario)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "cosim: mpiexec -n 2 cosim run" in done.stdout
    assert "COHORT VERDICT: PASS (3 of 3 members passed" in done.stdout
    with h5py.File(tmp_path / "cosim-4242.h5", "r") as file:
        assert file.attrs["mpi_ranks"] == 2 and len(file["summary"]) == 3
