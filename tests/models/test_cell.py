"""Cell FMU (Mitchell–Schaeffer 2003 myocyte under the electrode) against published figures."""

import math

import fmu_kit as kit  # tests/fmu_kit.py
import numpy as np
import pytest
from fmpy import simulate_fmu
from fmpy.validation import validate_fmu
from scipy.integrate import solve_ivp


def load():
    return kit.library_script("cell")


@pytest.fixture(params=["python", "c"])
def new_cell(request, build_model):
    """Makes uninitialised cells of one edition: the Python class, or the C FMU through fmpy."""
    if request.param == "python":
        return lambda: load().Cell(instance_name="t")
    fmu = build_model("cell")
    return lambda: kit.CInstance(fmu)


def response(new_cell, current: float, width: float, parameters: dict, steps: int = 40,
             step: float = 1e-3):
    """(beats, lowest V, highest V) of a cell stimulated once at t = 0."""
    cell = new_cell()
    for name, value in parameters.items():
        setattr(cell, name, value)
    cell.exit_initialization_mode()
    lowest, highest = math.inf, -math.inf
    for k in range(steps):
        cell.I_stim, cell.stim_width = (current, width) if k == 0 else (0.0, 0.0)
        cell.do_step(k * step, step)
        lowest, highest = min(lowest, cell.V), max(highest, cell.V)
    beats = cell.beat_count
    if hasattr(cell, "free"):
        cell.free()
    return beats, lowest, highest


# The calibration before the AP and chronaxie fixes: fast kinetics, where the old substep
# control blew up (with the slower defaults it happens not to).
FAST = {"tau_in": 0.008, "tau_out": 0.16, "g_load": 6.2, "V_peak": 15.0}


@pytest.mark.parametrize("kinetics", ["defaults", "fast"])
@pytest.mark.parametrize("width", [0.1, 0.4, 1.0])
def test_no_blow_up_near_threshold(new_cell, width, kinetics):
    """Stimuli across 0.9–1.1 × the threshold current (61 amplitudes; the old substep control
    let V reach −1600 and +2900 mV 0.3 % below threshold with the fast kinetics): V stays
    finite and within the model's range, V_rest to V_peak, at 0.1, 0.4 and 1.0 ms."""
    parameters = FAST if kinetics == "fast" else {}
    v_peak = parameters.get("V_peak", 40.0)
    low, high = 0.0, 1000.0
    for _ in range(30):  # threshold current, Python edition (the editions agree bit for bit)
        middle = 0.5 * (low + high)
        low, high = (low, middle) if response(lambda: load().Cell(instance_name="b"),
                                              middle, width, parameters)[0] else (middle, high)
    for fraction in np.linspace(0.9, 1.1, 61):
        beats, lowest, highest = response(new_cell, fraction * high, width, parameters)
        assert -85.5 < lowest and highest < v_peak, (fraction, lowest, highest)
        assert beats == (fraction >= 1.0)


def paced(bcl_ms: int, beats: int, current=150.0, width=1.0, **parameters):
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
    """Rest −85 mV and an overshoot of about +35 mV, as TP06's human epicardial cell (ten
    Tusscher & Panfilov 2006, Am J Physiol 291:H1088). The unloaded cell peaks at +34 mV
    (V_peak = +40 mV, calibrated); loaded toward tissue held at rest it peaks lower (the
    closed loop, where the tissue depolarises with it: test_scenarios.py)."""
    cell, trace = paced(1000, 2)
    assert min(trace) == pytest.approx(-85.0, abs=0.5)
    assert trace[-1] == pytest.approx(-85.0, abs=1.0)
    assert 0.0 < max(trace) < cell.V_peak
    _, unloaded = paced(1000, 2, g_load=0.0)
    assert 25.0 <= max(unloaded) <= 45.0


def test_apd90_at_1hz_in_the_human_range():
    """APD90 at BCL 1000 ms: human ventricle about 250–350 ms (ten Tusscher & Panfilov
    2006, Am J Physiol 291:H1088, and the measurements it cites).

    The membrane's own action potential (g_load = 0). Loaded toward tissue held at rest it is
    shorter (≈ 173 ms); in the closed loop, where the tissue node depolarises with the cell,
    it is ≈ 327 ms (docs/models/cell.md)."""
    cell, _ = paced(1000, 4, g_load=0.0)
    assert 250.0 <= cell.apd90 <= 350.0
    assert cell.beat_count == 4


def ms_oracle(cell, current: float, width: float, stop: float) -> tuple[np.ndarray, np.ndarray]:
    """The cell's equations (V_tissue at rest) solved by LSODA: times (ms) and v."""
    def rhs(t, y):
        v, h = y
        stim = current / (cell.C_m * (cell.V_peak - cell.V_rest)) if t < width else 0.0
        dh = (1 - h) / cell.tau_open if v < cell.v_gate else -h / cell.tau_close
        return [h * v * v * (1 - v) / cell.tau_in - v / cell.tau_out
                - cell.g_load / cell.C_m * v + stim, dh]

    first = solve_ivp(rhs, (0.0, width), [0.0, 1.0], method="LSODA", max_step=0.002,
                      rtol=1e-8, atol=1e-10)
    rest = solve_ivp(rhs, (width, stop), first.y[:, -1], method="LSODA", max_step=0.05,
                     rtol=1e-8, atol=1e-10)
    return np.concatenate([first.t, rest.t[1:]]), np.concatenate([first.y[0], rest.y[0, 1:]])


def test_rosenbrock_euler_matches_an_lsoda_solution():
    """Verification of the integrator (ASME V&V 40: calculation verification): the APD90 and
    the threshold current at 0.4 ms agree with an independent LSODA solution of the same
    equations within 1 % and 2 %."""
    cell, trace = paced(1000, 1)
    t, v = ms_oracle(cell, 150.0, 1.0, 500.0)
    up = np.flatnonzero((v[:-1] < 0.45) & (v[1:] >= 0.45))[0]
    level = 0.1 * v.max()
    down = up + np.flatnonzero((v[up:-1] >= level) & (v[up + 1:] < level))[0]
    t_up = t[up] + (0.45 - v[up]) / (v[up + 1] - v[up]) * (t[up + 1] - t[up])
    t_down = t[down] + (v[down] - level) / (v[down] - v[down + 1]) * (t[down + 1] - t[down])
    assert cell.apd90 == pytest.approx(t_down - t_up, rel=0.01)
    assert max(trace) == pytest.approx(cell.V_rest + (cell.V_peak - cell.V_rest) * v.max(),
                                       abs=0.5)

    def fires(current):
        cell, _ = paced(60, 1, current=current, width=0.4)
        return cell.beat_count > 0

    low, high = 0.0, 200.0
    for _ in range(16):
        middle = 0.5 * (low + high)
        low, high = (low, middle) if fires(middle) else (middle, high)
    assert ms_oracle(cell, 0.98 * high, 0.4, 60.0)[1].max() < 0.45
    assert ms_oracle(cell, 1.02 * high, 0.4, 60.0)[1].max() > 0.45


def upstroke_velocity(cell) -> float:
    """Max dV/dt (V/s) of the membrane's own upstroke: 10 µs steps, a 0.2 ms stimulus of
    twice its threshold, dV/dt taken after the stimulus ends (its current is not the cell's)."""
    cell.exit_initialization_mode()
    previous, fastest = cell.V, 0.0
    for k in range(500):
        cell.I_stim, cell.stim_width = (250.0 if k < 20 else 0.0), 0.0
        cell.do_step(k * 1e-5, 1e-5)
        if k >= 20:
            fastest = max(fastest, (cell.V - previous) / 0.01)
        previous = cell.V
    assert cell.beat_count == 1
    return fastest


@pytest.mark.xfail(strict=True, reason="known limitation: the unloaded cell's upstroke reaches "
                   "about 490 V/s (τ_in 0.027 ms; it was 1100 V/s); 300–350 V/s would need "
                   "τ_in ≈ 0.045 ms, with which the patch is not excitable against the load that "
                   "gives the clinical chronaxie (docs/models/cell.md)")
def test_upstroke_velocity_as_tp06(new_cell):
    """Max dV/dt of the isolated human epicardial cell about 300–350 V/s (ten Tusscher &
    Panfilov 2006): the unloaded cell (g_load = 0)."""
    cell = new_cell()
    cell.g_load = 0.0
    assert 300.0 <= upstroke_velocity(cell) <= 350.0


def test_upstroke_velocity_halved_by_the_calibration(new_cell):
    """The unloaded upstroke is now about 490 V/s (1100 V/s before τ_in went 0.008 → 0.027 ms)
    and, loaded by tissue at rest, slower still: what is left of the limitation above."""
    unloaded = new_cell()
    unloaded.g_load = 0.0
    assert 450.0 <= upstroke_velocity(unloaded) <= 600.0
    assert upstroke_velocity(new_cell()) < 450.0


def test_restitution_shorter_apd_at_faster_pacing():
    """APD90 shorter at faster pacing (ten Tusscher & Panfilov 2006: restitution)."""
    slow, _ = paced(1000, 4, g_load=0.0)
    fast, _ = paced(500, 8, g_load=0.0)
    assert fast.apd90 < slow.apd90 - 10.0


def test_subthreshold_stimulus_does_not_capture():
    cell, _ = paced(1000, 1, current=2.0, width=0.5)
    assert cell.beat_count == 0
    cell, _ = paced(1000, 1, current=200.0, width=0.5)
    assert cell.beat_count == 1


def test_state_roundtrip_reproduces_the_run():
    cell, _ = paced(1000, 1)
    state = cell._get_fmu_state()

    def beat() -> list[float]:
        """30 ms from t = 1 s, paced (60 uA/cm2, 1 ms) in the first step."""
        trace = []
        for k in range(30):
            cell.I_stim, cell.stim_width = (60.0, 1.0) if k == 0 else (0.0, 0.0)
            cell.do_step(1.0 + k * 1e-3, 1e-3)
            trace.append(cell.V)
        return trace

    first = beat()
    cell._set_fmu_state(state)
    assert beat() == first


def test_fmu_validates_and_runs_in_fmpy(build_model):
    fmu = build_model("cell")
    assert validate_fmu(str(fmu)) == []
    result = simulate_fmu(str(fmu), stop_time=0.5, step_size=1e-3, output_interval=1e-3)
    assert result["V"][-1] == pytest.approx(-85.0, abs=0.5)
