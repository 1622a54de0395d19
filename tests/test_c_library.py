"""The C model library as other tools receive it: FMI 2.0 archives that validate, run in a C
host with no Python, rebuild from their own sources, and build reproducibly and only when
something changed."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import fmpy
import fmu_kit as kit  # tests/fmu_kit.py
import pytest
from fmpy.model_description import read_build_description
from fmpy.validation import validate_fmu

from cosim.cli import main
from cosim.errors import SimulationError
from cosim.fmi.fmu import Instance, read_fmu
from cosim.library.build import DEFAULT_DOCS, DEFAULT_SOURCES, build_library, library_fmu
from cosim.library.build_c import build_c_fmu

MODELS = ("cell", "generator", "lead", "organ", "tissue")
HOST = Path(__file__).resolve().parent / "fixtures" / "c_host" / "host.c"


def unzipped(fmu: Path, where: Path) -> Path:
    with zipfile.ZipFile(fmu) as archive:
        archive.extractall(where)
    return where


@pytest.mark.parametrize("model", MODELS)
def test_fmpy_validate_finds_no_problem(build_model, model):
    assert validate_fmu(str(build_model(model))) == []


@pytest.mark.parametrize("model", MODELS)
def test_model_description_describes_everything(build_model, model):
    """A DefaultExperiment, a description for every variable, units, every output in
    ModelStructure (none fed through) and in InitialUnknowns, the sources listed."""
    fmu = build_model(model)
    md = fmpy.read_model_description(str(fmu), validate=True)
    assert md.defaultExperiment.stepSize == "0.001" and float(md.defaultExperiment.stopTime) > 0
    assert all(v.description for v in md.modelVariables)
    assert md.coSimulation.canGetAndSetFMUstate and md.coSimulation.canSerializeFMUstate
    outputs = {v.name for v in md.modelVariables if v.causality == "output"}
    assert {u.variable.name for u in md.outputs} == outputs
    assert all(u.dependencies == [] for u in md.outputs)
    assert {u.variable.name for u in md.initialUnknowns} == outputs
    assert any(v.unit for v in md.modelVariables)
    assert md.generationTool.startswith("cosim build-fmus (C model")
    with zipfile.ZipFile(fmu) as archive:
        names = set(archive.namelist())
    assert {"sources/fmi2_layer.c", f"sources/{model}.c", "sources/model.h", "sources/guid.h",
            "sources/buildDescription.xml", "documentation/index.html",
            f"binaries/linux64/{md.coSimulation.modelIdentifier}.so"} <= names
    (configuration,) = read_build_description(str(fmu))
    assert configuration.sourceFileSets[0].sourceFiles == ["fmi2_layer.c", f"{model}.c"]


def test_generator_codes_are_in_the_descriptions(build_model):
    md = fmpy.read_model_description(str(build_model("generator")))
    text = {v.name: v.description for v in md.modelVariables}
    for code in ("0 none", "1 AP", "2 AS", "3 VP", "4 VS", "5 VR", "6 AR"):
        assert code in text["marker"]
    for code in ("0 OOO", "1 VOO", "2 VVI", "3 AAI", "4 DDD", "5 AOO", "6 DOO"):
        assert code in text["mode"]
    assert "0 none, 1 conductor fracture" in {v.name: v.description for v in
                                              fmpy.read_model_description(str(
                                                  build_model("lead"))).modelVariables}["fault"]


@pytest.fixture(scope="module")
def host(tmp_path_factory) -> Path:
    """The minimal C host (tests/fixtures/c_host/host.c), compiled."""
    program = tmp_path_factory.mktemp("host") / "host"
    subprocess.run(["gcc", "-std=c99", "-O1", f"-I{Path(fmpy.__file__).parent / 'c-code'}",
                    str(HOST), "-o", str(program), "-ldl"], check=True)
    return program


HOST_RUNS = {  # model: (parameters, outputs to compare) for 1 s of 1 ms steps
    "cell": ({"g_load": 0.0}, ["V", "h", "beat_count"]),
    "generator": ({"mode": 4}, ["vp_count", "ap_count", "battery_charge_used"]),
    "lead": ({"fault": 5, "fault_time": 0.0, "noise_rate": 200.0}, ["V_sense", "fault_active"]),
    "organ": ({"V_ao_init": 140.0}, ["P_ao", "V_lv", "P_pu"]),
    "tissue": ({"intrinsic_rate": 75.0, "intrinsic_delay": 0.1},
               ["activation_time_far", "egm", "V_electrode", "substeps"]),
}


@pytest.mark.parametrize("model", MODELS)
def test_a_c_host_without_python_runs_each_fmu(build_model, host, tmp_path, model):
    """dlopen, fmi2Instantiate → initialise → 1000 steps of 1 ms → terminate → free, in a C
    program run with an empty environment: the values equal those fmpy reads."""
    fmu = build_model(model)
    md = fmpy.read_model_description(str(fmu))
    variables = {v.name: v for v in md.modelVariables}
    parameters, outputs = HOST_RUNS[model]
    folder = unzipped(fmu, tmp_path / model)
    binary = folder / "binaries" / "linux64" / f"{md.coSimulation.modelIdentifier}.so"
    code = {"Real": "r", "Integer": "i"}
    arguments = [f"{variables[n].valueReference}:{code[variables[n].type]}={value}"
                 for n, value in parameters.items()]
    arguments += ["--"] + [f"{variables[n].valueReference}:{code[variables[n].type]}"
                           for n in outputs]
    result = subprocess.run([str(host), str(binary), md.guid, model, "1000", "0.001",
                             *arguments], capture_output=True, text=True, env={}, check=False)
    assert result.returncode == 0, result.stderr
    printed = [float(line.split()[1]) for line in result.stdout.splitlines()]
    reference = kit.CInstance(fmu)
    for name, value in parameters.items():
        setattr(reference, name, value)
    reference.exit_initialization_mode()
    for k in range(1000):
        reference.do_step(k * 1e-3, 1e-3)
    assert printed == [float(getattr(reference, n)) for n in outputs]
    reference.free()
    if model == "generator":
        assert printed[:2] == [1.0, 1.0]  # DDD: A at 850 ms, V at 1000 ms


@pytest.mark.parametrize("model", MODELS)
def test_the_binary_needs_no_python(build_model, tmp_path, model):
    """The shared library links the C and math libraries only and no Python symbol."""
    folder = unzipped(build_model(model), tmp_path)
    (binary,) = (folder / "binaries" / "linux64").iterdir()
    dynamic = subprocess.run(["readelf", "--dynamic", "--dyn-syms", "-W", str(binary)],
                             capture_output=True, text=True, check=True).stdout
    needed = {line.split("[")[1].rstrip("]") for line in dynamic.splitlines()
              if "(NEEDED)" in line}
    assert needed <= {"libc.so.6", "libm.so.6"}
    assert "Py" not in dynamic
    exported = {line.split()[-1] for line in dynamic.splitlines()
                if " FUNC " in line and " GLOBAL " in line and " UND " not in line}
    assert len({name for name in exported if name.startswith("fmi2")}) == 34


def test_sources_rebuild_the_shipped_binary_byte_for_byte(build_model, tmp_path):
    """sources/README.txt's command, run in sources/, gives the binary the FMU ships."""
    folder = unzipped(build_model("tissue"), tmp_path)
    command = next(line.strip() for line in (folder / "sources" / "README.txt").read_text()
                   .splitlines() if line.strip().startswith("cc "))
    subprocess.run(command.split(), cwd=folder / "sources", check=True)
    rebuilt = folder / "sources" / "Tissue.so"
    assert rebuilt.read_bytes() == (folder / "binaries" / "linux64" / "Tissue.so").read_bytes()


def test_builds_are_reproducible(tmp_path):
    """The same sources give the same archive bytes, for a C and for a pythonfmu FMU."""
    first = build_c_fmu(DEFAULT_SOURCES / "cell" / "cell.c", tmp_path / "a",
                        DEFAULT_DOCS / "cell.md")
    second = build_c_fmu(DEFAULT_SOURCES / "cell" / "cell.c", tmp_path / "b",
                         DEFAULT_DOCS / "cell.md")
    assert first.read_bytes() == second.read_bytes()
    first = library_fmu("oscillator", tmp_path / "a")
    second = library_fmu("oscillator", tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    with zipfile.ZipFile(first) as archive:
        assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in archive.infolist())
        names = archive.namelist()
        root = ET.fromstring(archive.read("modelDescription.xml"))
    assert names == sorted(names)
    assert "generationDateAndTime" not in root.attrib and root.get("guid").startswith("{")


def test_a_build_happens_only_when_its_inputs_changed(tmp_path):
    """What scripts/setup.sh relies on: a second build does nothing; changing one model's
    source rebuilds that model only; so does changing its documentation."""
    sources, docs, out = tmp_path / "fmus", tmp_path / "docs", tmp_path / "out"
    for model in ("cell", "oscillator"):
        shutil.copytree(DEFAULT_SOURCES / model, sources / model)
        docs.mkdir(exist_ok=True)
        shutil.copy(DEFAULT_DOCS / f"{model}.md", docs)

    def built() -> set[str]:
        return {path.relative_to(out).as_posix() for path, now in
                build_library(out, sources, docs) if now}

    assert built() == {"Cell.fmu", "fmi3/Cell.fmu", "Oscillator.fmu"}
    assert built() == set()
    cell = out / "Cell.fmu"
    before = cell.read_bytes()
    with open(sources / "cell" / "cell.c", "a") as source:
        source.write("/* a comment */\n")
    assert built() == {"Cell.fmu", "fmi3/Cell.fmu"}
    assert cell.read_bytes() != before
    with open(docs / "oscillator.md", "a") as page:
        page.write("\nOne more line.\n")
    assert built() == {"Oscillator.fmu"}


def test_cli_builds_the_library_the_fmi3_and_the_python_editions(tmp_path, capsys):
    """Six library FMUs, the five C models' FMI 3.0 editions in fmi3/, their Python editions
    in python/; a second run builds nothing."""
    assert main(["build-fmus", "-o", str(tmp_path), "--python"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert len(first) == 16 and all(line.startswith("built ") for line in first)
    c_models = {"Cell.fmu", "Generator.fmu", "Lead.fmu", "Organ.fmu", "Tissue.fmu"}
    assert {p.name for p in (tmp_path / "python").iterdir()} == c_models
    assert {p.name for p in (tmp_path / "fmi3").iterdir()} == c_models
    assert all(read_fmu(tmp_path / "fmi3" / name).fmi3 for name in c_models)
    assert main(["build-fmus", "-o", str(tmp_path), "--python"]) == 0
    assert all(line.startswith("up to date ") for line in capsys.readouterr().out.splitlines())


def instance(fmu: Path, name: str) -> Instance:
    started = Instance(read_fmu(fmu), name)
    started.instantiate()
    return started


def test_the_fmi_layer_refuses_misuse_with_a_message(build_model):
    """Invalid parameters, a fixed parameter set during the run, an output set, an unknown
    value reference, a non-finite input: each an error status whose log says what and why."""
    cell = instance(build_model("cell"), "bad_cell")
    cell.set({"tau_in": 0.0})
    cell.setup_experiment(0.0)
    cell.enter_initialization_mode()
    with pytest.raises(SimulationError, match="time constants must be positive"):
        cell.exit_initialization_mode()
    cell.close()
    cell = instance(build_model("cell"), "running_cell")
    cell.setup_experiment(0.0)
    cell.enter_initialization_mode()
    cell.exit_initialization_mode()
    with pytest.raises(SimulationError, match="parameter g_load is fixed"):
        cell.set({"g_load": 1.0})
    with pytest.raises(SimulationError, match="V is an output and cannot be set"):
        cell.set({"V": 1.0})
    references, values = (ctypes.c_uint * 1)(999), (ctypes.c_double * 1)()
    assert cell._fn["fmi2GetReal"](cell._component, references, 1, values) == 3  # fmi2Error
    assert "unknown value reference 999" in cell.log[-1]
    cell.set({"I_stim": float("nan")})
    with pytest.raises(SimulationError, match="input I_stim = nan is not finite"):
        cell.do_step(0.0, 1e-3)
    cell.close()
    tissue = instance(build_model("tissue"), "small_step")
    tissue.set({"dt": 0.5})
    tissue.setup_experiment(0.0)
    tissue.enter_initialization_mode()
    with pytest.raises(SimulationError, match="dt = 0.5 ms is unstable"):
        tissue.exit_initialization_mode()
    tissue.close()



def test_fmpy_compiles_the_sources_into_a_working_binary(build_model, tmp_path):
    """A tool that compiles FMUs from sources/buildDescription.xml (``fmpy compile``, CMake)
    makes a binary from an archive whose binaries were removed; it runs."""
    source_only = tmp_path / "Organ.fmu"
    with zipfile.ZipFile(build_model("organ")) as original, \
            zipfile.ZipFile(source_only, "w") as copy:
        for info in original.infolist():
            if not info.filename.startswith("binaries/"):
                copy.writestr(info, original.read(info))
    subprocess.run([str(Path(sys.executable).with_name("fmpy")), "compile", str(source_only)],
                   capture_output=True, check=True)
    result = fmpy.simulate_fmu(str(source_only), stop_time=0.5)
    assert result["P_ao"][-1] == pytest.approx(result["P_ao"][0], rel=0.5)
    assert result["V_lv"][-1] > 100.0
