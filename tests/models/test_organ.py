"""Tests of the organ FMU: the heart and circulation of Smith et al. 2004 (Med Eng Phys 26:131).

Comparators: the paper's healthy human (its Table 1 parameters, 80 /min: aortic pressure
120/80 mmHg, its abstract); an independent solution of the paper's equations written here
(scipy's adaptive Runge-Kutta, the septal balance by bracketed root finding, the paper's
periodic driver); healthy adult resting ranges (Guyton & Hall, Textbook of Medical Physiology)
at the rates the scenarios use. Verification: volume conservation, the driver's closed form,
the septal balance, valves that open on pressure and close on flow, substep convergence, FMU
state round trips. Long runs use the C FMU (the Python edition equals it bit for bit:
test_editions.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import fmpy
import fmu_kit as kit  # tests/fmu_kit.py
import numpy as np
import pytest
from fmpy.fmi1 import FMICallException
from fmpy.fmi2 import FMU2Slave
from fmpy.validation import validate_fmu
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

DT = 1e-3  # communication step (s)
WIDTH = 0.3  # activation pulse (s)
SIGNALS = ("P_lv", "P_rv", "P_ao", "P_vc", "P_pa", "P_pu", "V_lv", "V_spt", "Q_av", "e")
PER_BEAT = ("P_sys", "P_dia", "EDV", "ESV", "stroke_volume", "ejection_fraction",
            "cardiac_output", "heart_rate")

organ_module = kit.library_script("organ")

# Smith et al. 2004, Table 1 (healthy human), as encoded by the Physiome Model Repository's
# smith_chase_nokes_shaw_wake_2004 model and the implementations citing it
TABLE_1 = {"E_es_lvf": 2.8798, "P_0_lvf": 0.1203, "lambda_lvf": 0.033, "E_es_rvf": 0.585,
           "P_0_rvf": 0.2157, "lambda_rvf": 0.023, "E_es_spt": 48.754, "V_d_spt": 2.0,
           "P_0_spt": 1.1101, "lambda_spt": 0.435, "V_0_spt": 2.0, "P_0_pcd": 0.5003,
           "V_0_pcd": 200.0, "lambda_pcd": 0.03, "P_th": -4.0, "E_es_ao": 0.6913,
           "E_es_vc": 0.0059, "E_es_pa": 0.369, "E_es_pu": 0.0073, "R_sys": 1.0889,
           "R_pul": 0.1552, "R_mt": 0.0158, "R_av": 0.018, "R_tc": 0.0237, "R_pv": 0.0055,
           "L_mt": 7.6968e-5, "L_av": 1.2189e-4, "L_tc": 8.0093e-5, "L_pv": 1.4868e-4}
INITIAL = (94.6812, 90.7302, 133.3381, 329.7803, 43.0123, 808.4579)  # LV RV ao vc pa pu, mL


def square_activation(t: float, rate: float) -> float:
    """1 for WIDTH seconds at the start of every beat of a rate (/min), else 0 (counted in
    whole steps, so that rounding cannot shift an onset)."""
    step, period = round(t / DT), round(60.0 / rate / DT)
    return 1.0 if step % period < round(WIDTH / DT) else 0.0


def run(organ, seconds: float, activation, record=SIGNALS, t_start: float = 0.0):
    """Steps an initialised organ; returns ({signal: trace}, [per-beat outputs at each onset])."""
    n = round(seconds / DT)
    trace = {name: np.empty(n) for name in record}
    beats, count = [], organ.beat_count
    for i in range(n):
        t = t_start + i * DT
        organ.activation = activation(t)
        organ.do_step(t, DT)
        for name in record:
            trace[name][i] = getattr(organ, name)
        if organ.beat_count != count:
            count = organ.beat_count
            beats.append({name: getattr(organ, name) for name in PER_BEAT})
    return trace, beats


def c_organ(build_model, **parameters):
    organ = kit.CInstance(build_model("organ"))
    for name, value in parameters.items():
        setattr(organ, name, value)
    organ.exit_initialization_mode()
    return organ


def python_organ(**parameters):
    organ = organ_module.Organ(instance_name="t")
    for name, value in parameters.items():
        setattr(organ, name, value)
    organ.exit_initialization_mode()
    return organ


def paced(build_model, rate: float, seconds: float, record=(), **parameters):
    """The C FMU paced at `rate` for `seconds`: (traces of the last beat, published beats)."""
    organ = c_organ(build_model, **parameters)
    trace, beats = run(organ, seconds, lambda t: square_activation(t, rate), record)
    organ.free()
    period = round(60.0 / rate / DT)
    return {name: values[-period:] for name, values in trace.items()}, beats


def smith_2004(parameters: dict[str, float], period: float, beats: int) -> dict[str, float]:
    """The paper's equations solved independently: the driver exp(-80 ((t mod T) - 0.375)^2),
    the septal volume by bracketed root finding, scipy's RK45 at tight tolerances; from the
    paper's initial volumes with the valves closed. The extremes of the last cycle."""
    p = parameters

    def wall(e, v, es, p0, lam, vd=0.0, v0=0.0):
        return e * es * (v - vd) + (1.0 - e) * p0 * (math.exp(lam * (v - v0)) - 1.0)

    def pressures(t, u):
        v_lv, v_rv, v_ao, v_vc, v_pa, v_pu = u[:6]
        e = math.exp(-80.0 * ((t % period) - 0.375) ** 2)

        def septal_balance(s):
            return (wall(e, s, p["E_es_spt"], p["P_0_spt"], p["lambda_spt"], p["V_d_spt"],
                         p["V_0_spt"])
                    - wall(e, v_lv - s, p["E_es_lvf"], p["P_0_lvf"], p["lambda_lvf"])
                    + wall(e, v_rv + s, p["E_es_rvf"], p["P_0_rvf"], p["lambda_rvf"]))

        s = brentq(septal_balance, -50.0, 50.0, xtol=1e-12)
        peri = (p["P_0_pcd"] * (math.exp(p["lambda_pcd"] * (v_lv + v_rv - p["V_0_pcd"])) - 1.0)
                + p["P_th"])
        return {"lv": wall(e, v_lv - s, p["E_es_lvf"], p["P_0_lvf"], p["lambda_lvf"]) + peri,
                "rv": wall(e, v_rv + s, p["E_es_rvf"], p["P_0_rvf"], p["lambda_rvf"]) + peri,
                "ao": p["E_es_ao"] * v_ao, "vc": p["E_es_vc"] * v_vc,
                "pa": p["E_es_pa"] * v_pa + p["P_th"], "pu": p["E_es_pu"] * v_pu + p["P_th"]}

    def rhs(t, u):
        pr = pressures(t, u)
        q = [max(flow, 0.0) for flow in u[6:]]

        def valve(up, down, flow, r, inertance):  # open on pressure, close on flow
            drop = pr[up] - pr[down]
            return (drop - r * flow) / inertance if drop > 0.0 or flow > 0.0 else 0.0

        q_sys = (pr["ao"] - pr["vc"]) / p["R_sys"]
        q_pul = (pr["pa"] - pr["pu"]) / p["R_pul"]
        return [q[0] - q[1], q[2] - q[3], q[1] - q_sys, q_sys - q[2], q[3] - q_pul,
                q_pul - q[0],
                valve("pu", "lv", u[6], p["R_mt"], p["L_mt"]),
                valve("lv", "ao", u[7], p["R_av"], p["L_av"]),
                valve("vc", "rv", u[8], p["R_tc"], p["L_tc"]),
                valve("rv", "pa", u[9], p["R_pv"], p["L_pv"])]

    end = beats * period
    solution = solve_ivp(rhs, (0.0, end), [*INITIAL, 0.0, 0.0, 0.0, 0.0], method="RK45",
                         rtol=1e-8, atol=1e-8, max_step=5e-4, dense_output=True)
    u = solution.sol(np.arange(end - period, end, 1e-4))
    p_ao = p["E_es_ao"] * u[2]
    return {"P_sys": p_ao.max(), "P_dia": p_ao.min(), "EDV": u[0].max(), "ESV": u[0].min()}


@pytest.fixture(scope="module")
def resting(build_model):
    """The FMU paced at 80 /min for 30 s (the periodic state): last beat's traces, beats."""
    return paced(build_model, 80.0, 30.0, record=("P_ao",))


def test_defaults_are_the_papers_table_1(build_model):
    organ = c_organ(build_model)
    for name, value in TABLE_1.items():
        assert getattr(organ, name) == value, name
    assert (organ.A, organ.B, organ.C) == (1.0, 80.0, 0.375)
    assert sum(getattr(organ, f"V_{c}_init") for c in ("lv", "rv", "ao", "vc", "pa", "pu")) \
        == pytest.approx(1500.0)  # the paper's stressed blood volume
    organ.free()


def test_reproduces_the_papers_equations_at_80_per_min(build_model):
    """Third beat from the paper's initial state: the FMU (RK4 at 1 ms) and the independent
    solution agree to 0.1 %."""
    reference = smith_2004(TABLE_1, 0.75, 3)
    _, beats = paced(build_model, 80.0, 2.25 + DT)
    third = beats[3]
    for name in ("P_sys", "P_dia", "EDV", "ESV"):
        assert third[name] == pytest.approx(reference[name], rel=1e-3), name


def test_healthy_human_of_the_paper_at_80_per_min(resting):
    """Smith et al. 2004 (abstract, healthy-human simulation): 120/80 mmHg at 80 /min. The
    periodic state gives 116.5/79.0 (within 3 %); mean pressure 97.8 mmHg, inside the normal
    70-105; stroke volume 66 mL, cardiac output 5.3 L/min, EF 0.59."""
    trace, beats = resting
    last = beats[-1]
    assert last["P_sys"] == pytest.approx(120.0, rel=0.04)
    assert last["P_dia"] == pytest.approx(80.0, rel=0.04)
    assert 90.0 < trace["P_ao"].mean() < 100.0
    assert 60.0 <= last["stroke_volume"] <= 80.0 and 0.55 <= last["ejection_fraction"] <= 0.70
    assert last["cardiac_output"] == pytest.approx(
        last["stroke_volume"] * last["heart_rate"] / 1000.0, rel=1e-12)
    assert last["stroke_volume"] == pytest.approx(last["EDV"] - last["ESV"], abs=0.1)
    assert abs(beats[-2]["P_sys"] - last["P_sys"]) < 0.01  # periodic


def test_the_abstracts_trends(build_model, resting):
    """Smith et al. 2004, abstract: doubling the systemic resistance raises the blood
    pressure; raising the thoracic pressure from -4 to 0 mmHg lowers the cardiac output."""
    base = resting[1][-1]
    doubled = paced(build_model, 80.0, 30.0, R_sys=2.0 * TABLE_1["R_sys"])[1][-1]
    thoracic = paced(build_model, 80.0, 30.0, P_th=0.0)[1][-1]
    assert doubled["P_sys"] > base["P_sys"] + 30.0 and doubled["P_dia"] > base["P_dia"] + 30.0
    assert thoracic["cardiac_output"] < 0.95 * base["cardiac_output"]


@pytest.mark.xfail(strict=True, reason=(
    "the abstract's magnitudes (165/130 mmHg with R_sys doubled, cardiac output -9 % at "
    "P_th = 0) are not reproduced at the periodic state: 175.9/143.3 mmHg and -19 %, with "
    "these equations and Table 1 solved independently as well (organ.md); the paper's "
    "protocol for these runs is not in its abstract"))
def test_the_abstracts_magnitudes(build_model, resting):
    base = resting[1][-1]
    doubled = paced(build_model, 80.0, 30.0, R_sys=2.0 * TABLE_1["R_sys"])[1][-1]
    thoracic = paced(build_model, 80.0, 30.0, P_th=0.0)[1][-1]
    assert doubled["P_sys"] == pytest.approx(165.0, rel=0.03)
    assert doubled["P_dia"] == pytest.approx(130.0, rel=0.03)
    assert thoracic["cardiac_output"] / base["cardiac_output"] == pytest.approx(0.91, abs=0.03)


@pytest.mark.parametrize("rate", [60, 75])
def test_healthy_adult_at_rest_at_the_scenarios_rates(build_model, rate):
    """Guyton & Hall: 100-140 / 60-90 mmHg, EDV 100-140, ESV 40-70, SV 60-80 mL, EF 0.55-0.70,
    CO 4.5-6 L/min; heart rate equal to the driving rate."""
    _, beats = paced(build_model, rate, 20.0)
    last = beats[-1]
    assert 100.0 <= last["P_sys"] <= 140.0 and 60.0 <= last["P_dia"] <= 90.0
    assert 100.0 <= last["EDV"] <= 140.0 and 40.0 <= last["ESV"] <= 70.0
    assert 60.0 <= last["stroke_volume"] <= 80.0
    assert 0.55 <= last["ejection_fraction"] <= 0.70
    assert 4.5 <= last["cardiac_output"] <= 6.0
    assert beats[0]["heart_rate"] == 0.0  # a single onset gives no interval
    assert all(b["heart_rate"] == pytest.approx(rate, rel=1e-9) for b in beats[1:])


def test_faster_rate_lowers_stroke_volume_and_raises_output(build_model, resting):
    """Shorter diastole fills less (SV and EDV fall) but CO = SV x HR still rises, 60 -> 80."""
    slow, fast = paced(build_model, 60.0, 20.0)[1][-1], resting[1][-1]
    assert fast["stroke_volume"] < slow["stroke_volume"] and fast["EDV"] < slow["EDV"]
    assert fast["cardiac_output"] > slow["cardiac_output"]


def test_volume_is_conserved():
    organ = python_organ()
    run(organ, 3.0, lambda t: square_activation(t, 80.0), record=())
    assert organ.total_volume() == pytest.approx(sum(INITIAL), abs=1e-9)


def test_driver_is_the_papers_gaussian_from_each_onset(build_model):
    """After an onset at t0, e = A exp(-B (t - t0 - C)^2); onsets 200 ms apart add up, capped
    at A."""
    organ = c_organ(build_model)
    trace, _ = run(organ, 1.5, lambda t: 1.0 if 0.1 <= t < 0.4 else 0.0, record=("e",))
    t = DT * np.arange(1, 1501)
    expected = np.where(t > 0.1 + 1e-9, np.exp(-80.0 * (t - 0.1 - 0.375) ** 2), 0.0)
    np.testing.assert_allclose(trace["e"], expected, rtol=1e-12, atol=1e-15)
    double, _ = run(organ, 1.0, lambda t: 1.0 if 0.0 <= t % 0.2 < 0.05 else 0.0,
                    record=("e",), t_start=2.0)
    organ.free()
    assert double["e"].max() == 1.0 and double["e"].min() >= 0.0


def test_the_septum_balances_the_free_walls(build_model):
    """The algebraic constraint of the paper: P_lv - P_rv = P_spt(V_spt) at every step
    (Newton's residual, below 1e-3 mmHg)."""
    organ = c_organ(build_model)
    trace, _ = run(organ, 1.5, lambda t: square_activation(t, 80.0))
    organ.free()
    e, v = trace["e"], trace["V_spt"]
    p_spt = e * 48.754 * (v - 2.0) + (1.0 - e) * 1.1101 * (np.exp(0.435 * (v - 2.0)) - 1.0)
    np.testing.assert_allclose(trace["P_lv"] - trace["P_rv"], p_spt, atol=1e-3)
    assert v.max() - v.min() > 3.0  # the septum moves over the beat


def test_valves_open_on_pressure_and_close_on_flow(build_model):
    """Forward flow only; the aortic valve opens once P_lv exceeds P_ao, and its flow, carried
    by the blood's inertia, outlasts the pressure gradient before the valve closes at zero
    flow (Smith et al. 2004's valve law)."""
    organ = c_organ(build_model)
    trace, _ = run(organ, 3.0, lambda t: square_activation(t, 80.0))
    organ.free()
    flow, gradient = trace["Q_av"], trace["P_lv"] - trace["P_ao"]
    assert flow.min() >= 0.0
    opening = np.flatnonzero((flow[1:] > 0.0) & (flow[:-1] == 0.0)) + 1
    assert len(opening) >= 3 and np.all(gradient[opening] > 0.0)
    assert np.any((flow > 10.0) & (gradient < -0.3))  # decelerating against the gradient
    closing = np.flatnonzero((flow[:-1] > 0.0) & (flow[1:] == 0.0)) + 1
    assert len(closing) >= 3 and np.all(gradient[closing] < 0.0)


def test_asystole_output_falls_to_zero_and_pressures_equalise(build_model):
    """No beat for 2 s: heart rate and CO are 0; P_ao falls monotonically once ejection has
    ended and every pressure approaches the loop's mean filling pressure (about 2.3 mmHg)."""
    organ = c_organ(build_model)
    run(organ, 8.0, lambda t: square_activation(t, 60.0), record=())
    assert organ.cardiac_output > 4.0
    trace, _ = run(organ, 25.0, lambda t: 0.0, record=SIGNALS, t_start=8.0)
    assert organ.heart_rate == 0.0 and organ.cardiac_output == 0.0
    p_ao = trace["P_ao"][1000:]
    assert np.all(np.diff(p_ao) <= 1e-9)
    final = [trace[name][-1] for name in ("P_lv", "P_rv", "P_ao", "P_vc", "P_pa", "P_pu")]
    assert max(final) - min(final) < 0.3 and 1.5 < min(final) < 3.0
    organ.free()


def test_beat_detection_has_hysteresis():
    """A dip of activation to just below the threshold inside a beat is not a new onset."""
    def wobbly(t: float) -> float:
        phase = t % 1.0
        if phase < 0.3:
            return 0.45 if 0.1 <= phase < 0.12 else 1.0
        return 0.0

    organ = python_organ()
    run(organ, 3.0, wobbly, record=())
    assert organ.beat_count == 3
    assert organ.heart_rate == pytest.approx(60.0)


def test_substep_convergence(build_model):
    """RK4 at the default substep (1 ms) agrees with 0.1 ms substeps to 0.02 mmHg / mL."""
    coarse = paced(build_model, 75.0, 6.0)[1][-1]
    fine = paced(build_model, 75.0, 6.0, h_max=0.1)[1][-1]
    for name in ("P_sys", "P_dia", "EDV", "ESV", "stroke_volume"):
        assert coarse[name] == pytest.approx(fine[name], abs=0.02), name


def test_invalid_parameters_are_refused(build_model):
    with pytest.raises(ValueError, match="R_sys must be > 0"):
        python_organ(R_sys=0.0)
    organ = kit.CInstance(build_model("organ"))
    organ.L_av = -1.0
    with pytest.raises(FMICallException, match="fmi2ExitInitializationMode"):
        organ.exit_initialization_mode()
    organ.free()


def test_state_round_trip_through_json():
    organ = python_organ()
    run(organ, 2.15, lambda t: square_activation(t, 75.0), record=())
    saved = json.loads(json.dumps(organ._get_fmu_state()))
    first, _ = run(organ, 1.85, lambda t: square_activation(t, 75.0), t_start=2.15)
    count = organ.beat_count
    organ._set_fmu_state(saved)
    second, _ = run(organ, 1.85, lambda t: square_activation(t, 75.0), t_start=2.15)
    assert organ.beat_count == count
    for name in SIGNALS:
        np.testing.assert_array_equal(first[name], second[name])


def test_fmu_validates(build_model):
    assert validate_fmu(str(build_model("organ"))) == []


def test_fmu_state_serialises_and_restores(build_model):
    """Through fmpy's FMU2Slave: get/serialise/deserialise/set state reproduces the steps."""
    fmu = build_model("organ")
    description = fmpy.read_model_description(str(fmu))
    refs = {v.name: v.valueReference for v in description.modelVariables}
    units = {v.name: v.unit for v in description.modelVariables}
    assert units["activation"] == "1" and units["P_ao"] == "mmHg"
    assert units["cardiac_output"] == "L/min" and units["R_sys"] == "mmHg*s/mL"
    slave = FMU2Slave(guid=description.guid, unzipDirectory=fmpy.extract(str(fmu)),
                      modelIdentifier=description.coSimulation.modelIdentifier,
                      instanceName="organ")
    slave.instantiate()
    slave.setupExperiment(startTime=0.0)
    slave.enterInitializationMode()
    slave.exitInitializationMode()
    out_refs = [refs[n] for n in ("P_ao", "V_lv", "P_sys", "stroke_volume", "heart_rate")]

    def fmu_run(t0: float, t1: float) -> np.ndarray:
        rows = []
        for i in range(round((t1 - t0) / DT)):
            t = t0 + i * DT
            slave.setReal([refs["activation"]], [square_activation(t, 75)])
            slave.doStep(t, DT)
            rows.append(slave.getReal(out_refs))
        return np.array(rows)

    fmu_run(0.0, 1.7)
    state = slave.serializeFMUState(slave.getFMUState())
    first = fmu_run(1.7, 3.0)
    slave.setFMUState(slave.deSerializeFMUstate(state))
    second = fmu_run(1.7, 3.0)
    assert slave.getInteger([refs["beat_count"]]) == [4]
    slave.terminate()
    slave.freeInstance()
    np.testing.assert_array_equal(first, second)


def test_simulate_fmu_runs(build_model):
    """fmpy.simulate_fmu with a tabulated 60 /min activation input."""
    rows = [row for k in range(4) for row in ((k, 0.0), (k, 1.0), (k + WIDTH, 1.0),
                                              (k + WIDTH, 0.0))]
    signal = np.array(rows, dtype=[("time", float), ("activation", float)])
    result = fmpy.simulate_fmu(str(Path(build_model("organ"))), stop_time=4.0, step_size=DT,
                               output_interval=DT, input=signal)
    assert result["beat_count"][-1] == 4
    assert result["heart_rate"][-1] == pytest.approx(60.0, rel=1e-6)
    assert result["P_ao"].min() > 20.0
    assert result["Q_av"].max() > 100.0
