"""Fitting a twin (``cosim.twins.fit``, ``cosim.twins.personalise``, ``cosim fit``) on
synthetic patients: data made from known parameters plus stated noise.

- recovery through the real pipeline (a C FMU, every evaluation a cohort member): the truth
  within the reported 95 % interval and 1 % of its value; the personalised scenario holds the
  fitted values and runs; the results file holds the fit;
- honest uncertainty: over repeated noise draws the 95 % intervals hold the truth at about the
  stated rate (the optimiser and the uncertainty on a model in numpy, the same code);
- priors pull, figures count, a global method finds what least squares alone misses;
- the same fit under ``mpiexec -n 2`` as in one process, to the last bit;
- mistakes in the fit section at their line and key.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fmu_kit as kit
import h5py
import numpy as np
import pytest
import yaml

from cosim import cli
from cosim.errors import ScenarioError
from cosim.results.report import write_report
from cosim.running.pipeline import run_scenario
from cosim.scenario.scenario import load_scenario
from cosim.twins.fit import FitProblem, Parameter, Target, read_fit, run_fit
from cosim.twins.personalise import fit_scenario

TRUTH = {"a.k": 2.0, "a.c": 0.3}
NOISE = 0.01  # m, the stated measurement noise
REPO = Path(__file__).resolve().parent.parent


def synthetic_patient(folder: Path, seed: int = 1, fit: str | None = None) -> Path:
    """clinic.csv: x of the C oscillator with k = 2, c = 0.3, every 0.1 s for 10 s, in mm, plus
    N(0, 10 mm) noise; twin.yaml: the same model with k and c to fit."""
    kit.build_c_oscillator(folder)
    (folder / "truth.yaml").write_text("""\
version: 1
fmus: {osc: c_oscillator.fmu}
instances:
  a: {fmu: osc, parameters: {k: 2.0, c: 0.3, k_c: 0.0, x0: 1.0}}
simulation: {stop: 10, step: 0.01}
record: {interval: 0.1, variables: [a.x]}
""")
    run_scenario(folder / "truth.yaml", folder / "truth.h5", plot=False)
    with h5py.File(folder / "truth.h5") as f:
        t, x = f["time"][()], f["instances/a/x"][()]
    noisy = 1000 * (x + np.random.default_rng(seed).normal(0.0, NOISE, len(x)))
    (folder / "clinic.csv").write_text("time [s],x [mm]\n" + "".join(
        f"{a!r},{b!r}\n" for a, b in zip(t.tolist(), noisy.tolist(), strict=True)))
    (folder / "twin.yaml").write_text(f"""\
version: 1
patient: {{id: P-0001}}
fmus: {{osc: c_oscillator.fmu}}
measured:
  clinic: {{file: clinic.csv, interpolation: linear}}
instances:
  a: {{fmu: osc, parameters: {{k_c: 0.0, x0: 1.0}}}}
simulation: {{stop: 10, step: 0.01}}
record: [a.x]
criteria:
  - {{name: matches the clinic, signal: a.x, measure: rmse, reference: clinic.x, max: 0.02}}
fit:
{fit or '''  parameters:
    a.k: {low: 0.5, high: 4.0, start: 1.0}
    a.c: {low: 0.0, high: 1.0, start: 0.5}
  targets:
    - {signal: a.x, reference: clinic.x, sigma: 0.01}
'''}""")
    return folder / "twin.yaml"


def test_recovers_a_synthetic_patient_through_cohorts(tmp_path):
    done = fit_scenario(synthetic_patient(tmp_path), tmp_path / "fitted.h5", plot=False)
    result = done.result
    for name, value, sd, (low, high) in zip(result.names, result.values, result.sd,
                                            result.interval, strict=True):
        assert low <= TRUTH[name] <= high, (name, value, sd)
        assert abs(value - TRUTH[name]) < 0.01 * TRUTH[name]
        assert 0 < sd < 0.01 * TRUTH[name]
    assert result.noise_known and 0.6 < result.target_rms["0: a.x"] < 1.4  # residuals ~ noise
    assert result.members == 3 * result.batches  # every batch: the point and two neighbours
    personalised = yaml.safe_load(done.personalised.read_text())
    assert "fit" not in personalised
    assert personalised["instances"]["a"]["parameters"]["k"] == pytest.approx(result.values[0])
    assert done.report.passed  # the personalised twin matches the clinic within its criterion
    with h5py.File(tmp_path / "fitted.h5") as f:
        kept = json.loads(f["fit"].attrs["summary"])
        assert kept["parameters"]["a.c"]["value"] == pytest.approx(result.values[1])
        target = f["fit/targets/0"]
        assert "measured" not in target  # store: hash (the default): no measured values
        measured = np.loadtxt(tmp_path / "clinic.csv", delimiter=",", skiprows=1)[:, 1] / 1000
        residual = (target["simulated"][()] - measured) / NOISE
        assert np.sqrt(np.mean(residual ** 2)) == pytest.approx(result.target_rms["0: a.x"])
    html = write_report(tmp_path / "fitted.h5").read_text()
    assert "Fitted to measured data" in html and "<code>a.k</code>" in html
    assert "Measured values not stored" in html


def test_measured_values_stored_in_full_are_drawn_against_the_simulation(tmp_path):
    path = synthetic_patient(tmp_path)
    path.write_text(path.read_text().replace("interpolation: linear}",
                                             "interpolation: linear, store: full}"))
    fit_scenario(path, tmp_path / "fitted.h5", plot=False)
    with h5py.File(tmp_path / "fitted.h5") as f:
        measured = np.loadtxt(tmp_path / "clinic.csv", delimiter=",", skiprows=1)[:, 1] / 1000
        np.testing.assert_allclose(f["fit/targets/0/measured"][()], measured, rtol=1e-15)
        assert "measured/clinic/x" in f
    assert "Measured values not stored" not in write_report(tmp_path / "fitted.h5").read_text()


def test_the_summary_leaves_no_time_series_and_no_measured_value(tmp_path):
    fit_scenario(synthetic_patient(tmp_path), tmp_path / "fitted.h5", plot=False)
    assert cli.main(["summary", str(tmp_path / "fitted.h5"), "-o",
                     str(tmp_path / "s.json")]) == 0
    text = (tmp_path / "s.json").read_text()
    found = json.loads(text)
    assert found["patient"] == "P-0001" and set(found["fit"]["parameters"]) == {"a.k", "a.c"}
    assert found["verdict"][0]["passed"] is True
    assert found["measured_data"]["clinic"]["sha256"] == found["fmus"]["clinic"]["sha256"]

    def longest_list(value) -> int:
        if isinstance(value, dict):
            return max([0, *map(longest_list, value.values())])
        if isinstance(value, list):
            return max([len(value), *map(longest_list, value)])
        return 0
    assert longest_list(found) <= 2
    for cell in (tmp_path / "clinic.csv").read_text().splitlines()[1:6]:
        assert cell.split(",")[1] not in text
    assert "clinic.csv" not in text and str(tmp_path) not in text  # no path, no file name


# -- the optimiser and its uncertainty on a model in numpy -------------------------------------
T = np.linspace(0.0, 5.0, 26)


def decay(thetas: np.ndarray) -> list:
    """y = A exp(-t / tau): what a cohort would return, without the cohort."""
    return [{"m.y": (T, a * np.exp(-T / tau))} for a, tau in thetas]


def decay_problem(y: np.ndarray, sigma: float | None = 0.05, **options) -> FitProblem:
    return FitProblem((Parameter("m.A", 0.1, 5.0, 1.0), Parameter("m.tau", 0.2, 10.0, 4.0)),
                      (Target("y", "m.y", (T, y), "s.y", sigma=sigma),), **options)


def test_intervals_hold_the_truth_at_the_stated_rate():
    """200 noise draws, 95 % intervals: the truth inside 0.91–0.99 of the time for each
    parameter (binomial sd 1.5 %), and both inside at least 0.85."""
    rng = np.random.default_rng(2026)
    truth = np.array([2.0, 1.5])
    clean = truth[0] * np.exp(-T / truth[1])
    inside = []
    for _ in range(200):
        result = run_fit(decay_problem(clean + rng.normal(0, 0.05, len(T))), decay)
        low, high = result.interval.T
        inside.append((low <= truth) & (truth <= high))
    coverage = np.mean(inside, axis=0)
    assert np.all((0.91 <= coverage) & (coverage <= 0.99)), coverage
    assert np.mean(np.all(inside, axis=1)) >= 0.85


def test_unknown_noise_is_estimated_from_the_residuals():
    rng = np.random.default_rng(7)
    y = 2.0 * np.exp(-T / 1.5) + rng.normal(0, 0.2, len(T))
    stated = run_fit(decay_problem(y, sigma=0.05), decay)  # noise stated 4x too small
    unstated = run_fit(decay_problem(y, sigma=None), decay)
    assert not unstated.noise_known
    assert np.all(unstated.sd > 2.5 * stated.sd)  # widened by the residuals' scatter


def test_a_prior_pulls_toward_its_mean():
    y = 2.0 * np.exp(-T / 1.5)
    free = decay_problem(y, sigma=1.0)
    pinned = FitProblem((Parameter("m.A", 0.1, 5.0, 1.0, prior_mean=3.0, prior_sd=0.01),
                         free.parameters[1]), free.targets)
    assert run_fit(free, decay).values[0] == pytest.approx(2.0, abs=1e-4)
    assert run_fit(pinned, decay).values[0] == pytest.approx(3.0, abs=0.01)


def test_a_figure_target_alone_fixes_a_parameter():
    """The time average of y over 0–5 s (a measured figure, e.g. a mean pressure) fixes A."""
    mean = float(np.trapezoid(2.0 * np.exp(-T / 1.5), T) / 5.0)
    problem = FitProblem((Parameter("m.A", 0.1, 5.0, 1.0),),
                         (Target("mean", "m.y", measure="mean", value=mean, sigma=0.01),))
    result = run_fit(problem, lambda thetas: decay(np.column_stack(
        (thetas[:, 0], np.full(len(thetas), 1.5)))))
    assert result.values[0] == pytest.approx(2.0, rel=1e-5)


def wave(thetas: np.ndarray) -> list:
    return [{"m.y": (T, np.sin(w * T))} for (w,) in thetas]


def test_the_global_method_finds_what_least_squares_misses():
    """sin(w t) with w = 5 from a start at w = 1.2: least squares stops in a local minimum,
    differential evolution (then least squares) finds w = 5."""
    t_fine = np.linspace(0, 5, 26)
    problem = FitProblem((Parameter("m.w", 0.5, 8.0, 1.2),),
                         (Target("y", "m.y", (t_fine, np.sin(5.0 * t_fine)), sigma=0.1),))
    local = run_fit(problem, wave)
    found = run_fit(FitProblem(problem.parameters, problem.targets, "differential_evolution",
                               max_evaluations=400, seed=3), wave)
    assert abs(local.values[0] - 5.0) > 0.5
    assert found.values[0] == pytest.approx(5.0, abs=1e-4)
    assert found.members <= 400 + 10


# -- MPI ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_same_fit_on_two_ranks(tmp_path):
    """Every evaluation a cohort member dealt over the ranks: the personalised scenario (the
    fitted values to the last bit) is the same as in one process."""
    path = synthetic_patient(tmp_path)
    single = fit_scenario(path, tmp_path / "one.h5", personalised=tmp_path / "one.yaml",
                          plot=False)
    command = [str(REPO / ".venv" / "bin" / "mpiexec"), "-n", "2", sys.executable, "-m",
               "cosim.cli", "fit", str(path), "-o", str(tmp_path / "two.h5"),
               "--personalised", str(tmp_path / "two.yaml"), "--no-plot"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "two.yaml").read_text() == (tmp_path / "one.yaml").read_text()
    assert f"{single.result.members} model runs" in done.stdout


# -- mistakes ----------------------------------------------------------------------------------
@pytest.mark.parametrize("fit, key, words", [
    ("  parameters:\n    a.k: {low: 3, high: 1}\n  targets:\n"
     "    - {signal: a.x, reference: clinic.x}\n", "fit.parameters.a.k", "low < high"),
    ("  parameters:\n    a.k: {low: 1, high: 3}\n  targets:\n"
     "    - {signal: a.x, reference: clinic.y}\n", "fit.targets.0.reference",
     "'clinic.y' is not a measured column"),
    ("  parameters:\n    a.k: {low: 1, high: 3}\n  targets:\n"
     "    - {signal: a.x, measure: mean}\n", "fit.targets.0", "a measured figure"),
    ("  parameters:\n    a.k: {low: 1, high: 3}\n  targets:\n"
     "    - {signal: a.x, reference: clinic.x}\n  optimiser: {method: newton}\n",
     "fit.optimiser.method", "unknown method 'newton'"),
])
def test_fit_mistakes_are_named_at_their_key(tmp_path, fit, key, words):
    path = synthetic_patient(tmp_path, fit=fit)
    with pytest.raises(ScenarioError) as caught:
        read_fit(load_scenario(path))
    problem = caught.value.problems[0]
    assert problem.key == key and words in problem.message, problem
    line = path.read_text().splitlines()[problem.line - 1]
    assert key.split(".")[-1] in line or "-" in line
