"""Cell FMU (Mitchell–Schaeffer 2003 myocyte under the electrode) against published figures."""

import importlib.util
from pathlib import Path

import pytest
from fmpy import simulate_fmu
from fmpy.validation import validate_fmu

SCRIPT = Path(__file__).resolve().parents[2] / "fmus" / "cell" / "cosim_cell.py"


def load():
    spec = importlib.util.spec_from_file_location("cosim_cell_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def paced(bcl_ms: int, beats: int, current=60.0, width=1.0, **parameters):
    cell = load().Cell(instance_name="t")
    for name, value in parameters.items():
        setattr(cell, name, value)
    cell.exit_initialization_mode()
    trace = []
    for k in range(bcl_ms * beats):
        cell.I_stim, cell.stim_width = (current, width) if k % bcl_ms == 0 else (0.0, 0.0)
        cell.do_step(k * 1e-3, 1e-3)
        trace.append(cell.V)
    return cell, trace


def test_resting_potential_and_peak():
    """Rest −85 mV as TP06's human epicardial cell (Am J Physiol 2006, ≈ −85 mV); the
    overshoot of the two-variable model stays below V_peak = +15 mV (TP06: ≈ +35 mV; a known
    simplification of the model, documented)."""
    cell, trace = paced(1000, 2)
    assert min(trace) == pytest.approx(-85.0, abs=0.5)
    assert 0.0 < max(trace) <= 15.0
    assert trace[-1] == pytest.approx(-85.0, abs=1.0)


def test_apd90_at_1hz_in_the_human_range():
    """APD90 at BCL 1000 ms: human ventricle about 250–350 ms (references.md, TP06)."""
    cell, _ = paced(1000, 4, g_load=0.0)
    assert 250.0 <= cell.apd90 <= 350.0
    assert cell.beat_count == 4


def test_restitution_shorter_apd_at_faster_pacing():
    slow, _ = paced(1000, 4)
    fast, _ = paced(500, 8)
    assert fast.apd90 < slow.apd90 - 10.0


def test_subthreshold_stimulus_does_not_capture():
    cell, _ = paced(1000, 1, current=2.0, width=0.5)
    assert cell.beat_count == 0
    cell, _ = paced(1000, 1, current=200.0, width=0.5)
    assert cell.beat_count == 1


def test_state_roundtrip_reproduces_the_run():
    cell, _ = paced(1000, 1)
    state = cell._get_fmu_state()
    cell.I_stim, cell.stim_width = 60.0, 1.0
    cell.do_step(1.0, 1e-3)
    first = [cell.V]
    cell.I_stim = 0.0
    for k in range(1, 30):
        cell.do_step(1.0 + k * 1e-3, 1e-3)
        first.append(cell.V)
    cell._set_fmu_state(state)
    cell.I_stim, cell.stim_width = 60.0, 1.0
    cell.do_step(1.0, 1e-3)
    second = [cell.V]
    cell.I_stim = 0.0
    for k in range(1, 30):
        cell.do_step(1.0 + k * 1e-3, 1e-3)
        second.append(cell.V)
    assert first == second


def test_fmu_validates_and_runs_in_fmpy(build_model):
    fmu = build_model("cell")
    assert validate_fmu(str(fmu)) == []
    result = simulate_fmu(str(fmu), stop_time=0.5, step_size=1e-3, output_interval=1e-3,
                          start_values={"g_load": 0.0})
    assert result["V"][-1] == pytest.approx(-85.0, abs=0.5)
