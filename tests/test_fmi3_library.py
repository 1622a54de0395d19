"""The FMI 3.0 editions of the C model library (fmus/common/fmi3_layer.c over the same model
files): archives that validate and run in fmpy and in a C host with no Python, rebuild from
their sources, refuse misuse by name, and run the flagship scenario exactly as the FMI 2.0
editions do, alone or mixed with them, the tissue's potential map recorded as an array."""

from __future__ import annotations

import ctypes
import subprocess
import zipfile
from pathlib import Path

import fmpy
import fmu_kit as kit  # tests/fmu_kit.py
import numpy as np
import pytest
from fmpy.model_description import read_build_description
from fmpy.validation import validate_fmu

from cosim.errors import SimulationError
from cosim.fmi.fmi3 import Instance3
from cosim.fmi.fmu import read_fmu
from cosim.library.build_c import build_c_fmu
from cosim.results.reader import open_results
from cosim.running.pipeline import run_scenario

MODELS = ("cell", "generator", "lead", "organ", "tissue")
ROOT = Path(__file__).resolve().parent.parent
HOST3 = ROOT / "tests" / "fixtures" / "c_host" / "host3.c"
FLAGSHIP = ROOT / "scenarios" / "vvi_complete_av_block.yaml"


def unzipped(fmu: Path, where: Path) -> Path:
    with zipfile.ZipFile(fmu) as archive:
        archive.extractall(where)
    return where


@pytest.mark.parametrize("model", MODELS)
def test_fmpy_validate_finds_no_problem(build_model, model):
    assert validate_fmu(str(build_model(model, fmi3=True))) == []


@pytest.mark.parametrize("model", MODELS)
def test_model_description_declares_what_fmi3_needs(build_model, model):
    """FMI 3.0, co-simulation with FMU state and serialisation; an independent time variable;
    the FMI 2.0 edition's variables under the same value references with units and
    descriptions; every output in ModelStructure (none fed through) and an initial unknown;
    the DefaultExperiment; the sources listed in buildDescription.xml."""
    fmu = build_model(model, fmi3=True)
    md = fmpy.read_model_description(str(fmu), validate=True)
    md2 = fmpy.read_model_description(str(build_model(model)))
    assert md.fmiVersion == "3.0" and md.modelExchange is None
    assert md.coSimulation.canGetAndSetFMUstate and md.coSimulation.canSerializeFMUstate
    assert not md.coSimulation.hasEventMode
    (time,) = [v for v in md.modelVariables if v.causality == "independent"]
    assert (time.name, time.type, time.unit) == ("time", "Float64", "s")
    assert md.defaultExperiment.stepSize == md2.defaultExperiment.stepSize == "0.001"
    assert all(v.description for v in md.modelVariables)
    types = {"Real": {"Float64"}, "Integer": {"Int32", "UInt64"}, "String": {"String"}}
    by_name = {v.name: v for v in md.modelVariables}
    for v2 in md2.modelVariables:
        v3 = by_name[v2.name]
        assert v3.valueReference == v2.valueReference and v3.type in types[v2.type]
        assert (v3.unit, v3.description) == (v2.unit, v2.description)
        assert v3.causality in (v2.causality, "structuralParameter")
    outputs = {v.name for v in md.modelVariables if v.causality == "output"}
    assert {u.variable.name for u in md.outputs} == outputs
    assert all(u.dependencies == [] for u in md.outputs)
    assert {u.variable.name for u in md.initialUnknowns} == outputs
    assert md.generationTool.startswith("cosim build-fmus (C model, FMI 3.0")
    with zipfile.ZipFile(fmu) as archive:
        names = set(archive.namelist())
    assert {"sources/fmi3_layer.c", f"sources/{model}.c", "sources/model.h", "sources/token.h",
            "sources/fmi3Functions.h", "documentation/index.html",
            f"binaries/x86_64-linux/{md.coSimulation.modelIdentifier}.so"} <= names
    (configuration,) = read_build_description(str(fmu))
    assert configuration.sourceFileSets[0].sourceFiles == ["fmi3_layer.c", f"{model}.c"]


def test_the_tissue_map_is_an_array_sized_by_structural_parameters(build_model):
    """V has three dimensions, the value references of nz, ny and nx (row-major [z][y][x]),
    which are UInt64 structural parameters; the FMI 2.0 edition has neither."""
    md = fmpy.read_model_description(str(build_model("tissue", fmi3=True)))
    variables = {v.name: v for v in md.modelVariables}
    potentials = variables["V"]
    assert (potentials.causality, potentials.type, potentials.unit) == ("output", "Float64",
                                                                        "mV")
    assert [d.variable.name for d in potentials.dimensions] == ["nz", "ny", "nx"]
    assert potentials.shape == (1, 1, 81)
    for name in ("nx", "ny", "nz"):
        assert (variables[name].causality, variables[name].type) == ("structuralParameter",
                                                                     "UInt64")
    assert variables["electrode_x"].type == "Int32"
    names2 = {v.name for v in fmpy.read_model_description(str(build_model("tissue")))
              .modelVariables}
    assert "V" not in names2


@pytest.mark.parametrize("model", MODELS)
def test_fmpy_simulate_runs_each_and_equals_the_fmi2_edition(build_model, model):
    """fmpy's simulate_fmu over the DefaultExperiment: every output column of the FMI 3.0
    edition equals the FMI 2.0 edition's."""
    three = fmpy.simulate_fmu(str(build_model(model, fmi3=True)))
    two = fmpy.simulate_fmu(str(build_model(model)))
    assert len(three) == len(two) > 100
    for name in two.dtype.names:
        assert np.array_equal(three[name], two[name]), name


@pytest.fixture(scope="module")
def host3(tmp_path_factory) -> Path:
    """The minimal FMI 3 C host (tests/fixtures/c_host/host3.c), compiled."""
    program = tmp_path_factory.mktemp("host3") / "host3"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1",
                    f"-I{Path(fmpy.__file__).parent / 'c-code'}", str(HOST3), "-o",
                    str(program), "-ldl"], check=True)
    return program


HOST_RUNS = {  # model: (parameters, outputs to compare) for 1 s of 1 ms steps
    "cell": ({"g_load": 0.0}, ["V", "h", "beat_count"]),
    "generator": ({"mode": 4}, ["vp_count", "ap_count", "battery_charge_used"]),
    "lead": ({"fault": 5, "fault_time": 0.0, "noise_rate": 200.0}, ["V_sense", "fault_active"]),
    "organ": ({"V_ao_init": 140.0}, ["P_ao", "V_lv", "P_pu"]),
    "tissue": ({"nx": 21, "ny": 5, "intrinsic_rate": 75.0, "intrinsic_delay": 0.1},
               ["activation_time_far", "egm", "V_electrode", "substeps", "V"]),
}


@pytest.mark.parametrize("model", MODELS)
def test_a_c_host_without_python_runs_each_fmu(build_model, host3, tmp_path, model):
    """dlopen, fmi3InstantiateCoSimulation → configuration mode (the tissue's nx, ny) →
    initialise → 1000 steps of 1 ms → terminate → free, in a C program run with an empty
    environment: the scalars equal the FMI 2.0 edition's, the map equals what fmpy reads."""
    fmu = build_model(model, fmi3=True)
    md = fmpy.read_model_description(str(fmu))
    variables = {v.name: v for v in md.modelVariables}
    parameters, outputs = HOST_RUNS[model]
    folder = unzipped(fmu, tmp_path / model)
    binary = folder / "binaries" / "x86_64-linux" / f"{md.coSimulation.modelIdentifier}.so"
    code = {"Float64": "r", "Int32": "i", "UInt64": "u"}
    arguments = [f"{variables[n].valueReference}:{code[variables[n].type]}={value}"
                 for n, value in parameters.items()]
    arguments.append("--")
    for name in outputs:
        v = variables[name]
        size = int(np.prod([parameters.get(d.variable.name, d.variable.start)
                            for d in v.dimensions], dtype=int))
        arguments.append(f"{v.valueReference}:" + (f"a{size}" if v.dimensions else
                                                    code[v.type]))
    result = subprocess.run([str(host3), str(binary), md.guid, model, "1000", "0.001",
                             *arguments], capture_output=True, text=True, env={}, check=False)
    assert result.returncode == 0, result.stderr
    printed: dict[str, list[float]] = {}
    names = {variables[n].valueReference: n for n in outputs}
    for line in result.stdout.splitlines():
        reference, value = line.split()
        printed.setdefault(names[int(reference)], []).append(float(value))
    fmi2, fmi3 = kit.CInstance(build_model(model)), kit.CInstance3(fmu)
    for reference in (fmi2, fmi3):
        for name, value in parameters.items():
            setattr(reference, name, value)
        reference.exit_initialization_mode()
        for k in range(1000):
            reference.do_step(k * 1e-3, 1e-3)
    for name in outputs:
        if variables[name].dimensions:  # the tissue's map
            assert printed[name] == fmi3.V.ravel().tolist()
            assert fmi3.V.shape == (1, 5, 21) and len(set(printed[name])) > 10
        else:
            assert printed[name] == [float(getattr(fmi2, name))]
    fmi2.free()
    fmi3.free()


@pytest.mark.parametrize("model", MODELS)
def test_the_binary_needs_no_python_and_exports_every_fmi3_function(build_model, tmp_path,
                                                                    model):
    folder = unzipped(build_model(model, fmi3=True), tmp_path)
    (binary,) = (folder / "binaries" / "x86_64-linux").iterdir()
    dynamic = subprocess.run(["readelf", "--dynamic", "--dyn-syms", "-W", str(binary)],
                             capture_output=True, text=True, check=True).stdout
    needed = {line.split("[")[1].rstrip("]") for line in dynamic.splitlines()
              if "(NEEDED)" in line}
    assert needed <= {"libc.so.6", "libm.so.6"}
    assert "Py" not in dynamic
    exported = {line.split()[-1] for line in dynamic.splitlines()
                if " FUNC " in line and " GLOBAL " in line and " UND " not in line}
    header = (Path(fmpy.__file__).parent / "c-code" / "fmi3Functions.h").read_text()
    declared = {line.split()[1] for line in header.splitlines()
                if line.startswith("#define fmi3") and "fmi3FullName(" in line}
    assert len(declared) == 75 and {n for n in exported if n.startswith("fmi3")} == declared


def test_sources_rebuild_the_shipped_binary_byte_for_byte(build_model, tmp_path):
    """sources/README.txt's command, run in sources/, gives the binary the FMU ships."""
    folder = unzipped(build_model("tissue", fmi3=True), tmp_path)
    readme = (folder / "sources" / "README.txt").read_text()
    assert "FMI 3.0" in readme and "x86_64-linux" in readme
    command = next(line.strip() for line in readme.splitlines()
                   if line.strip().startswith("cc "))
    subprocess.run(command.split(), cwd=folder / "sources", check=True)
    shipped = folder / "binaries" / "x86_64-linux" / "Tissue.so"
    assert (folder / "sources" / "Tissue.so").read_bytes() == shipped.read_bytes()


def test_builds_are_reproducible(tmp_path):
    source = ROOT / "fmus" / "organ" / "organ.c"
    docs = ROOT / "docs" / "models" / "organ.md"
    first = build_c_fmu(source, tmp_path / "a", docs, fmi_version="3.0")
    second = build_c_fmu(source, tmp_path / "b", docs, fmi_version="3.0")
    assert first.read_bytes() == second.read_bytes()


def started(fmu: Path, name: str) -> Instance3:
    instance = Instance3(read_fmu(fmu), name)
    instance.instantiate()
    return instance


def test_the_fmi3_layer_refuses_misuse_with_a_message(build_model):
    """A structural parameter outside configuration mode, another parameter inside it or after
    initialisation, an output or time set, a wrong type, an unknown value reference, too few
    values, invalid parameters, a non-finite input, event mode asked for: each an error
    status whose log says what and why."""
    tissue = build_model("tissue", fmi3=True)
    md = fmpy.read_model_description(str(tissue))
    ref = {v.name: v.valueReference for v in md.modelVariables}
    t = started(tissue, "misused")
    fn, c = t._fn, t._component
    one = (ctypes.c_uint * 1)

    def status(function: str, reference: int, value, kind=ctypes.c_double, count: int = 1):
        values = (kind * max(count, 1))(*([value] * max(count, 1)))
        return fn[function](c, one(reference), 1, values, count)

    assert status("fmi3SetUInt64", ref["nx"], 9, ctypes.c_uint64) == 3
    assert "nx is a structural parameter" in t.log[-1] and "configuration mode" in t.log[-1]
    assert fn["fmi3EnterConfigurationMode"](c) == 0
    assert status("fmi3SetFloat64", ref["dx"], 0.2) == 3
    assert "only structural parameters can be set in configuration mode" in t.log[-1]
    assert status("fmi3SetUInt64", ref["nx"], 2**40, ctypes.c_uint64) == 3
    assert "too large" in t.log[-1]
    assert fn["fmi3ExitConfigurationMode"](c) == 0
    t.set({"nx": 9})  # in configuration mode
    assert status("fmi3SetInt32", ref["dx"], 1, ctypes.c_int32) == 3
    assert "dx (value reference" in t.log[-1] and "is a Float64, not a Int32" in t.log[-1]
    assert status("fmi3GetFloat64", 999, 0.0) == 3
    assert "unknown value reference 999" in t.log[-1]
    assert status("fmi3SetFloat64", ref["egm"], 1.0) == 3
    assert "egm is an output and cannot be set" in t.log[-1]
    assert status("fmi3SetFloat64", ref["time"], 1.0) == 3
    assert "time is the independent variable" in t.log[-1]
    assert status("fmi3GetFloat64", ref["V"], 0.0, count=8) == 3  # 9 nodes now
    assert "nValues is 8, too few" in t.log[-1]
    assert status("fmi3GetInt8", ref["nx"], 0, ctypes.c_int8) == 3
    assert "nx (value reference 0) is a UInt64, not a Int8" in t.log[-1]
    assert t.get(["V"])["V"].shape == (1, 1, 9)
    t.set({"D_long": 0.33})
    t.setup_experiment(0.0)
    t.enter_initialization_mode()
    t.exit_initialization_mode()
    with pytest.raises(SimulationError, match="parameter D_long is fixed"):
        t.set({"D_long": 1.0})
    t.set({"I_stim": float("nan")})
    with pytest.raises(SimulationError, match="input I_stim = nan is not finite"):
        t.do_step(0.0, 1e-3)
    t.close()
    t = started(tissue, "unstable")
    t.set({"dt": 0.5})
    t.setup_experiment(0.0)
    t.enter_initialization_mode()
    with pytest.raises(SimulationError, match="dt = 0.5 ms is unstable"):
        t.exit_initialization_mode()
    t.close()
    slave = fmpy.fmi3.FMU3Slave(guid=md.guid, unzipDirectory=fmpy.extract(str(tissue)),
                                modelIdentifier="Tissue", instanceName="events")
    said = []
    with pytest.raises(Exception, match="Failed to instantiate"):
        slave.instantiate(eventModeUsed=True,
                          logMessage=lambda env, status, cat, text: said.append(text.decode()))
    assert "has no event mode" in said[-1]


def flagship(tmp_path: Path, name: str, fmi3: set[str], build_model) -> Path:
    """The flagship scenario with the FMI 3.0 editions of the models in ``fmi3`` (by their
    key in ``fmus``), the tissue's map recorded when it is one of them."""
    text = FLAGSHIP.read_text()
    for key in fmi3:
        text = text.replace(f"  {key}: {key}\n",
                            f"  {key}: {build_model(key, fmi3=True)}\n")
    if "tissue" in fmi3:
        text = text.replace("myocardium.egm,", "myocardium.egm, myocardium.V,")
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def recorded(path: Path) -> dict[str, np.ndarray]:
    with open_results(path) as results:
        return {name: results[name] for name in results.variables}


def test_the_flagship_runs_with_the_fmi3_editions_and_mixed_as_with_fmi2(tmp_path, build_model):
    """The flagship (20 s) with its five FMI 2.0 editions, with the five FMI 3.0 editions, and
    with generator, tissue and organ in FMI 3.0 among lead and cell in FMI 2.0: the same
    verdict and the same figures, every recorded value equal bit for bit; the FMI 3 tissue's
    map is recorded as an (n, 1, 1, 81) dataset with its unit and description."""
    runs = {}
    for name, editions in (("fmi2", set()), ("fmi3", set(MODELS)),
                           ("mixed", {"generator", "tissue", "organ"})):
        scenario = flagship(tmp_path, name, editions, build_model)
        report = run_scenario(scenario, tmp_path / f"{name}.h5", plot=False)
        assert report.passed, report.text()
        runs[name] = ([(o.name, o.value) for o in report.outcomes], recorded(report.results))
    outcomes, fmi2 = runs["fmi2"]
    for name in ("fmi3", "mixed"):
        assert runs[name][0] == outcomes
        values = runs[name][1]
        assert set(values) == set(fmi2) | {"myocardium.V"}
        for variable, data in fmi2.items():
            assert np.array_equal(values[variable], data), (name, variable)
        potentials = values["myocardium.V"]
        assert potentials.shape == (len(fmi2["myocyte.V"]), 1, 1, 81)
        assert potentials.max() > 0.0 and potentials.min() < -84.0
    with open_results(tmp_path / "fmi3.h5") as results:
        assert results.unit("myocardium.V") == "mV"
        assert "every node" in results.description("myocardium.V")


def test_cosim_saves_and_restores_an_fmi3_state_as_bytes(build_model):
    """Instance3.serialize_state / restore_state (the calls a checkpoint makes; checkpoints
    themselves still refuse FMI 3 instances) through fmi3SerializeFMUState and
    fmi3DeserializeFMUState: 300 steps after a restore equal the 300 steps after the save,
    the tissue's map included."""
    tissue = started(build_model("tissue", fmi3=True), "saved")
    tissue.set({"nx": 21, "ny": 5, "intrinsic_rate": 75.0, "intrinsic_delay": 0.1})
    tissue.setup_experiment(0.0)
    tissue.enter_initialization_mode()
    tissue.exit_initialization_mode()

    def steps(first: int) -> list:
        rows = []
        for k in range(first, first + 300):
            tissue.do_step(k * 1e-3, 1e-3)
            values = tissue.get(["V", "egm", "activation_time_far"])
            rows.append([values["V"].tolist(), values["egm"], values["activation_time_far"]])
        return rows

    steps(0)
    saved = tissue.serialize_state()
    after = steps(300)
    tissue.restore_state(saved)
    assert steps(300) == after
    assert after[-1][2] > 0  # an intrinsic beat crossed the sheet meanwhile
    tissue.close()
