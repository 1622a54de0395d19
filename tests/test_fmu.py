"""The FMU layer (cosim.fmi.fmu): reading FMU files, running named instances, failing cleanly."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import fmpy
import fmu_kit as kit  # tests/fmu_kit.py: FMUs and broken archives for tests
import numpy as np
import pytest
from fmpy.fmi1 import FMICallException
from fmpy.validation import validate_fmu

from cosim import cli
from cosim.errors import FMUError, SimulationError
from cosim.fmi.fmu import Instance, read_fmu


@pytest.fixture(scope="module")
def c_fmu(tmp_path_factory) -> Path:
    return kit.build_c_oscillator(tmp_path_factory.mktemp("fmu_layer"))


def started(fmu_path: Path, name: str, **parameters: float) -> Instance:
    """An instance through instantiate → initialisation with ``parameters`` set."""
    instance = Instance(read_fmu(fmu_path), name)
    instance.instantiate()
    instance.setup_experiment(0.0)
    instance.enter_initialization_mode()
    if parameters:
        instance.set(parameters)
    instance.exit_initialization_mode()
    return instance


def free_motion(p: dict[str, float], t: float) -> float:
    """Undamped x(t) with x_other = 0: x0 cos(w t) + v0/w sin(w t)."""
    w = np.sqrt((p["k"] + p["k_c"]) / p["m"])
    return p["x0"] * np.cos(w * t) + p["v0"] / w * np.sin(w * t)


def test_read_fmu_declares_the_interface(c_fmu):
    fmu = read_fmu(c_fmu)
    assert (fmu.model_name, fmu.model_identifier, fmu.fmi_version) == (
        "COscillator", "c_oscillator", "2.0")
    assert fmu.platforms == ("linux64",) and fmu.can_get_and_set_state
    assert fmu.dependencies == {"x": (), "v": ()}
    x = fmu.variables["x_other"]
    assert (x.causality, x.unit, x.value_reference, x.type) == ("input", "m", 6, "Real")
    assert fmu.unit_of("k").exponents == (1, 0, -2, 0, 0, 0, 0, 0)  # N/m = kg s^-2
    assert len(fmu.sha256) == 64


def test_several_instances_have_their_own_names_and_parameters(c_fmu):
    params = {"a": {"m": 1.0, "k": 2.0, "k_c": 0.0, "x0": 1.0, "v0": 0.0},
              "b": {"m": 3.0, "k": 0.5, "k_c": 0.0, "x0": -0.5, "v0": 0.2},
              "c": {"m": 0.2, "k": 4.0, "k_c": 0.0, "x0": 0.1, "v0": -1.0}}
    instances = [started(c_fmu, name, **p) for name, p in params.items()]
    try:
        for n in range(20):
            for instance in instances:
                instance.do_step(0.05 * n, 0.05)
        for instance in instances:
            p = params[instance.name]
            values = instance.get(["x", "m", "x0"])
            assert values["m"] == p["m"] and values["x0"] == p["x0"]
            assert values["x"] == pytest.approx(free_motion(p, 1.0), abs=1e-12)
            assert instance.time == pytest.approx(1.0)
    finally:
        for instance in instances:
            instance.close()
    assert [i.phase for i in instances] == ["freed"] * 3


def test_inputs_and_outputs_through_bound_buffers(c_fmu):
    instance = started(c_fmu, "bound", c=0.0, k=1.0, k_c=1.0, x0=0.0)
    out = np.zeros(2)
    inputs = instance.bind(["x_other"], ["x", "v"], out)
    inputs[0] = 2.0  # equilibrium x = k_c x_other / (k + k_c) = 1
    instance.set_inputs()
    assert instance.get(["x_other"]) == {"x_other": 2.0}
    instance.do_step(0.0, np.pi / np.sqrt(2.0))  # half a period: x goes 0 -> 2
    instance.get_outputs()
    np.testing.assert_allclose(out, [2.0, 0.0], atol=1e-12)
    instance.close()


def test_error_at_initialisation_names_instance_function_and_log(c_fmu):
    instance = Instance(read_fmu(c_fmu), "massless")
    instance.instantiate()
    instance.setup_experiment(0.0)
    instance.enter_initialization_mode()
    instance.set({"m": 0.0})
    with pytest.raises(SimulationError) as caught:
        instance.exit_initialization_mode()
    error = caught.value
    assert (error.instance, error.function) == ("massless", "fmi2ExitInitializationMode")
    text = str(error)
    assert "instance 'massless'" in text and "fmi2ExitInitializationMode failed (error)" in text
    assert "invalid parameter m = 0 kg: the mass must be > 0" in text
    instance.close()  # terminate refused by the FMU in its error state; free still happens
    assert instance.phase == "freed"
    instance.close()  # twice is harmless
    again = started(c_fmu, "massless")  # the process (and the name) can be used again
    again.do_step(0.0, 0.1)
    assert again.get(["x"])["x"] == pytest.approx(np.cos(np.sqrt(1.5) * 0.1), abs=1e-12)
    again.close()


def test_fmpy_still_prints_its_fmus_messages_after_cosim_ran_an_instance(c_fmu, capsys):
    """cosim's log-formatting proxy is its own, so fmpy's default logger keeps printing.

    fmpy's native proxy (the FMI logger is variadic) forwards to one process-wide Python
    logger that each ``addLoggerProxy`` call replaces; cosim installed its logger there, and
    from then on every FMU fmpy ran in the process logged into cosim's router (dropped), so
    a test reading fmpy's output passed or failed with the order of the tests before it.
    """
    started(c_fmu, "installs_the_logger").close()
    with pytest.raises(FMICallException, match="fmi2ExitInitializationMode"):
        fmpy.simulate_fmu(str(c_fmu), stop_time=0.1, start_values={"m": 0.0})
    assert "[ERROR] invalid parameter m = 0 kg: the mass must be > 0" in capsys.readouterr().out


def test_an_fmpy_logger_installed_later_does_not_take_cosim_messages(c_fmu):
    """``fmpy.simulate_fmu(logger=...)`` after cosim started no longer receives (and, once
    collected, crashes on) the messages of cosim's instances (in a child process: it changes
    fmpy's process-wide logger)."""
    script = """
import sys
import fmpy
from cosim.errors import SimulationError
from cosim.fmi.fmu import Instance, read_fmu
fmu = read_fmu(sys.argv[1])
first = Instance(fmu, "first")
first.instantiate()
first.free()
taken = []
fmpy.simulate_fmu(sys.argv[1], stop_time=0.01, logger=lambda *args: taken.append(args[-1]),
                  start_values={"m": 1.0})
massless = Instance(fmu, "massless")
massless.instantiate()
massless.setup_experiment(0.0)
massless.enter_initialization_mode()
massless.set({"m": 0.0})
try:
    massless.exit_initialization_mode()
except SimulationError as error:
    print("cosim:", str(error).replace(chr(10), " "))
print("fmpy logger:", taken)
"""
    done = subprocess.run([sys.executable, "-c", script, str(c_fmu)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    cosim_line, fmpy_line = done.stdout.splitlines()[-2:]
    assert "invalid parameter m = 0 kg: the mass must be > 0" in cosim_line
    assert "mass" not in fmpy_line


def test_unknown_variable_and_wrong_phase_are_simulation_errors(c_fmu):
    instance = Instance(read_fmu(c_fmu), "careless")
    with pytest.raises(SimulationError, match="exit_initialization_mode.*phase 'created'"):
        instance.exit_initialization_mode()
    instance.instantiate()
    with pytest.raises(SimulationError, match="has no variable 'mass'"):
        instance.set({"mass": 1.0})
    instance.close()
    assert instance.phase == "freed"


@pytest.mark.parametrize("which", ["c", "pythonfmu"])
def test_fmu_state_roundtrip(c_fmu, build_model, which):
    path = c_fmu if which == "c" else build_model("oscillator")
    instance = started(path, f"state_{which}", c=0.2)
    for n in range(10):
        instance.do_step(0.05 * n, 0.05)
    instance.set({"x_other": 0.8})
    saved = instance.get_state()
    instance.do_step(0.5, 0.05)
    first = instance.get(["x", "v"])
    instance.set({"x_other": -3.0})
    instance.do_step(0.55, 0.3)
    assert instance.get(["x", "v"]) != first
    instance.set_state(saved)
    assert instance.get(["x_other"])["x_other"] == 0.8
    instance.do_step(0.5, 0.05)
    assert instance.get(["x", "v"]) == first
    instance.free_state(saved)
    instance.close()


def test_pythonfmu_state_is_released_at_python_exit_not_after(c_fmu, build_model):
    """pythonfmu binaries release their state twice when still loaded at process exit (a write
    into freed memory: now and then ``corrupted double-linked list`` at exit); cosim.fmi.fmu makes
    the first release happen at Python exit, so the others find nothing."""
    from cosim.fmi import fmu as fmu_layer

    python_fmu = started(build_model("oscillator"), "exit_py")
    c_instance = started(c_fmu, "exit_c")
    binaries = list(fmu_layer._PYTHONFMU_RELEASES)
    assert any(Path(b).name == "Oscillator.so" for b in binaries)
    assert not any("c_oscillator" in Path(b).name for b in binaries), "C FMUs left alone"
    fmu_layer._release_pythonfmu_states()  # what runs at exit; a live instance keeps its state
    python_fmu.do_step(0.0, 0.1)
    python_fmu.close()
    again = started(build_model("oscillator"), "exit_py_again")  # a fresh state is made
    again.do_step(0.0, 0.1)
    again.close()
    c_instance.close()


# -- broken FMU files ---------------------------------------------------------------------------
def broken(kind: str, c_fmu: Path, folder: Path) -> Path:
    path = folder / f"{kind}.fmu"
    if kind == "random-bytes":
        path.write_bytes(np.random.default_rng(1).bytes(5000))
    elif kind == "no-model-description":
        kit.rewrite(c_fmu, path, drop=lambda name: name == "modelDescription.xml")
    elif kind == "truncated":
        data = c_fmu.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "schema":  # an attribute value the FMI 2.0 schema does not allow
        kit.rewrite(c_fmu, path, lambda xml: xml.replace('causality="input"',
                                                         'causality="sideways"'))
    return path


BROKEN = {
    "random-bytes": "not a readable FMU (zip archive)",
    "truncated": "not a readable FMU (zip archive)",
    "no-model-description": "the archive has no modelDescription.xml",
    "schema": "invalid modelDescription.xml",
}


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_fmu_gives_a_clear_fmu_error(kind, c_fmu, tmp_path, capsys):
    path = broken(kind, c_fmu, tmp_path)
    with pytest.raises(FMUError) as caught:
        read_fmu(path)
    error = caught.value
    assert error.__suppress_context__ or error.__context__ is None  # no chained traceback
    assert len(error.problems) == 1
    assert str(error).startswith(f"{path}: {BROKEN[kind]}")
    assert "\n    -> " in str(error)  # with a hint on what to do
    assert cli.main(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: {BROKEN[kind]}") and "Traceback" not in err


def test_missing_fmu_file(tmp_path):
    with pytest.raises(FMUError, match="no such FMU file"):
        read_fmu(tmp_path / "absent.fmu")


def test_fmu_without_a_binary_for_this_platform(c_fmu, tmp_path):
    path = kit.rewrite(c_fmu, tmp_path / "source_only.fmu",
                       drop=lambda name: name.startswith("binaries/"))
    fmu = read_fmu(path)  # the description is fine
    assert fmu.platforms == ()
    instance = Instance(fmu, "nobinary")
    with pytest.raises(FMUError, match=r"no binary for this platform \(linux64\); it has: "
                                       r"none \(source code only\?\)"):
        instance.instantiate()
    instance.close()
    assert instance.phase == "freed"


def test_fmu_with_a_broken_binary(c_fmu, tmp_path):

    path = tmp_path / "garbage_binary.fmu"
    with zipfile.ZipFile(c_fmu) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith(".so"):
                data = os.urandom(2048)
            target.writestr(info.filename, data)
    instance = Instance(read_fmu(path), "garbage")
    with pytest.raises(FMUError, match="cannot load the FMU's binary"):
        instance.instantiate()
    instance.close()


def test_c_fmu_passes_fmpy_validate(c_fmu):
    assert validate_fmu(str(c_fmu)) == []


def test_an_fmu_held_once_runs_where_its_file_cannot_be_read(c_fmu, tmp_path):
    """``FMU.hold`` reads the file's bytes once (under MPI on rank 0); pickled to another
    process (a rank) the FMU extracts from those bytes, without its file (here: deleted), and
    without the extraction folder of the process that read it."""
    import pickle

    path = tmp_path / "held.fmu"
    path.write_bytes(c_fmu.read_bytes())
    fmu = read_fmu(path)
    fmu.hold()
    fmu.unzip_dir()  # this process's folder: not handed on
    path.unlink()
    elsewhere = pickle.loads(pickle.dumps(fmu))
    assert elsewhere.unzip_dir() != fmu.unzip_dir()
    instance = Instance(elsewhere, "a")
    try:
        instance.instantiate()
    finally:
        instance.close()


def test_an_fmu_changed_before_it_is_held_is_refused(c_fmu, tmp_path):
    path = tmp_path / "swapped.fmu"
    path.write_bytes(c_fmu.read_bytes())
    fmu = read_fmu(path)
    path.write_bytes(c_fmu.read_bytes() + b"\0")
    with pytest.raises(FMUError, match="the FMU file changed after it was checked"):
        fmu.hold()
