"""Proof of exchange: the library's FMUs run in other FMI tools, not only in cosim.

- libcosim's C++ co-simulation engine (PyPI ``libcosimpy``, a test dependency) runs each FMI 2.0
  library FMU alone, with the values fmpy gives (the flagship's closed loop in libcosim, from
  the SSP archive cosim exports, is tests/test_ssp.py's); libcosimpy 0.0.6 reads FMI 1.0 and
  2.0 only: an FMI 3.0 FMU crashes it while loading, so the FMI 3.0 editions are not given
  to it;
- ``fmpy validate`` and ``fmpy simulate`` (the command line) in a fresh virtual environment that
  holds fmpy and what it needs, nothing of cosim, pythonfmu or scipy, accept and run every FMI
  2.0 and FMI 3.0 library FMU.

libcosim runs in a process of its own (``tests/fixtures/exchange/libcosim_run.py``), so a crash
of the engine fails the test instead of the test session.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import fmpy
import fmu_kit as kit  # tests/fmu_kit.py
import pytest

MODELS = ("cell", "generator", "lead", "organ", "tissue")
ROOT = Path(__file__).resolve().parent.parent
LIBCOSIM_RUN = ROOT / "tests" / "fixtures" / "exchange" / "libcosim_run.py"
ALONE = {  # model: (parameters, outputs) for 1 s of 1 ms steps without inputs
    "cell": ({"g_load": 0.0, "V_rest": -80.0}, ["V", "h", "beat_count"]),
    "generator": ({"mode": 4}, ["vp_count", "ap_count", "battery_charge_used"]),
    "lead": ({"fault": 5, "fault_time": 0.0, "noise_rate": 200.0}, ["V_sense", "fault_active"]),
    "organ": ({"V_ao_init": 140.0}, ["P_ao", "V_lv", "P_pu"]),
    "tissue": ({"intrinsic_rate": 75.0, "intrinsic_delay": 0.1},
               ["activation_time_far", "egm", "V_electrode", "substeps"]),
}


def libcosim(spec: dict, tmp_path: Path) -> dict:
    """Run ``spec`` (see libcosim_run.py) in libcosim; the outputs it asked for."""
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    result = subprocess.run([sys.executable, str(LIBCOSIM_RUN), str(path)],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, f"libcosim failed ({result.returncode}): {result.stderr}"
    return json.loads(result.stdout)


def references(fmu: Path) -> dict[str, fmpy.model_description.ModelVariable]:
    return {v.name: v for v in fmpy.read_model_description(str(fmu)).modelVariables}


def typed(variables: dict, values: dict) -> dict[str, dict[int, float]]:
    """{"real": {vr: value}, "integer": {vr: value}} for libcosim."""
    kinds = {"Real": "real", "Integer": "integer"}
    result: dict[str, dict[int, float]] = {"real": {}, "integer": {}}
    for name, value in values.items():
        result[kinds[variables[name].type]][variables[name].valueReference] = value
    return result


@pytest.mark.parametrize("model", MODELS)
def test_libcosim_runs_each_library_fmu_as_fmpy_does(build_model, tmp_path, model):
    """Parameters set by libcosim, 1000 steps of 1 ms: the outputs equal fmpy's bit for bit."""
    fmu = build_model(model)
    variables = references(fmu)
    parameters, outputs = ALONE[model]
    wanted = typed(variables, dict.fromkeys(outputs, 0))
    got = libcosim({"step": 0.001, "stop": 1.0,
                    "instances": {model: {"fmu": str(fmu), **typed(variables, parameters)}},
                    "outputs": {model: {kind: list(refs) for kind, refs in wanted.items()}}},
                   tmp_path)[model]
    reference = kit.CInstance(fmu)
    for name, value in parameters.items():
        setattr(reference, name, value)
    reference.exit_initialization_mode()
    for k in range(1000):
        reference.do_step(k * 1e-3, 1e-3)
    expected = {kind: [getattr(reference, n) for n in outputs
                       if variables[n].valueReference in refs and variables[n].type.lower()
                       == kind] for kind, refs in wanted.items()}
    reference.free()
    assert got == expected


@pytest.mark.slow
def test_fmpy_alone_validates_and_simulates_every_library_fmu(build_model, tmp_path):
    """A fresh virtual environment with fmpy installed by pip (its cache reused) and nothing
    of cosim: ``fmpy validate`` finds no problem and ``fmpy simulate`` runs each FMI 2.0 and
    FMI 3.0 library FMU over its DefaultExperiment (the tissue's map written as a column)."""
    environment = tmp_path / "fmpy_only"
    venv.create(environment, with_pip=False)
    python = environment / "bin" / "python"
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                              "--quiet", "--disable-pip-version-check", "fmpy"],
                             capture_output=True, text=True, check=False, timeout=300)
    assert install.returncode == 0, f"pip could not install fmpy: {install.stderr[-2000:]}"
    listed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "list",
                             "--format=freeze"], capture_output=True, text=True,
                            check=True).stdout.lower()
    assert "fmpy==" in listed
    assert not {"cosim", "pythonfmu", "scipy", "h5py"} & {line.split("==")[0]
                                                          for line in listed.splitlines()}
    fmpy_command = environment / "bin" / "fmpy"
    for model in MODELS:
        for fmi3 in (False, True):
            fmu = build_model(model, fmi3=fmi3)
            validate = subprocess.run([str(fmpy_command), "validate", str(fmu)],
                                      capture_output=True, text=True, check=False)
            assert validate.returncode == 0, validate.stdout + validate.stderr
            csv = tmp_path / f"{model}{'3' if fmi3 else '2'}.csv"
            simulate = subprocess.run([str(fmpy_command), "simulate", str(fmu),
                                       "--output-file", str(csv)],
                                      capture_output=True, text=True, check=False)
            assert simulate.returncode == 0, simulate.stderr
            rows = csv.read_text().splitlines()
            assert len(rows) > 100 and rows[0].startswith('"time"')
    assert '"V"' in (tmp_path / "tissue3.csv").read_text().splitlines()[0]
