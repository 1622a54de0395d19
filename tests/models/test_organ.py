"""Tests of the organ FMU (left heart + systemic circulation, time-varying elastance).

Published comparators: healthy adult at rest (Guyton & Hall, Textbook of Medical Physiology):
arterial pressure about 120/80 mmHg, EDV about 120 mL, ESV about 50 mL, SV 60-80 mL, EF
55-70 %, CO 4.5-6 L/min at 60-80 /min. Verification: volume conservation, closed-form
contraction lag, the asystolic loop settling at its mean filling pressure, substep
convergence, FMU state round trips.
"""

from __future__ import annotations

import json
import math

import fmpy
import fmu_kit as kit  # tests/fmu_kit.py
import numpy as np
import pytest
from fmpy.fmi2 import FMU2Slave
from fmpy.validation import validate_fmu

DT = 1e-3  # communication step (s)
WIDTH = 0.3  # activation pulse (s)


organ_module = kit.library_script("organ")


def make_organ(**params: float):
    """An initialised Organ instance, parameters overridden by keyword."""
    model = organ_module.Organ(instance_name="t")
    for name, value in params.items():
        setattr(model, name, value)
    model.exit_initialization_mode()
    return model


def square_activation(t: float, rate: float) -> float:
    """1 for WIDTH seconds at the start of every beat of a rate (/min), else 0.

    Counted in whole communication steps, so that float rounding cannot shift an onset.
    """
    step, period = round(t / DT), round(60.0 / rate / DT)
    return 1.0 if step % period < round(WIDTH / DT) else 0.0


def run(model, t_start: float, t_end: float, activation, record: tuple[str, ...] = ()):
    """Step the model from t_start to t_end; returns {name: array} of recorded outputs."""
    n = round((t_end - t_start) / DT)
    trace = {name: np.empty(n) for name in record}
    for i in range(n):
        t = t_start + i * DT
        model.activation = activation(t)
        model.do_step(t, DT)
        for name in record:
            trace[name][i] = getattr(model, name)
    return trace


def beats(model, rate: float, t_end: float) -> list[dict[str, float]]:
    """Per-beat outputs published at each onset of a square activation train."""
    published, count = [], 0
    n = round(t_end / DT)
    names = ("P_sys", "P_dia", "EDV", "ESV", "stroke_volume", "ejection_fraction",
             "cardiac_output", "heart_rate")
    for i in range(n):
        t = i * DT
        model.activation = square_activation(t, rate)
        model.do_step(t, DT)
        if model.beat_count != count:
            count = model.beat_count
            published.append({name: getattr(model, name) for name in names})
    return published


@pytest.fixture(scope="module")
def steady() -> dict[int, tuple[object, list[dict[str, float]]]]:
    """25 s of pacing at 60 and 75 /min from the default initial state."""
    result = {}
    for rate in (60, 75):
        model = make_organ()
        result[rate] = (model, beats(model, rate, 25.0))
    return result


@pytest.mark.parametrize("rate", [60, 75])
def test_healthy_adult_at_rest_within_published_ranges(steady, rate):
    """Guyton & Hall: 120/80 mmHg, EDV ~120, ESV ~50, SV 60-80, EF 55-70 %."""
    model, published = steady[rate]
    last = published[-1]
    assert 100.0 <= last["P_sys"] <= 140.0
    assert 60.0 <= last["P_dia"] <= 90.0
    assert 100.0 <= last["EDV"] <= 140.0
    assert 40.0 <= last["ESV"] <= 70.0
    assert 60.0 <= last["stroke_volume"] <= 80.0
    assert 0.55 <= last["ejection_fraction"] <= 0.70
    assert 4.5 <= last["cardiac_output"] <= 6.0
    # the published beat is a periodic steady state, and self-consistent
    assert abs(published[-2]["stroke_volume"] - last["stroke_volume"]) < 0.05
    assert abs(published[-2]["P_sys"] - last["P_sys"]) < 0.05
    assert last["stroke_volume"] == pytest.approx(last["EDV"] - last["ESV"], abs=0.1)
    assert last["cardiac_output"] == pytest.approx(
        last["stroke_volume"] * last["heart_rate"] / 1000.0, rel=1e-12)
    assert last["ejection_fraction"] == pytest.approx(last["stroke_volume"] / last["EDV"])


@pytest.mark.parametrize("rate", [60, 75])
def test_heart_rate_equals_driving_rate(steady, rate):
    model, published = steady[rate]
    assert published[0]["heart_rate"] == 0.0  # a single onset gives no interval
    assert model.beat_count == math.ceil(25.0 * rate / 60.0)
    for beat in published[1:]:
        assert beat["heart_rate"] == pytest.approx(rate, rel=1e-9)


def test_faster_rate_raises_output_and_lowers_stroke_volume(steady):
    """Shorter diastole fills less (SV falls) but CO = SV x HR still rises at 60 -> 75 /min."""
    slow, fast = steady[60][1][-1], steady[75][1][-1]
    assert fast["stroke_volume"] < slow["stroke_volume"]
    assert fast["EDV"] < slow["EDV"]
    assert fast["cardiac_output"] > slow["cardiac_output"]


@pytest.mark.parametrize("rate", [60, 75])
def test_volume_is_conserved(steady, rate):
    model, _ = steady[rate]
    assert model.total_volume() == pytest.approx(model.V_total, abs=1e-8)


def test_valves_are_diodes_and_pressures_order():
    """Flow only forward; during ejection P_lv > P_ao, during filling P_ven > P_lv."""
    model = make_organ()
    trace = run(model, 0.0, 5.0, lambda t: square_activation(t, 60),
                ("Q_ao", "P_lv", "P_ao", "P_ven", "V_lv"))
    assert trace["Q_ao"].min() >= 0.0
    ejecting = trace["Q_ao"] > 1.0
    assert ejecting.any()
    assert np.all(trace["P_lv"][ejecting] > trace["P_ao"][ejecting])
    filling = np.diff(trace["V_lv"]) > 1e-3
    assert filling.any()
    open_mitral = trace["P_ven"] > trace["P_lv"]
    assert np.all((open_mitral[:-1] | open_mitral[1:])[filling])


def test_contraction_rise_matches_closed_form():
    """Two equal first-order lags from rest: e(t) = 1 - (1 + t/tau) exp(-t/tau)."""
    model = make_organ()
    tau = model.tau_act * 1e-3
    trace = run(model, 0.0, WIDTH, lambda t: 1.0, ("e",))
    t = DT * np.arange(1, len(trace["e"]) + 1)
    expected = 1.0 - (1.0 + t / tau) * np.exp(-t / tau)
    assert np.max(np.abs(trace["e"] - expected)) < 1e-7


def test_asystole_output_falls_to_zero_and_pressure_decays():
    """Without activation CO and HR go to 0 and the loop settles at its mean filling pressure."""
    model = make_organ()
    run(model, 0.0, 10.0, lambda t: square_activation(t, 60))
    assert model.cardiac_output > 4.0
    p_dia = model.P_dia
    trace = run(model, 10.0, 25.0, lambda t: 0.0, ("P_ao", "Q_ao", "cardiac_output"))
    assert model.heart_rate == 0.0
    assert model.cardiac_output == 0.0
    assert model.stroke_volume < 0.5
    assert trace["Q_ao"][1000:].max() == 0.0
    p_ao = trace["P_ao"][1000:]
    assert np.all(np.diff(p_ao) <= 1e-12)  # decays monotonically once ejection has ended
    assert p_ao[-1] < 0.2 * p_dia
    # equilibrium: stressed volume spread over all compliances (LV compliance 1/E_min)
    stressed = model.V_total - model.V_unstressed - model.V_0
    p_fill = stressed / (model.C_a + model.C_v + 1.0 / model.E_min)
    assert p_ao[-1] == pytest.approx(p_fill, abs=0.5)
    assert 5.0 <= p_fill <= 10.0  # mean systemic filling pressure ~7 mmHg (Guyton & Hall)


def test_beat_detection_has_hysteresis():
    """A dip of activation to just below the threshold inside a beat is not a new onset."""
    def wobbly(t: float) -> float:
        phase = t % 1.0
        if phase < 0.3:
            return 0.45 if 0.1 <= phase < 0.12 else 1.0
        return 0.0

    model = make_organ()
    run(model, 0.0, 3.0, wobbly)
    assert model.beat_count == 3
    assert model.heart_rate == pytest.approx(60.0)


def test_substep_convergence():
    """RK4 at the default 1 ms substep agrees with a 0.1 ms substep to 0.02 mmHg / mL."""
    coarse, fine = make_organ(), make_organ(h_max=0.1)
    for model in (coarse, fine):
        beats(model, 75, 6.0)
    for name in ("P_ao", "P_lv", "V_lv", "P_sys", "P_dia", "stroke_volume", "ESV"):
        assert getattr(coarse, name) == pytest.approx(getattr(fine, name), abs=0.02)


def test_state_round_trip_through_json():
    model = make_organ()
    run(model, 0.0, 2.15, lambda t: square_activation(t, 75))
    saved = json.loads(json.dumps(model._get_fmu_state()))
    names = ("P_lv", "V_lv", "P_ao", "Q_ao", "P_sys", "stroke_volume", "heart_rate")
    first = run(model, 2.15, 4.0, lambda t: square_activation(t, 75), names)
    count = model.beat_count
    model._set_fmu_state(saved)
    second = run(model, 2.15, 4.0, lambda t: square_activation(t, 75), names)
    assert model.beat_count == count
    for name in names:
        np.testing.assert_array_equal(first[name], second[name])


def test_fmu_validates(build_model):
    assert validate_fmu(str(build_model("organ"))) == []


def test_fmu_matches_class_and_restores_state(build_model):
    """Through fmpy's FMU2Slave: same numbers as the class; get/set/serialise state."""
    fmu = build_model("organ")
    description = fmpy.read_model_description(str(fmu))
    refs = {v.name: v.valueReference for v in description.modelVariables}
    units = {v.name: v.unit for v in description.modelVariables}
    assert units["activation"] == "1" and units["P_ao"] == "mmHg"
    assert units["cardiac_output"] == "L/min" and units["heart_rate"] == "1/min"
    unzipped = fmpy.extract(str(fmu))
    slave = FMU2Slave(guid=description.guid, unzipDirectory=unzipped,
                      modelIdentifier=description.coSimulation.modelIdentifier,
                      instanceName="organ")
    slave.instantiate()
    slave.setupExperiment(startTime=0.0)
    slave.enterInitializationMode()
    slave.exitInitializationMode()
    names = ["P_ao", "V_lv", "P_sys", "stroke_volume", "heart_rate"]
    out_refs = [refs[n] for n in names]

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

    model = make_organ()
    reference = run(model, 0.0, 3.0, lambda t: square_activation(t, 75), tuple(names))
    np.testing.assert_allclose(second, np.column_stack([reference[n] for n in names])[1700:],
                               rtol=1e-12, atol=1e-12)


def test_simulate_fmu_runs(build_model):
    """fmpy.simulate_fmu with a tabulated 60 /min activation input."""
    rows = [row for k in range(4) for row in ((k, 0.0), (k, 1.0), (k + WIDTH, 1.0),
                                              (k + WIDTH, 0.0))]
    signal = np.array(rows, dtype=[("time", float), ("activation", float)])
    result = fmpy.simulate_fmu(str(build_model("organ")), stop_time=4.0, step_size=DT,
                               output_interval=DT, input=signal)
    assert result["beat_count"][-1] == 4
    assert result["heart_rate"][-1] == pytest.approx(60.0, rel=1e-6)
    assert result["P_ao"].min() > 20.0
    assert result["Q_ao"].max() > 100.0
