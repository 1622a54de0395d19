"""Co-simulation converges to the monolithic solution of a system split over two FMUs.

Left: the pythonfmu ``Oscillator`` (fmus/oscillator). Right: the hand-written C oscillator
(tests/fixtures/c_oscillator), an FMU made without any Python tool. Both integrate their own
step exactly, so the only error is the coupling error of the master: with a zero-order hold it
is first order in the communication step for Jacobi and for Gauss-Seidel (whose feedback edge
still carries last step's value), Gauss-Seidel with the smaller constant. The reference is the
matrix exponential of the full 4x4 system.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import fmu_kit as kit  # tests/fmu_kit.py: FMUs and broken archives for tests
import numpy as np
import pytest
from scipy.linalg import expm

from cosim.coupling.graph import CouplingGraph
from cosim.master.description import Settings
from cosim.master.execution import Execution
from cosim.results.reader import open_results
from cosim.running.pipeline import run_scenario

HERE = Path(__file__).resolve().parent
LEFT = {"m": 1.0, "k": 1.0, "c": 0.1, "k_c": 0.5, "x0": 1.0, "v0": 0.0}
RIGHT = {"m": 2.0, "k": 1.5, "c": 0.05, "k_c": 0.5, "x0": 0.0, "v0": 0.3}
STOP = 4.0
STEPS = (0.02, 0.01, 0.005)
RECORD = {"left": ["x"], "right": ["x"]}



@pytest.fixture(scope="module")
def fmus(build_model, tmp_path_factory) -> tuple[Path, Path]:
    c_fmu = kit.build_c_oscillator(tmp_path_factory.mktemp("convergence"))
    return build_model("oscillator"), c_fmu


def monolithic(t: np.ndarray) -> np.ndarray:
    """Exact (x_left, x_right) at times t from expm of the 4x4 system (x1, v1, x2, v2)."""
    p, q = LEFT, RIGHT
    a = np.array([
        [0.0, 1.0, 0.0, 0.0],
        [-(p["k"] + p["k_c"]) / p["m"], -p["c"] / p["m"], p["k_c"] / p["m"], 0.0],
        [0.0, 0.0, 0.0, 1.0],
        [q["k_c"] / q["m"], 0.0, -(q["k"] + q["k_c"]) / q["m"], -q["c"] / q["m"]]])
    z0 = np.array([p["x0"], p["v0"], q["x0"], q["v0"]])
    return np.array([(expm(a * ti) @ z0)[[0, 2]] for ti in t])


class Trace:
    """Observer keeping (time, left.x, right.x) at every communication point."""

    def started(self, run: Execution) -> None:
        self.signals = run.system.signals
        self.index = [run.layout.index("left", "x"), run.layout.index("right", "x")]
        self.rows: list[list[float]] = []

    def stepped(self, time: float) -> None:
        self.rows.append([time, *self.signals[self.index]])

    def finished(self, error: BaseException | None) -> None:
        self.error = error


def coupled(fmus: tuple[Path, Path], algorithm: str, step: float) -> np.ndarray:
    """Rows (t, x_left, x_right) of a co-simulation built in Python."""
    graph = CouplingGraph()
    graph.add_instance("left", fmus[0], parameters=LEFT)
    graph.add_instance("right", fmus[1], parameters=RIGHT)
    graph.connect("left.x", "right.x_other")
    graph.connect("right.x", "left.x_other")
    graph.validate()
    trace = Trace()
    Execution(graph, Settings(0.0, STOP, step, algorithm=algorithm, record=RECORD)).run([trace])
    assert trace.error is None
    return np.array(trace.rows)


def max_error(rows: np.ndarray) -> float:
    return float(np.max(np.abs(rows[:, 1:] - monolithic(rows[:, 0]))))


@pytest.fixture(scope="module")
def errors(fmus) -> dict[str, list[float]]:
    return {algorithm: [max_error(coupled(fmus, algorithm, h)) for h in STEPS]
            for algorithm in ("jacobi", "gauss-seidel")}


@pytest.mark.parametrize("algorithm", ["jacobi", "gauss-seidel"])
def test_error_is_first_order_in_the_step(errors, algorithm):
    err = np.array(errors[algorithm])
    assert np.all(err > 1e-6)  # a coupling error exists: the test can see a broken exchange
    order = np.log2(err[:-1] / err[1:])
    assert np.all((order >= 0.8) & (order <= 1.3)), (algorithm, err, order)
    assert err[-1] < 0.02  # and it is small: the coupled run follows the true motion


def test_gauss_seidel_is_more_accurate_than_jacobi(errors):
    assert all(gs < j for gs, j in zip(errors["gauss-seidel"], errors["jacobi"], strict=True))


def test_uncoupled_instances_are_exact(fmus):
    """Without connections each FMU is exact: any error above comes from the coupling."""
    graph = CouplingGraph()
    graph.add_instance("left", fmus[0], parameters=LEFT)
    graph.add_instance("right", fmus[1], parameters=RIGHT)
    trace = Trace()
    Execution(graph, Settings(0.0, 1.0, 0.01, record=RECORD)).run([trace])
    rows = np.array(trace.rows)
    for (name, p), column in ((("left", LEFT), 1), (("right", RIGHT), 2)):
        w = np.sqrt((p["k"] + p["k_c"]) / p["m"])
        g = p["c"] / (2 * p["m"])
        wd = np.sqrt(w**2 - g**2)
        t = rows[:, 0]
        exact = np.exp(-g * t) * (p["x0"] * np.cos(wd * t)
                                  + (p["v0"] + g * p["x0"]) / wd * np.sin(wd * t))
        np.testing.assert_allclose(rows[:, column], exact, atol=1e-12, err_msg=name)


def test_scenario_file_gives_the_same_run(fmus, tmp_path):
    """tests/scenarios/coupled_oscillators.yaml: library model + .fmu path beside the file."""
    shutil.copy(HERE / "scenarios" / "coupled_oscillators.yaml", tmp_path / "coupled.yaml")
    shutil.copy(fmus[1], tmp_path / "c_oscillator.fmu")
    report = run_scenario(tmp_path / "coupled.yaml", tmp_path / "out.h5", plot=False)
    assert report.passed is True
    with open_results(report.results) as results:
        t, left, right = results.time, results["left.x"], results["right.x"]
        assert results.attrs["algorithm"] == "jacobi"
    python = coupled(fmus, "jacobi", 0.01)
    assert len(t) == len(python) == 401
    np.testing.assert_allclose(t, python[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.c_[left, right], python[:, 1:], rtol=0, atol=1e-12)
