"""The C editions of the library models agree with their Python editions, the reference.

Each model is driven with the same scripted inputs, step by step, in both editions: the
Python class (fmus/<model>/cosim_<model>.py) and the C FMU (fmus/<model>/<model>.c, built by
``cosim build-fmus``) through fmpy. The C models do the Python editions' arithmetic in the same
order, so every output must be equal bit for bit; the one exception is the tissue's
electrogram, a weighted sum over the nodes that numpy (BLAS) and the C loop add up in
different orders: equal to 1e-9 mV. Then the same through both FMUs (the Python edition built
by pythonfmu), and the C FMUs' state round trips.

The FMI 3.0 edition of each C model (the same model file under fmus/common/fmi3_layer.c) is
held to its FMI 2.0 edition with the same scripts: every output equal bit for bit, the
electrogram included (the same C code); the tissue's membrane potential map, an FMI 3 array
output, equals the Python edition's ``potential_map()`` bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import fmu_kit as kit  # tests/fmu_kit.py
import numpy as np
import pytest
from fmpy import extract, read_model_description
from fmpy.fmi2 import FMU2Slave

# Where the arithmetic differs in order only (a sum over nodes), the tolerance, else exact.
ROUNDING = {("tissue", "egm"): 1e-9, ("tissue", "egm_bipolar"): 1e-9}


def pulse_train(period_ms: int, value: float, length_ms: int = 1) -> Callable[[float], float]:
    return lambda t: value if round(t * 1000) % period_ms < length_ms else 0.0


def window(start: float, stop: float, value: float, rest: float = 0.0):
    return lambda t: value if start <= t + 1e-9 < stop else rest


SCRIPTS = {  # model: [(parameters, inputs: {name: f(t)}, steps, step size)]
    "cell": [
        ({}, {"I_stim": pulse_train(700, 60.0), "stim_width": lambda t: 0.5,
              "V_tissue": lambda t: -85.0 + 20.0 * math.sin(t)}, 2500, 1e-3),
        ({"g_load": 0.0}, {"I_stim": pulse_train(1000, 40.0, 2), "stim_width": lambda t: 0.0},
         1500, 5e-4),
        ({}, {"I_stim": pulse_train(500, 60.0, 2), "stim_width": lambda t: 0.25,
              "V_tissue": lambda t: -85.0}, 4000, 2.5e-4),
    ],
    "lead": [
        ({"fault": 5, "fault_time": 0.5, "noise_rate": 100.0},
         {"V_pace_v": pulse_train(300, 3.5), "egm": lambda t: math.sin(50.0 * t)}, 2000, 1e-3),
        ({"fault": 2, "fault_time": 0.5},
         {"V_pace_v": pulse_train(300, 3.5), "pulse_width_v": lambda t: 0.5 + t}, 1000, 1e-3),
        ({"fault": 1, "fault_time": 0.3}, {"V_pace_v": pulse_train(200, 5.0)}, 600, 1e-3),
        ({}, {"V_pace_v": pulse_train(100, 2.0), "pulse_width_v": lambda t: 1.7}, 800, 2.5e-4),
    ],
    "generator": [
        ({"mode_name": "ddd"}, {"V_sense_a": pulse_train(430, 1.0, 5),
                                "V_sense_v": window(2.0, 2.005, 5.0),
                                "lead_impedance": window(0.0, 3.0, 500.0, 2500.0)},
         5000, 1e-3),
        ({"mode": 2, "hysteresis_rate": 50.0}, {"V_sense_v": pulse_train(1300, 5.0, 5)},
         4000, 7e-4),
        ({"mode": 3}, {"V_sense_a": pulse_train(800, 1.0, 5)}, 3000, 1e-3),
        ({"mode": 1}, {"lead_impedance": window(0.0, 2.0, 500.0, 320.0)}, 3000, 1e-3),
    ],
    "organ": [
        ({}, {"activation": pulse_train(800, 1.0, 300)}, 5000, 1e-3),
        ({"h_max": 0.25}, {"activation": pulse_train(1000, 0.8, 250)}, 3000, 2e-3),
    ],
    "tissue": [
        ({"intrinsic_rate": 35.0, "intrinsic_delay": 0.3, "intrinsic_reset": 1},
         {"V_source": window(1.0, 1.05, 10.0, -85.0), "I_stim": window(2.0, 2.001, 300.0),
          "stim_width": lambda t: 0.5}, 2500, 1e-3),
        ({"nx": 21, "ny": 15, "electrode_x": 10, "electrode_y": 7, "g_coupling": 0.0,
          "intrinsic_rate": 75.0, "intrinsic_delay": 0.1},
         {"I_stim": window(0.5, 0.501, 400.0), "stim_width": lambda t: 2.0}, 1200, 1e-3),
        ({"nx": 17, "ny": 7, "nz": 4, "D_long": 0.0953, "D_trans": 0.01258, "dt": 0.05,
          "electrode_x": 8, "electrode_y": 3, "g_coupling": 0.0, "intrinsic_rate": 40.0,
          "intrinsic_delay": 0.0, "intrinsic_x": 0, "intrinsic_y": 0, "intrinsic_z": 0,
          "intrinsic_cube": 1, "intrinsic_radius": 1.5, "intrinsic_current": 35.7143,
          "V_activation": 0.0},  # a slab, the N-version benchmark's stimulus (tissue.md)
         {"I_stim": window(0.6, 0.601, 400.0), "stim_width": lambda t: 2.0}, 1600, 1e-3),
    ],
}
CLASSES = {"cell": "Cell", "lead": "Lead", "generator": "Generator", "organ": "Organ",
           "tissue": "Tissue"}


def outputs_of(fmu) -> list[str]:
    return [v.name for v in read_model_description(str(fmu)).modelVariables
            if v.causality == "output"]


def differences(model: str, python: dict, c: dict) -> dict[str, tuple[float, float]]:
    """The outputs that disagree beyond ROUNDING (exact elsewhere): name -> (Python, C)."""
    return {name: (python[name], c[name]) for name in python
            if not (python[name] == c[name]
                    or abs(python[name] - c[name]) <= ROUNDING.get((model, name), 0.0))}


@pytest.mark.parametrize(("model", "script"), [(m, i) for m, runs in SCRIPTS.items()
                                               for i in range(len(runs))])
def test_c_edition_equals_the_python_edition_step_by_step(build_model, model, script):
    parameters, inputs, steps, h = SCRIPTS[model][script]
    fmu = build_model(model)
    names = outputs_of(fmu)
    python = getattr(kit.library_script(model), CLASSES[model])(instance_name="python")
    c = kit.CInstance(fmu)
    for name, value in parameters.items():
        setattr(python, name, value)
        setattr(c, name, value)
    if model == "generator":
        python.setup_experiment(0.0, None, None)
    python.exit_initialization_mode()
    c.exit_initialization_mode()
    for k in range(steps):
        t = k * h
        for name, signal in inputs.items():
            setattr(python, name, signal(t))
            setattr(c, name, signal(t))
        python.do_step(t, h)
        c.do_step(t, h)
        wrong = differences(model, {n: getattr(python, n) for n in names},
                            {n: getattr(c, n) for n in names})
        assert not wrong, f"step {k} (t = {t:.4f} s): {wrong}"
    c.free()


@pytest.mark.parametrize("model", sorted(SCRIPTS))
def test_the_two_fmus_agree(build_model, model):
    """The pythonfmu FMU of the Python edition and the C FMU, both through fmpy, first script
    for 300 steps: the Real outputs agree as above."""
    parameters, inputs, _, h = SCRIPTS[model][0]
    c_fmu, python_fmu = build_model(model), build_model(model, python=True)
    runs = []
    for fmu in (python_fmu, c_fmu):
        description = read_model_description(str(fmu))
        kinds = {v.name: v.type for v in description.modelVariables}
        names = [v.name for v in description.modelVariables
                 if v.causality == "output" and v.type == "Real"]
        slave = FMU2Slave(guid=description.guid, unzipDirectory=extract(str(fmu)),
                          modelIdentifier=description.coSimulation.modelIdentifier,
                          instanceName=f"{model}_{len(runs)}")
        refs = {v.name: v.valueReference for v in description.modelVariables}
        slave.instantiate()
        for name, value in parameters.items():
            if kinds[name] == "Real":
                slave.setReal([refs[name]], [value])
            elif kinds[name] == "String":
                slave.setString([refs[name]], [value])
            else:
                slave.setInteger([refs[name]], [value])
        slave.setupExperiment(startTime=0.0)
        slave.enterInitializationMode()
        slave.exitInitializationMode()
        rows = []
        for k in range(300):
            t = k * h
            slave.setReal([refs[n] for n in inputs], [f(t) for f in inputs.values()])
            slave.doStep(t, h)
            rows.append(dict(zip(names, slave.getReal([refs[n] for n in names]), strict=True)))
        slave.terminate()
        slave.freeInstance()
        runs.append(rows)
    for k, (python, c) in enumerate(zip(*runs, strict=True)):
        assert not differences(model, python, c), f"step {k}"


@pytest.mark.parametrize("model", sorted(SCRIPTS))
def test_c_fmu_state_round_trip_and_serialisation(build_model, model):
    """getFMUstate → 200 steps → setFMUstate → the same 200 steps, also through serialised
    bytes; a state of one model is refused by another model's instance."""
    parameters, inputs, _, h = SCRIPTS[model][0]
    fmu = build_model(model)
    c = kit.CInstance(fmu)
    for name, value in parameters.items():
        setattr(c, name, value)
    c.exit_initialization_mode()
    slave = c._slave
    names = outputs_of(fmu)

    def run(k0: int) -> list[list]:
        rows = []
        for k in range(k0, k0 + 200):
            for name, signal in inputs.items():
                setattr(c, name, signal(k * h))
            c.do_step(k * h, h)
            rows.append([getattr(c, n) for n in names])
        return rows

    run(0)
    state = slave.getFMUState()
    serialised = slave.serializeFMUState(state)
    first = run(200)
    slave.setFMUState(state)
    assert run(200) == first
    slave.setFMUState(slave.deSerializeFMUstate(serialised))
    assert run(200) == first
    slave.freeFMUState(state)
    other = kit.CInstance(build_model("cell" if model != "cell" else "lead"))
    other.exit_initialization_mode()
    with pytest.raises(Exception, match="fmi2DeSerializeFMUstate"):
        other._slave.deSerializeFMUstate(serialised)
    c.free()
    other.free()


def scalar_outputs(fmu) -> tuple[list[int], list[int]]:
    """Value references of a C FMU's Real and Integer outputs (the same in both editions)."""
    variables = read_model_description(str(fmu)).modelVariables
    return ([v.valueReference for v in variables if v.causality == "output" and v.type == "Real"],
            [v.valueReference for v in variables
             if v.causality == "output" and v.type == "Integer"])


@pytest.mark.parametrize(("model", "script"), [(m, i) for m, runs in SCRIPTS.items()
                                               for i in range(len(runs))])
def test_fmi3_edition_equals_the_fmi2_edition_step_by_step(build_model, model, script):
    """The same parameters (Int32, String and structural UInt64 ones included) and inputs
    through fmi3Set…: every output read through fmi3Get… equals the FMI 2.0 edition's."""
    parameters, inputs, steps, h = SCRIPTS[model][script]
    reals, integers = scalar_outputs(build_model(model))
    fmi2 = kit.CInstance(build_model(model), "fmi2")
    fmi3 = kit.CInstance3(build_model(model, fmi3=True), "fmi3")
    for name, value in parameters.items():
        setattr(fmi2, name, value)
        setattr(fmi3, name, value)
    fmi2.exit_initialization_mode()
    fmi3.exit_initialization_mode()
    for k in range(steps + 1):
        two = fmi2._slave.getReal(reals) + fmi2._slave.getInteger(integers)
        three = fmi3._slave.getFloat64(reals) + fmi3._slave.getInt32(integers)
        assert two == three, f"after step {k}"
        if k == steps:
            break
        t = k * h
        for name, signal in inputs.items():
            setattr(fmi2, name, signal(t))
            setattr(fmi3, name, signal(t))
        fmi2.do_step(t, h)
        fmi3.do_step(t, h)
    fmi2.free()
    fmi3.free()


@pytest.mark.parametrize("script", [1, 2])  # a 21 x 15 sheet, a 17 x 7 x 4 slab
def test_fmi3_tissue_map_is_the_python_editions_potential_map(build_model, script):
    """The array output V (shape nz, ny, nx) equals the Python edition's potential map bit
    for bit whenever the sheet is awake (asleep, the map decays as V_electrode does: its
    electrode node equals V_electrode at every step)."""
    parameters, inputs, steps, h = SCRIPTS["tissue"][script]
    python = kit.library_script("tissue").Tissue(instance_name="python")
    c = kit.CInstance3(build_model("tissue", fmi3=True))
    for name, value in parameters.items():
        setattr(python, name, value)
        setattr(c, name, value)
    assert c.shape("V") == (c.nz, c.ny, c.nx) == (parameters.get("nz", 1), parameters["ny"],
                                                  parameters["nx"])
    assert np.all(c.V == -85.0)  # before initialisation: the start value
    python.exit_initialization_mode()
    c.exit_initialization_mode()
    awake = 0
    electrode = (0, parameters["electrode_y"], parameters["electrode_x"])
    for k in range(steps):
        for name, signal in inputs.items():
            setattr(python, name, signal(k * h))
            setattr(c, name, signal(k * h))
        python.do_step(k * h, h)
        c.do_step(k * h, h)
        potentials = c.V
        assert potentials[electrode] == c.V_electrode, f"step {k}"
        if not python._quiet:  # potential_map() would wake it (and change its rounding)
            awake += 1
            assert np.array_equal(potentials.reshape(python.potential_map().shape),
                                  python.potential_map()), f"step {k}"
    assert awake > 100 and np.ptp(potentials) > 0.0
    c.free()


@pytest.mark.parametrize("model", sorted(SCRIPTS))
def test_fmi3_state_round_trip_and_serialisation(build_model, model):
    """fmi3GetFMUState → 200 steps → fmi3SetFMUState → the same 200 steps, also through
    serialised bytes; the FMI 2.0 edition's serialised state is refused by name."""
    parameters, inputs, _, h = SCRIPTS[model][0]
    reals, integers = scalar_outputs(build_model(model))
    c = kit.CInstance3(build_model(model, fmi3=True))
    for name, value in parameters.items():
        setattr(c, name, value)
    c.exit_initialization_mode()
    slave = c._slave

    def run(k0: int) -> list[list]:
        rows = []
        for k in range(k0, k0 + 200):
            for name, signal in inputs.items():
                setattr(c, name, signal(k * h))
            c.do_step(k * h, h)
            rows.append(slave.getFloat64(reals) + slave.getInt32(integers))
        return rows

    run(0)
    state = slave.getFMUState()
    serialised = slave.serializeFMUState(state)
    first = run(200)
    slave.setFMUState(state)
    assert run(200) == first
    slave.setFMUState(slave.deserializeFMUState(serialised))
    assert run(200) == first
    slave.freeFMUState(state)
    fmi2 = kit.CInstance(build_model(model))
    fmi2.exit_initialization_mode()
    fmi2_state = fmi2._slave.serializeFMUState(fmi2._slave.getFMUState())
    with pytest.raises(Exception, match="fmi3DeserializeFMUState"):
        slave.deserializeFMUState(fmi2_state)
    assert f"not an FMI 3.0 FMU state of {CLASSES[model]}" in c._log[-1]
    fmi2.free()
    c.free()
