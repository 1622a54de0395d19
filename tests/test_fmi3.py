"""FMI 3.0 co-simulation import: every variable type, arrays (structural parameters,
array-valued connections, HDF5 datasets with extra dimensions), FMU state, isolation.

The FMU is tests/fixtures/fmi3/arrays.c, written by hand and compiled here with gcc."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from cosim.coupling.graph import CouplingGraph
from cosim.describe import fmu_text
from cosim.errors import ScenarioError, SimulationError
from cosim.fmi.fmi3 import Instance3
from cosim.fmi.fmu import read_fmu
from cosim.fmi.isolation import Isolation
from cosim.master.description import Settings
from cosim.master.execution import Execution
from cosim.results.reader import open_results
from cosim.results.recorder import Recorder, create_results_file
from cosim.running.pipeline import run_scenario


@pytest.fixture(scope="module")
def arrays(c_test_fmu):
    return c_test_fmu("arrays")


def initialised(fmu, name="a", **parameters) -> Instance3:
    instance = Instance3(read_fmu(fmu), name)
    instance.instantiate()
    if parameters:
        instance.set(parameters)
    instance.setup_experiment(0.0, 1.0)
    instance.enter_initialization_mode()
    instance.exit_initialization_mode()
    return instance


def run(graph, record, tmp_path, stop=1.0, step=0.25, algorithm="jacobi", name="r.h5"):
    path = tmp_path / name
    with create_results_file(path, {}) as file:
        Execution(graph, Settings(0.0, stop, step, algorithm, record=record)).run(
            [Recorder(file)])
    return open_results(path)


def test_read_fmu_reads_fmi3_types_arrays_and_display_units(arrays):
    fmu = read_fmu(arrays)
    assert fmu.fmi3 and fmu.fmi_version == "3.0"
    assert fmu.interfaces == {"co-simulation": "arrays3"}
    types = {v.name: v.type for v in fmu.variables.values()}
    assert {types[n] for n in ("i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64")} == {
        "Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64"}
    assert (types["f32_in"], types["label"], types["blob"], types["mode"]) == (
        "Float32", "String", "Binary", "Enumeration")
    assert fmu.variables["y"].dimensions == ("n",)
    assert fmu.variables["grid"].dimensions == (2, "n")
    assert fmu.shape("grid") == (2, 3) and fmu.shape("grid", {"n": 5}) == (2, 5)
    assert (fmu.variables["y"].unit, fmu.variables["y"].display_unit) == ("m", "mm")
    assert fmu.dependencies["y"] == ("u",) and fmu.dependencies["count"] == ()
    text = fmu_text(arrays)
    assert "(FMI 3.0 co-simulation)" in text
    assert "y                        Float64[n] [m, shown in mm]" in text
    assert "structuralParameters:" in text and "Binary   = 0a0b0c" in text


def test_every_type_is_set_and_read_through_fmi3_calls(arrays):
    instance = initialised(arrays, i8=-100, u8=255, i16=-32768, u16=65535, i32=-7,
                           u32=4294967295, i64=-(2**40), u64=2**41, label="hello world",
                           blob=bytes([1, 2, 250]), gain=0.5, f32_in=1.25, flag=True, mode=2)
    try:
        got = instance.get(["ints", "label_length", "blob_sum", "f32_out", "not_flag",
                            "mode_out", "label", "blob", "y", "grid", "n"])
        assert got["ints"] == -100 + 255 - 32768 + 65535 - 7 + 4294967295 - 2**40 + 2**41
        assert (got["label_length"], got["blob_sum"], got["label"]) == (11, 253, "hello world")
        assert got["blob"] == bytes([1, 2, 250])
        assert (got["f32_out"], got["not_flag"], got["mode_out"], got["n"]) == (
            2.5, False, 20, 3)
        np.testing.assert_array_equal(got["y"], [0.5, 1.0, 1.5])
        np.testing.assert_array_equal(got["grid"], [[1, 2, 3], [0.5, 1.5, 2.5]])
    finally:
        instance.close()


def test_structural_parameter_resizes_arrays_in_configuration_mode(arrays):
    instance = initialised(arrays, n=5, u=[1.0, 2.0, 3.0, 4.0, 5.0])
    try:
        assert instance.get(["y"])["y"].shape == (5,)
        np.testing.assert_array_equal(instance.get(["grid"])["grid"][0], [1, 2, 3, 4, 5])
    finally:
        instance.close()


def test_fmi3_error_names_the_call_and_quotes_the_fmus_log(arrays):
    with pytest.raises(SimulationError) as caught:
        initialised(arrays, n=9)
    error = caught.value
    assert error.function == "fmi3ExitInitializationMode"
    assert any("n = 9 is out of range" in line for line in error.log)


def test_array_and_typed_connections_run_and_record_extra_dimensions(arrays, tmp_path):
    graph = CouplingGraph()
    graph.add_instance("a", arrays, parameters={"gain": 3.0, "n": 4, "u": [1.0, 2, 3, 4],
                                                "label": "xy"})
    graph.add_instance("b", arrays, parameters={"n": 4})
    graph.connect("a.y", "b.u")  # Float64[4] -> Float64[4]
    graph.connect("a.f32_out", "b.f32_in")  # Float32
    graph.connect("a.not_flag", "b.flag")  # Boolean
    graph.connect("a.label_length", "b.mode")  # Int32 2 -> Enumeration "on"
    graph.validate()
    with run(graph, {"a": ["grid", "count"], "b": ["y", "f32_out", "not_flag", "mode_out",
                                                    "total"]}, tmp_path,
             algorithm="gauss-seidel") as results:
        assert results["a.grid"].shape == (5, 2, 4)  # time first, then the array's dimensions
        np.testing.assert_array_equal(results["a.grid"][-1], [[1, 2, 3, 4], [.5, 1.5, 2.5, 3.5]])
        np.testing.assert_array_equal(results["b.y"][-1], [6.0, 12.0, 18.0, 24.0])
        assert results["b.total"][-1] == 30.0
        assert (results["b.f32_out"][-1], results["b.not_flag"][-1]) == (2.0, 0.0)  # !!false
        assert results["b.mode_out"][-1] == 20
        np.testing.assert_array_equal(results["a.count"], [0, 1, 2, 3, 4])
        dataset = results.file["instances/a/grid"]
        assert dataset.maxshape == (None, 2, 4) and dataset.attrs["type"] == "Float64"
        assert results.file["instances/b/y"].attrs["display_unit"] == "mm"


def test_label_length_three_reaches_the_enumeration_and_fails_with_its_message(arrays,
                                                                               tmp_path):
    graph = CouplingGraph()
    graph.add_instance("a", arrays)
    graph.add_instance("b", arrays)
    graph.connect("a.label_length", "b.mode")  # "abc": 3, not an item of Mode
    with pytest.raises(SimulationError, match="fmi3ExitInitializationMode failed") as caught:
        run(graph, {"b": ["mode_out"]}, tmp_path)
    assert any("mode must be 1 or 2" in line for line in caught.value.log)


def test_shape_mismatch_is_reported_at_the_connection_line(arrays, tmp_path):
    (tmp_path / "arrays.fmu").write_bytes(arrays.read_bytes())
    scenario = tmp_path / "s.yaml"
    scenario.write_text(textwrap.dedent("""\
        version: 1
        fmus: {arrays: arrays.fmu}
        instances:
          a: {fmu: arrays, parameters: {n: 5}}
          b: {fmu: arrays, parameters: {u: [1.0, 2.0]}}
        connections:
          - a.y -> b.u
          - a.grid -> b.f32_in
        simulation: {stop: 1, step: 0.5}
        """))
    with pytest.raises(ScenarioError) as caught:
        run_scenario(scenario)
    text = str(caught.value)
    assert "s.yaml:5" in text and "'b.u' is an array of shape [3]" in text
    assert "s.yaml:7" in text and "shape mismatch: a.y is [5], b.u is [3]" in text
    assert "s.yaml:8" in text and "a.grid is [2, 5], b.f32_in is a scalar" in text


def test_fmi3_state_get_set_restores_the_step_count(arrays):
    instance = initialised(arrays)
    try:
        instance.do_step(0.0, 0.1)
        state = instance.get_state()
        instance.do_step(0.1, 0.1)
        assert instance.get(["count"])["count"] == 2
        instance.set_state(state)
        assert instance.get(["count"])["count"] == 1
        instance.free_state(state)
    finally:
        instance.close()


def test_isolated_fmi3_instance_with_arrays_equals_in_process(arrays, tmp_path):
    results = []
    for mode in ("none", "process"):
        graph = CouplingGraph()
        graph.add_instance("a", arrays, parameters={"n": 6, "u": [1.0] * 6},
                           isolation=Isolation(mode))
        graph.add_instance("b", arrays, parameters={"n": 6, "gain": -1.0},
                           isolation=Isolation(mode))
        graph.connect("a.y", "b.u")
        graph.connect("a.not_flag", "b.flag")
        with run(graph, {"b": ["y", "grid", "not_flag"]}, tmp_path, name=f"{mode}.h5") as r:
            results.append({v: r[v] for v in r.variables})
    for name, values in results[0].items():
        np.testing.assert_array_equal(values, results[1][name])
    np.testing.assert_array_equal(results[1]["b.y"][-1], [-2.0] * 6)
