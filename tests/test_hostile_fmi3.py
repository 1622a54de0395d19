"""The hostile-input checks (issue 14 §6) on FMI 3.0 FMUs and on every interface of an FMU.

The FMUs are the hand-written C fixtures in tests/fixtures/fmi3 (``arrays``: every FMI 3 type
and arrays; ``ball2``/``ball3``: FMI 2 and FMI 3 with model exchange and co-simulation),
rewritten at test time where a test needs a hostile variant.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import fmu_kit as kit  # tests/fmu_kit.py
import pytest
from fmpy import platform_tuple

from cosim import cli
from cosim.coupling.graph import CouplingGraph
from cosim.errors import FMUError, ScenarioError, SimulationError
from cosim.fmi.fmi3 import Instance3
from cosim.fmi.fmu import CO_SIMULATION, MODEL_EXCHANGE, read_fmu
from cosim.fmi.instances import new_instance
from cosim.scenario.scenario import build, load_scenario


@pytest.fixture(scope="module")
def arrays(c_test_fmu) -> Path:
    return c_test_fmu("arrays")


def refused(path: Path, capsys) -> str:
    """The one message `cosim info` prints for ``path`` (exit 1, no traceback)."""
    with pytest.raises(FMUError) as caught:
        read_fmu(path)
    assert len(caught.value.problems) == 1
    assert cli.main(["info", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err.startswith(f"error: {path}: ") and captured.err.count("error:") == 1
    return captured.err


@pytest.mark.parametrize("name", ["ball2", "ball3"])  # FMI 2 and FMI 3
def test_the_model_exchange_model_identifier_must_be_a_c_identifier_too(name, c_test_fmu,
                                                                         tmp_path, capsys):
    """Every interface names a binary to load; the co-simulation one was the only one checked."""
    path = kit.rewrite(c_test_fmu(name), tmp_path / f"{name}.fmu", lambda xml: xml.replace(
        f'<ModelExchange modelIdentifier="{name}"', '<ModelExchange modelIdentifier="../evil"'))
    err = refused(path, capsys)
    assert "modelIdentifier '../evil' is not a C identifier" in err


def test_fmi3_variables_of_different_types_may_not_share_a_value_reference(arrays, tmp_path,
                                                                           capsys):
    """FMI 3.0: the valueReference is unique for all variables of an FMU (one space for every
    type): an Int8 and a UInt8 sharing 9 are refused (by FMI 2's per-type rule they would not
    even meet)."""
    path = kit.rewrite(arrays, tmp_path / "shared.fmu", lambda xml: xml.replace(
        'name="u8" valueReference="10"', 'name="u8" valueReference="9"'))
    err = refused(path, capsys)
    assert 'Variable "u8"' in err and 'variable "i8"' in err and "same value reference" in err


def test_an_fmi3_alias_element_of_a_started_variable_is_accepted(arrays, tmp_path):
    """An <Alias> shares its variable's reference and start value: the standard's alias, not
    two start values for one value (the FMI 2 rule would refuse it)."""
    path = kit.rewrite(arrays, tmp_path / "alias.fmu", lambda xml: xml.replace(
        'name="gain" valueReference="2" causality="parameter" variability="fixed" start="2"/>',
        'name="gain" valueReference="2" causality="parameter" variability="fixed" start="2">'
        '<Alias name="amplification"/></Float64>'))
    fmu = read_fmu(path)
    assert fmu.variables["amplification"].value_reference == 2
    instance = Instance3(fmu, "aliased")
    instance.instantiate()
    instance.set({"amplification": 5.0})
    assert instance.get(["gain", "amplification"]) == {"gain": 5.0, "amplification": 5.0}
    instance.close()


def test_an_fmi3_binary_must_be_named_after_its_model_identifier(arrays, tmp_path):
    path = kit.rewrite(arrays, tmp_path / "misnamed.fmu", drop=lambda n: n.endswith(".so"))
    import zipfile

    with zipfile.ZipFile(arrays) as source, zipfile.ZipFile(path, "a") as target:
        target.writestr(f"binaries/{platform_tuple}/other.so",
                        source.read(f"binaries/{platform_tuple}/arrays3.so"))
    with pytest.raises(FMUError) as caught:
        Instance3(read_fmu(path), "a").instantiate()
    (problem,) = caught.value.problems
    assert problem.key == "a"
    assert problem.message == f"the FMU has no binaries/{platform_tuple}/arrays3.so"


def test_each_interface_needs_the_binary_its_model_identifier_names(c_test_fmu, tmp_path):
    """ball3 declaring 'ball3_me' for model exchange ships no ball3_me.so: a model exchange
    instance is refused before loading anything, a co-simulation one runs."""
    path = kit.rewrite(c_test_fmu("ball3"), tmp_path / "ball3.fmu", lambda xml: xml.replace(
        '<ModelExchange modelIdentifier="ball3"', '<ModelExchange modelIdentifier="ball3_me"'))
    fmu = read_fmu(path)
    with pytest.raises(FMUError) as caught:
        new_instance(fmu, "me", MODEL_EXCHANGE).instantiate()
    assert caught.value.problems[0].message == (
        f"the FMU has no binaries/{platform_tuple}/ball3_me.so")
    instance = new_instance(fmu, "cs", CO_SIMULATION)
    instance.instantiate()
    instance.close()


def test_what_an_fmi3_fmu_logs_reaches_its_message_log(arrays):
    """FMI 3 log messages (fmi3LogMessageCallback) are kept with their time and category, as
    FMI 2 ones are: the results file's log/instances/<instance> is written from this log."""
    instance = Instance3(read_fmu(arrays), "a")
    instance.instantiate()
    instance.setup_experiment(0.0, 1.0)
    instance.enter_initialization_mode()
    instance.exit_initialization_mode()
    with pytest.raises(SimulationError):
        instance.set({"total": 1.0})  # an output: the FMU refuses and says why
    assert instance.messages.kept() == [
        (0.0, "error", "logStatusError", "fmi3SetFloat64: value reference 5 cannot be set"),
        (0.0, "error", "fmi3SetFloat64", "fmi3SetFloat64 failed (error)")]
    instance.close()


@pytest.mark.parametrize("parameters, message", [
    ({"u8": 256}, "'a.u8' = 256 does not fit the FMU's UInt8"),
    ({"i8": -129}, "'a.i8' = -129 does not fit the FMU's Int8"),
    ({"u64": 2**64}, "'a.u64' = 18446744073709551616 does not fit the FMU's UInt64"),
    ({"i64": -2**63 - 1}, "'a.i64' = -9223372036854775809 does not fit the FMU's Int64"),
    ({"gain": float("nan")}, "'a.gain' must be a finite number, got nan"),
    ({"f32_in": float("inf")}, "'a.f32_in' must be a finite number, got inf"),
    ({"u": [1.0, float("inf"), 3.0]}, "'a.u' must be a finite number, got inf"),
    ({"mode": 3}, "'a.mode' = 3 is not a value of its enumeration"),
])
def test_fmi3_values_are_checked_against_their_own_types(arrays, parameters, message):
    graph = CouplingGraph()
    graph.add_instance("a", arrays, parameters=parameters)
    assert [p.message for p in graph.check()] == [message]


def test_fmi3_values_at_the_ends_of_their_types_are_accepted(arrays):
    graph = CouplingGraph()
    graph.add_instance("a", arrays, parameters={
        "u8": 255, "i8": -128, "u64": 2**64 - 1, "i64": -2**63, "mode": 2, "u": [1, 2, 3],
        "u32": 2**32 - 1})  # beyond FMI 2's 32-bit Integer, inside UInt32
    assert graph.check() == []


@pytest.mark.parametrize("section, key, message", [
    ("events:\n  - {time: 0.5, set: {a.u: [1.0, 2.0]}}\n", "events.0",
     "'a.u' is an array of shape [3], got [1.0, 2.0]"),
    ("events:\n  - {time: 0.5, set: {a.f32_in: .inf}}\n", "events.0",
     "'a.f32_in' must be a finite number, got inf"),
    ("events:\n  - {time: 0.5, set: {a.mode: 3}}\n", "events.0",
     "'a.mode' = 3 is not a value of its enumeration"),
    ("cohort:\n  method: grid\n  parameters:\n    a.u: {values: [1, 2]}\n",
     "cohort.parameters.a.u", "the cohort sets 'a.u', a input Float64 that cannot take a drawn "
                              "number"),
])
def test_scenario_events_and_cohorts_on_fmi3_variables_are_checked(arrays, tmp_path, section,
                                                                    key, message):
    (tmp_path / "arrays.fmu").write_bytes(arrays.read_bytes())
    scenario = tmp_path / "s.yaml"
    scenario.write_text(textwrap.dedent("""\
        version: 1
        fmus: {arrays: arrays.fmu}
        instances:
          a: {fmu: arrays}
        simulation: {stop: 1, step: 0.5}
        """) + section)
    with pytest.raises(ScenarioError) as caught:
        build(load_scenario(scenario))
    assert [(p.key, p.message) for p in caught.value.problems] == [(key, message)]
