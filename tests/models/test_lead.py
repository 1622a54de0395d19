"""Lead FMU: interface circuit, pacing impedance and fault modes against clinical ranges."""

import fmu_kit as kit  # tests/fmu_kit.py
import numpy as np
import pytest
from fmpy import simulate_fmu
from fmpy.validation import validate_fmu
from scipy.integrate import quad
from scipy.optimize import curve_fit

LEAD, CELL = kit.library_script("lead"), kit.library_script("cell")


def lead(fault=0, **parameters):
    device = LEAD.Lead(instance_name="l")
    device.fault, device.fault_time = fault, 0.0
    for name, value in parameters.items():
        setattr(device, name, value)
    device.exit_initialization_mode()
    return device


def test_nominal_pacing_impedance_in_the_normal_range():
    """Normal 200–1200 Ω, typically 400–700 Ω (manufacturers' manuals; Ellenbogen et al. 2017)."""
    impedance = lead().pulse(3.5, 0.4, False)[0]
    assert 400.0 <= impedance <= 700.0


def test_conductor_fracture_raises_impedance_and_collapses_current():
    """An abrupt rise above ~1500–2000 Ω suggests conductor fracture (Ellenbogen et al. 2017)."""
    nominal, broken = lead(), lead(fault=1)
    assert broken.pulse(3.5, 0.4, True)[0] > 2000.0
    assert broken.pulse(3.5, 0.4, True)[2] < 0.2 * nominal.pulse(3.5, 0.4, False)[2]


def test_insulation_breach_lowers_impedance():
    """Below about 200–250 Ω suggests an insulation breach (Ellenbogen et al. 2017)."""
    breached = lead(fault=2)
    impedance, _, mean_tip, _, _ = breached.pulse(3.5, 0.4, True)
    assert impedance < 250.0
    assert mean_tip < lead().pulse(3.5, 0.4, False)[2]  # part of the current bypasses the tip


def test_charge_is_the_integral_of_the_tip_current():
    device = lead()
    _, _, _, charge, edge = device.pulse(2.0, 0.5, False)
    r_s = device.R_conductor + device.R_tissue
    v_inf = 2.0 * device.R_F / (r_s + device.R_F)
    tau = device.C_H * 1e-3 * r_s * device.R_F / (r_s + device.R_F)  # ms
    integral, _ = quad(lambda t: (2.0 - v_inf * (1 - np.exp(-t / tau))) / r_s * 1e3, 0, 0.5)
    assert charge == pytest.approx(integral, rel=1e-9)
    assert edge == pytest.approx(2.0 / r_s)


def test_dislodgement_drops_sensing_and_noise_makes_spikes():
    device = lead(fault=4)
    device.egm = 10.0
    device.do_step(0.0, 1e-3)
    assert abs(device.V_sense) < 1.0
    noisy = lead(fault=5, noise_rate=50.0, seed=3)
    spikes = 0
    for k in range(10000):
        noisy.egm = 0.0
        noisy.do_step(k * 1e-3, 1e-3)
        spikes += abs(noisy.V_sense) > 2.5  # above the generator's 2.5 mV sensitivity
    assert 350 < spikes < 650  # Poisson, 50 /s for 10 s


def threshold(width_ms: float, **lead_parameters) -> float:
    """Lowest pulse amplitude (V) that makes the cell fire, by bisection."""
    def captures(volts):
        device = lead(**lead_parameters)
        cell = CELL.Cell(instance_name="c")
        cell.exit_initialization_mode()
        device.V_pace_v, device.pulse_width_v = volts, width_ms
        device.do_step(0.0, 2e-3)
        cell.I_stim, cell.stim_width = device.I_stim, device.stim_width
        cell.do_step(0.0, 2e-3)
        cell.I_stim = 0.0
        for k in range(1, 30):
            cell.do_step(k * 2e-3, 2e-3)
        return cell.beat_count > 0

    low, high = 0.0, 20.0
    for _ in range(20):
        middle = 0.5 * (low + high)
        low, high = (low, middle) if captures(middle) else (middle, high)
    return high


def captures_at_step(volts: float, width: float, step_ms: float) -> bool:
    """Does a pulse of ``volts`` for ``width`` ms through the lead fire the cell, both stepped
    at ``step_ms`` (the lead before the cell in each step, as in the scenarios)?"""
    device, cell = lead(), CELL.Cell(instance_name="c")
    cell.exit_initialization_mode()
    h = step_ms * 1e-3
    for k in range(round(30.0 / step_ms)):
        device.V_pace_v = volts if k == 0 else 0.0  # the generator's output: the first step
        device.pulse_width_v = width
        device.do_step(k * h, h)
        cell.I_stim, cell.stim_width = device.I_stim, device.stim_width
        cell.do_step(k * h, h)
    return cell.beat_count > 0


def test_thresholds_do_not_depend_on_the_communication_step():
    """A pulse longer than the step is delivered over the steps it spans (it was cut to one
    step: at a 1 ms step the threshold at 2 ms was above that at 1 ms, at a 0.25 ms step the
    0.4 ms threshold was 1.10 V instead of 0.84 V). Thresholds at 0.1–1.5 ms agree within 2 %
    for communication steps of 0.1–2 ms, and fall with the width at every step."""
    steps, widths = (0.1, 0.25, 0.5, 1.0, 2.0), (0.1, 0.4, 1.0, 1.5)
    table = np.empty((len(widths), len(steps)))
    for i, width in enumerate(widths):
        for j, step_ms in enumerate(steps):
            low, high = 0.0, 10.0
            for _ in range(16):
                middle = 0.5 * (low + high)
                low, high = (low, middle) if captures_at_step(middle, width, step_ms) \
                    else (middle, high)
            table[i, j] = high
    assert np.all(table.max(axis=1) <= 1.02 * table.min(axis=1)), table
    assert np.all(np.diff(table, axis=0) < 0), table


WIDTHS = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 1.0, 1.5, 2.0])


@pytest.fixture(scope="module")
def strength_duration():
    """Thresholds (V) at WIDTHS (ms) and the Lapicque fit V = V_rh (1 + t_c/t) of them."""
    thresholds = np.array([threshold(w) for w in WIDTHS])
    (rheobase, chronaxie), _ = curve_fit(lambda t, r, c: r * (1 + c / t), WIDTHS, thresholds,
                                         p0=(0.5, 0.5))
    return thresholds, rheobase, chronaxie


def at(thresholds: np.ndarray, width: float) -> float:
    return float(thresholds[np.flatnonzero(WIDTHS == width)[0]])


def test_capture_threshold_at_0_4_ms_in_the_clinical_range(strength_duration):
    """Chronic ventricular threshold 0.5–1.5 V at 0.4–0.5 ms (Ellenbogen et al. 2017, Clinical
    Cardiac Pacing)."""
    thresholds, _, _ = strength_duration
    assert 0.5 <= at(thresholds, 0.4) <= 1.5
    assert np.all(np.diff(thresholds) < 0), "longer pulses need less voltage"


def test_chronaxie_by_the_clinical_definition(strength_duration):
    """Clinically (Ellenbogen et al. 2017; Lapicque 1909, C R Soc Biol 67:280) the rheobase is
    the threshold of a long pulse and the chronaxie the pulse width whose threshold is twice
    the rheobase: about 0.3–0.5 ms for cardiac pacing. Measured: rheobase = the threshold at
    2 ms (the curve is flat by then: 1.5 ms within 5 % of it), chronaxie interpolated on the
    curve (log-log): 0.37 ms (it was 0.215 ms, the rheobase 0.59 V). The Lapicque fit over
    0.1–2 ms, reported beside it, puts its rheobase below any measured threshold."""
    thresholds, fitted_rheobase, fitted_chronaxie = strength_duration
    rheobase = at(thresholds, 2.0)
    assert at(thresholds, 1.5) <= 1.05 * rheobase
    chronaxie = float(np.exp(np.interp(np.log(2 * rheobase), np.log(thresholds[::-1]),
                                       np.log(WIDTHS[::-1]))))
    assert 0.3 <= chronaxie <= 0.5
    assert fitted_rheobase < thresholds.min() and fitted_chronaxie > chronaxie


def test_weiss_charge_fit_agrees_with_lapicques(strength_duration):
    """Weiss 1901 (Arch Ital Biol 35:413): the delivered threshold charge Q = I_rh (t + t_c) is
    linear in the pulse width; its chronaxie is close to the Lapicque fit's (both fits of the
    whole curve: reported in lead.md, not the clinical chronaxie)."""
    thresholds, _, chronaxie = strength_duration
    device = lead()
    charge = np.array([device.pulse(v, w, False)[3]
                       for v, w in zip(thresholds, WIDTHS, strict=True)])
    (slope, intercept), residuals, *_ = np.polyfit(WIDTHS, charge, 1, full=True)
    assert intercept / slope == pytest.approx(chronaxie, rel=0.25)
    assert np.sqrt(residuals[0] / len(WIDTHS)) < 0.05 * charge.mean()  # linear indeed


def test_exit_block_raises_the_threshold_above_the_programmed_output():
    """Exit block: the nominal 3.5 V output no longer captures; 7.5 V (the usual maximum) does."""
    blocked = threshold(0.4, fault=3)
    assert 3.5 < blocked < 7.5


def test_fmu_validates_and_runs_in_fmpy(build_model):
    fmu = build_model("lead")
    assert validate_fmu(str(fmu)) == []
    result = simulate_fmu(str(fmu), stop_time=0.01, step_size=1e-3, output_interval=1e-3,
                          input=np.array([(0.0, 3.5, 0.4, 0.0)], dtype=[
                              ("time", "f8"), ("V_pace_v", "f8"), ("pulse_width_v", "f8"),
                              ("egm", "f8")]))
    assert result["impedance"][-1] == pytest.approx(500.0)
    assert result["I_stim"][-1] > 0
