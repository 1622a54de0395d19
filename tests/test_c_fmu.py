"""A hand-written C FMU (no pythonfmu, no FMU tool) builds, validates and runs exactly in fmpy."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import fmpy
import fmu_kit as kit  # tests/fmu_kit.py
import numpy as np
import pytest
from fmpy.fmi1 import FMICallException
from fmpy.fmi2 import FMU2Slave
from fmpy.validation import validate_fmu
from scipy.linalg import expm

build = kit.load_script(kit.C_BUILD, "c_oscillator_build")
VR = {"m": 0, "k": 1, "c": 2, "k_c": 3, "x0": 4, "v0": 5, "x_other": 6, "x": 7, "v": 8}


@pytest.fixture(scope="module")
def fmu(tmp_path_factory) -> Path:
    return build.build_c_oscillator(tmp_path_factory.mktemp("c_fmu"))


@pytest.fixture(scope="module")
def new_slave(fmu, tmp_path_factory) -> Callable[..., FMU2Slave]:
    """``new_slave(m=2.0, ...)`` returns an initialised instance with those parameters."""
    unzipdir = fmpy.extract(fmu, unzipdir=tmp_path_factory.mktemp("c_fmu_unzipped"))
    md = fmpy.read_model_description(fmu)
    slaves: list[FMU2Slave] = []
    counter = iter(range(1_000_000))

    def make(**parameters: float) -> FMU2Slave:
        slave = FMU2Slave(guid=md.guid, unzipDirectory=unzipdir,
                          modelIdentifier=md.coSimulation.modelIdentifier,
                          instanceName=f"osc{next(counter)}")
        slave.instantiate()
        slave.setupExperiment(startTime=0.0)
        slave.enterInitializationMode()
        if parameters:
            slave.setReal([VR[n] for n in parameters], list(parameters.values()))
        slave.exitInitializationMode()
        slaves.append(slave)
        return slave

    yield make
    for slave in slaves:
        slave.freeInstance()


def state(slave: FMU2Slave) -> np.ndarray:
    return np.array(slave.getReal([VR["x"], VR["v"]]))


def exact_step(p: dict[str, float], z: np.ndarray, x_other: float, h: float) -> np.ndarray:
    """Reference: matrix exponential of the augmented system (x, v, x_other)."""
    a = np.array([[0.0, 1.0, 0.0],
                  [-(p["k"] + p["k_c"]) / p["m"], -p["c"] / p["m"], p["k_c"] / p["m"]],
                  [0.0, 0.0, 0.0]])
    return (expm(a * h) @ np.array([z[0], z[1], x_other]))[:2]


def test_build_writes_linux_binary_and_sources(fmu):
    with zipfile.ZipFile(fmu) as archive:
        names = set(archive.namelist())
    assert {"modelDescription.xml", "binaries/linux64/c_oscillator.so",
            "sources/oscillator.c"} <= names


def test_fmpy_validate_reports_no_problems(fmu):
    assert validate_fmu(str(fmu)) == []


def test_model_description_declares_interface(fmu):
    md = fmpy.read_model_description(fmu, validate=True)
    assert (md.modelName, md.generationTool) == ("COscillator", "hand-written C")
    assert md.coSimulation.modelIdentifier == "c_oscillator"
    assert md.coSimulation.canGetAndSetFMUstate and not md.coSimulation.canSerializeFMUstate
    variables = {v.name: v for v in md.modelVariables}
    expected = {"m": ("parameter", "kg", "1"), "k": ("parameter", "N/m", "1"),
                "c": ("parameter", "N*s/m", "0"), "k_c": ("parameter", "N/m", "0.5"),
                "x0": ("parameter", "m", "1"), "v0": ("parameter", "m/s", "0"),
                "x_other": ("input", "m", "0"), "x": ("output", "m", None),
                "v": ("output", "m/s", None)}
    assert {n: (v.causality, v.unit, v.start) for n, v in variables.items()} == expected
    assert all(v.valueReference == VR[n] for n, v in variables.items())
    assert {u.variable.name: u.dependencies for u in md.outputs} == {"x": [], "v": []}
    units = {u.name: u.baseUnit for u in md.unitDefinitions}
    assert (units["N/m"].kg, units["N/m"].s) == (1, -2)
    assert (units["N*s/m"].kg, units["N*s/m"].s) == (1, -1)


def test_simulate_fmu_free_oscillation_matches_analytic(fmu):
    m, k, k_c, x0, v0 = 2.0, 3.0, 0.5, 0.3, -0.7
    result = fmpy.simulate_fmu(fmu, stop_time=10.0, output_interval=0.01,
                               start_values={"m": m, "k": k, "c": 0.0, "k_c": k_c,
                                             "x0": x0, "v0": v0})
    t = result["time"]
    w = np.sqrt((k + k_c) / m)
    assert len(t) == 1001 and t[-1] == pytest.approx(10.0)
    np.testing.assert_allclose(result["x"], x0 * np.cos(w * t) + v0 / w * np.sin(w * t),
                               rtol=0, atol=1e-12)
    np.testing.assert_allclose(result["v"], -x0 * w * np.sin(w * t) + v0 * np.cos(w * t),
                               rtol=0, atol=1e-12)


CASES = {
    "undamped": {"m": 1.0, "k": 1.0, "c": 0.0, "k_c": 0.5},
    "under-damped": {"m": 0.7, "k": 2.0, "c": 0.3, "k_c": 0.5},
    "critical": {"m": 1.0, "k": 0.5, "c": 2.0, "k_c": 0.5},  # c^2 = 4 m (k + k_c) exactly
    "near-critical": {"m": 1.0, "k": 0.5, "c": 2.0 * (1.0 + 1e-9), "k_c": 0.5},
    "over-damped": {"m": 0.5, "k": 1.0, "c": 8.0, "k_c": 2.0},
    "free mass, damped": {"m": 1.5, "k": 0.0, "c": 0.4, "k_c": 0.0},
    "free mass": {"m": 1.5, "k": 0.0, "c": 0.0, "k_c": 0.0},
}


@pytest.mark.parametrize("case", CASES)
def test_steps_are_exact_for_every_damping_regime(new_slave, case):
    params = CASES[case]
    slave = new_slave(**params, x0=0.4, v0=-1.1)
    rng = np.random.default_rng(7)
    z, t = np.array([0.4, -1.1]), 0.0
    for _ in range(60):
        h, x_other = float(rng.uniform(0.005, 0.5)), float(rng.uniform(-1.0, 1.0))
        slave.setReal([VR["x_other"]], [x_other])
        slave.doStep(t, h)
        z, t = exact_step(params, z, x_other, h), t + h
        np.testing.assert_allclose(state(slave), z, rtol=1e-12, atol=1e-12)


def test_two_instances_in_one_process_are_independent(new_slave):
    slow, fast = {"m": 4.0, "k": 1.0, "k_c": 0.0}, {"m": 0.25, "k": 9.0, "k_c": 1.0}
    a, b = new_slave(**slow, x0=1.0), new_slave(**fast, x0=-0.5, v0=0.2)
    za, zb = np.array([1.0, 0.0]), np.array([-0.5, 0.2])
    for n in range(50):
        t = 0.02 * n
        b.setReal([VR["x_other"]], [0.3])  # only b is driven
        a.doStep(t, 0.02)
        b.doStep(t, 0.02)
        za = exact_step({**slow, "c": 0.0}, za, 0.0, 0.02)
        zb = exact_step({**fast, "c": 0.0}, zb, 0.3, 0.02)
        np.testing.assert_allclose(state(a), za, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(state(b), zb, rtol=1e-12, atol=1e-13)
    assert a.getReal([VR["x_other"]]) == [0.0]


def test_get_and_set_fmu_state_reproduce_a_step(new_slave):
    slave = new_slave(c=0.2)
    for n in range(10):
        slave.doStep(0.05 * n, 0.05)
    slave.setReal([VR["x_other"]], [0.8])
    saved = slave.getFMUState()
    slave.doStep(0.5, 0.05)
    first = state(slave)
    slave.setReal([VR["x_other"]], [-3.0])  # diverge: other input, other step size
    slave.doStep(0.55, 0.3)
    assert not np.allclose(state(slave), first)
    slave.setFMUState(saved)
    assert slave.getReal([VR["x_other"]]) == [0.8]  # the input is part of the state
    slave.doStep(0.5, 0.05)
    assert np.array_equal(state(slave), first)
    slave.setFMUState(saved)  # the saved state is a copy, unchanged by the steps since
    slave.doStep(0.5, 0.05)
    assert np.array_equal(state(slave), first)
    slave.freeFMUState(saved)


def test_zero_mass_is_a_clean_fmpy_error_with_a_log_message(fmu, capsys):
    # fmpy's default logger prints the FMU's messages. (A custom simulate_fmu(logger=...) is
    # avoided on purpose: fmpy's native logger proxy keeps it in one process-wide static, and
    # once it is garbage-collected any later FMU log message in the process segfaults.)
    with pytest.raises(FMICallException, match="fmi2ExitInitializationMode"):
        fmpy.simulate_fmu(fmu, stop_time=0.1, start_values={"m": 0.0})
    assert "[ERROR] invalid parameter m = 0 kg: the mass must be > 0" in capsys.readouterr().out
    result = fmpy.simulate_fmu(fmu, stop_time=0.1, output_interval=0.01)  # process still fine
    assert result["x"][-1] == pytest.approx(np.cos(np.sqrt(1.5) * 0.1), abs=1e-12)


def test_fixed_parameter_cannot_change_after_initialization(new_slave):
    slave = new_slave()
    with pytest.raises(FMICallException, match="fmi2SetReal"):
        slave.setReal([VR["m"]], [2.0])
    slave.doStep(0.0, 0.1)  # the instance survives the refused call
    assert state(slave)[0] == pytest.approx(np.cos(np.sqrt(1.5) * 0.1), abs=1e-12)


def test_missing_gcc_raises_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(build.CFmuBuildError, match="gcc was not found"):
        build.build_c_oscillator(tmp_path)
