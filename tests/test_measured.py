"""Measured signals in (``cosim.fmi.measured``): a CSV or HDF5 table of time series fed into an
instance's input (hold or linear, offset, unit conversion), checked at its scenario line like
any connection; measured signals as the reference of criteria (rmse, max_deviation, timing);
what a results file keeps of the data (store: full, hash, none). Synthetic data only."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import fmu_kit as kit
import h5py
import numpy as np
import pytest

from cosim import cli
from cosim.errors import ScenarioError
from cosim.running.pipeline import run_scenario
from cosim.scenario.criteria import Criterion, evaluate
from cosim.scenario.scenario import build, load_scenario

CSV = """\
# a synthetic signal: no patient
time [ms],pos [mm],rate [1/min]
0,100,60
50,200,70
120,150,65
400,150,65
"""


def scenario(tmp: Path, measured: str, extra: str = "", connection: str = "trend.pos",
             record: str = "[a.x_other]") -> Path:
    kit.build_c_oscillator(tmp)
    (tmp / "trend.csv").write_text(CSV)
    path = tmp / "twin.yaml"
    path.write_text(f"""\
version: 1
fmus: {{osc: c_oscillator.fmu}}
measured:
  trend: {measured}
instances:
  a: {{fmu: osc, parameters: {{k_c: 0.0}}}}
connections:
  - {connection} -> a.x_other
simulation: {{start: 0.0, stop: 0.3, step: 0.01}}
record: {record}
{extra}""")
    return path


def fed(path: Path, tmp: Path) -> tuple[np.ndarray, np.ndarray]:
    run_scenario(path, tmp / "out.h5", plot=False)
    with h5py.File(tmp / "out.h5") as f:
        return f["time"][()], f["instances/a/x_other"][()]


def test_linear_interpolation_offset_and_unit_conversion(tmp_path):
    """pos in mm reaches x_other in m (÷1000), linearly interpolated, shifted by the offset;
    the input recorded at t is the value the FMU was stepped with (the source's at t - h)."""
    path = scenario(tmp_path, "{file: trend.csv, interpolation: linear, offset: -0.02}")
    t, x = fed(path, tmp_path)
    file_t = np.array([0, 50, 120, 400]) / 1000 - 0.02  # ms → s, then the offset
    expected = np.interp(t[:-1], file_t, [0.1, 0.2, 0.15, 0.15])
    np.testing.assert_allclose(x[1:], expected, rtol=0, atol=1e-12)


def test_hold_keeps_the_last_sample(tmp_path):
    path = scenario(tmp_path, "{file: trend.csv}")  # hold is the default
    t, x = fed(path, tmp_path)
    held = np.where(t[:-1] < 0.05 - 1e-9, 0.1, np.where(t[:-1] < 0.12 - 1e-9, 0.2, 0.15))
    np.testing.assert_allclose(x[1:], held, atol=1e-12)


def test_hdf5_source_feeds_what_the_csv_feeds(tmp_path):
    with h5py.File(tmp_path / "trend.h5", "w") as f:
        f["time"] = np.array([0, 50, 120, 400]) / 1000.0
        f["time"].attrs["units"] = "s"
        f["pos"] = [10.0, 20.0, 15.0, 15.0]  # cm: converted as the mm of the CSV
        f["pos"].attrs["units"] = "cm"
    csv_run = fed(scenario(tmp_path / "csv", "{file: trend.csv, interpolation: linear}"),
                  tmp_path / "csv")
    (tmp_path / "h5").mkdir()
    (tmp_path / "h5" / "trend.h5").write_bytes((tmp_path / "trend.h5").read_bytes())
    h5_run = fed(scenario(tmp_path / "h5", "{file: trend.h5, interpolation: linear}"),
                 tmp_path / "h5")
    np.testing.assert_allclose(h5_run[1], csv_run[1], atol=1e-15)


def one_problem(path: Path) -> tuple[str, int | None, str]:
    with pytest.raises(ScenarioError) as caught:
        build(load_scenario(path))
    problem = caught.value.problems[0]
    return problem.key, problem.line, problem.message


@pytest.mark.parametrize("measured, connection, key, line, words", [
    ("{file: trend.csv}", "trend.rate", "connections.0", 8, "unit mismatch: trend.rate is in "
     "1/min"),
    ("{file: trend.csv}", "trend.posx", "connections.0", 8, "has no variable 'posx'"),
    ("{file: trend.csv, offset: 0.2}", "trend.pos", "measured.trend.offset", 4,
     "covers 0.2–0.6 s of simulation time"),
    ("{file: nothere.csv}", "trend.pos", "measured.trend.file", 4, "no such data file"),
    ("{file: trend.csv, units: {pos: furlongs_per_blob}}", "trend.pos", "measured.trend.units",
     4, "not a unit cosim knows"),
    ("{file: trend.csv, interpolation: cubic}", "trend.pos", "measured.trend.interpolation", 4,
     "unknown interpolation 'cubic'"),
])
def test_mistakes_are_named_at_their_line_and_key(tmp_path, measured, connection, key, line,
                                                  words):
    found = one_problem(scenario(tmp_path, measured, connection=connection))
    assert found[0] == key and found[1] == line and words in found[2], found


def test_a_time_column_that_goes_back_is_refused(tmp_path):
    path = scenario(tmp_path, "{file: trend.csv}")
    (tmp_path / "trend.csv").write_text(CSV.replace("120,150", "40,150"))
    key, line, message = one_problem(path)
    assert key == "measured.trend.file" and "must increase strictly" in message


# -- measured signals as references of criteria -----------------------------------------------
def comparison(measure: str, within: float = 0.1) -> Criterion:
    return Criterion("c", "s.y", measure, max=1.0, reference="m.y", within=within)


def test_rmse_max_deviation_and_timing_figures():
    t = np.arange(0, 2.0001, 0.001)
    measured_t = np.arange(0, 2.0001, 0.02)
    shape = np.sin(2 * np.pi * measured_t)
    references = {"m.y": (measured_t, shape + 0.0)}
    offset = {"s.y": np.sin(2 * np.pi * t) + 0.25}
    assert evaluate(comparison("rmse"), t, offset, references).value == pytest.approx(0.25)
    assert evaluate(comparison("max_deviation"), t, offset, references).value == \
        pytest.approx(0.25)
    late = {"s.y": np.sin(2 * np.pi * (t - 0.037))}  # the simulation 37 ms behind
    assert evaluate(comparison("timing"), t, late, references).value == pytest.approx(0.037)
    early = {"s.y": np.sin(2 * np.pi * (t + 0.012))}
    assert evaluate(comparison("timing"), t, early, references).value == pytest.approx(-0.012)


def test_a_window_without_measured_samples_cannot_be_evaluated():
    t = np.linspace(0, 1, 11)
    c = Criterion("c", "s.y", "rmse", window=(0.5, 0.6), max=1.0, reference="m.y")
    outcome = evaluate(c, t, {"s.y": t}, {"m.y": (np.array([0.0, 0.9]), np.zeros(2))})
    assert not outcome.passed and "no sample in the window" in outcome.reason


def test_criteria_compare_in_the_signal_unit(tmp_path):
    """The reference in mm against a signal in m, compared in m: at the one measured sample of
    [0.1, 0.3] s (0.12 s: 150 mm) the input recorded holds the source's value of 0.11 s (the
    one-step delay), 1/7 of the way from 150 back to 200 mm."""
    extra = """criteria:
  - {name: fits, signal: a.x_other, measure: max_deviation, reference: trend.pos,
     window: [0.1, 0.3], max: 0.01}
  - {name: lag, signal: a.x_other, measure: timing, reference: trend.pos, within: 0.05,
     max: 0.02}
  - {name: wrong, signal: a.x, measure: rmse, reference: trend.pos, max: 1e-3}
"""
    path = scenario(tmp_path, "{file: trend.csv, interpolation: linear}", extra)
    report = run_scenario(path, tmp_path / "out.h5", plot=False)
    figures = {o.name: o for o in report.outcomes}
    assert figures["fits"].passed and figures["fits"].value == pytest.approx(0.05 / 7)
    assert figures["lag"].value == pytest.approx(0.01)  # the Jacobi one-step delay
    assert not figures["wrong"].passed and figures["wrong"].value > 0.1


def test_reference_must_be_a_measured_column(tmp_path):
    extra = """criteria:
  - {name: c, signal: a.x, measure: rmse, reference: a.x, max: 1}
"""
    key, line, message = one_problem(scenario(tmp_path, "{file: trend.csv}", extra))
    assert key == "criteria.0.reference" and line == 12 and "'a' is not a measured source" \
        in message


# -- what the results keep of the data ---------------------------------------------------------
def stored(tmp: Path, store: str, record: str = "[a.x_other]") -> h5py.File:
    path = scenario(tmp, f"{{file: trend.csv, store: {store}}}", record=record)
    run_scenario(path, tmp / "out.h5", plot=False)
    return h5py.File(tmp / "out.h5")


def test_store_hash_keeps_the_hash_and_no_data(tmp_path):
    with stored(tmp_path, "hash", record="['*.*']") as f:
        measured = json.loads(f.attrs["measured_data"])["trend"]
        assert measured["sha256"] == hashlib.sha256(
            (tmp_path / "trend.csv").read_bytes()).hexdigest()
        assert "measured" not in f and "trend" not in f["instances"]  # *.* leaves it out
        provenance = "".join(str(v) for k, v in f.attrs.items() if k != "scenario_text")
        assert "trend.csv" not in provenance  # the file's name may name the patient


def test_store_full_keeps_the_data(tmp_path):
    with stored(tmp_path, "full") as f:
        np.testing.assert_array_equal(f["measured/trend/time"][()], [0, 0.05, 0.12, 0.4])
        np.testing.assert_array_equal(f["measured/trend/pos"][()], [100, 200, 150, 150])
        assert f["measured/trend/pos"].attrs["units"] == "mm"


def test_store_none_leaves_no_trace(tmp_path):
    digest = hashlib.sha256(CSV.encode()).hexdigest()
    with stored(tmp_path, "none") as f:
        assert json.loads(f.attrs["measured_data"]) == {"trend": {"store": "none"}}
        assert "measured" not in f
        everything = "".join(str(v) for k, v in f.attrs.items())
        assert digest not in everything


def test_recording_data_that_may_not_be_stored_is_refused(tmp_path):
    path = scenario(tmp_path, "{file: trend.csv, store: hash}", record="[trend.pos]")
    key, line, message = one_problem(path)
    assert key == "record.0" and line == 10 and "store: hash forbids" in message


def test_ssp_export_refuses_a_measured_source(tmp_path):
    path = scenario(tmp_path, "{file: trend.csv}")
    assert cli.main(["export-ssp", str(path), "-o", str(tmp_path / "s.ssp")]) == 1
    assert not (tmp_path / "s.ssp").exists()


@pytest.mark.mpi
def test_a_source_feeds_an_instance_on_another_rank(tmp_path):
    """Two ranks, the source on one and the oscillator on the other: the values cross the
    ranks as any output does, the results equal the single process's."""
    path = scenario(tmp_path, "{file: trend.csv, interpolation: linear}",
                    "parallel: {balance: declared}\n")
    _, single = fed(path, tmp_path)
    bin_dir = Path(sys.executable).parent
    done = subprocess.run([str(bin_dir / "mpiexec"), "-n", "2", sys.executable, "-m",
                           "cosim.cli", "run", str(path), "-o", str(tmp_path / "two.h5"),
                           "--no-plot"], capture_output=True, text=True, timeout=240,
                          env=dict(os.environ, PATH=f"{bin_dir}{os.pathsep}"
                                                    f"{os.environ.get('PATH', '')}"))
    assert done.returncode == 0, done.stderr
    with h5py.File(tmp_path / "two.h5") as f:
        assert json.loads(f.attrs["partition"]) in ({"trend": 0, "a": 1}, {"trend": 1, "a": 0})
        np.testing.assert_array_equal(f["instances/a/x_other"][()], single)


def test_the_patient_is_a_pseudonym(tmp_path):
    path = scenario(tmp_path, "{file: trend.csv}", "patient: {id: Jane Doe}\n")
    key, line, message = one_problem(path)
    assert key == "patient.id" and line == 11 and "pseudonym" in message
    path.write_text(path.read_text().replace("Jane Doe", "P-0042"))
    run_scenario(path, tmp_path / "out.h5", plot=False)
    with h5py.File(tmp_path / "out.h5") as f:
        assert f.attrs["patient"] == "P-0042"
