"""Compile a C model of the library (``fmus/<name>/<name>.c``) into an FMI 2.0 co-simulation FMU.

A model file holds the equations and a table of its variables (``fmus/common/model.h``); the
FMI 2.0 layer ``fmus/common/fmi2_layer.c`` turns it into the fmi2 functions. The build, with
the system C compiler (``$CC``, else ``cc``, else ``gcc``):

1. compiles ``describe_model.c`` with the model into a program that prints the table as JSON;
2. writes ``modelDescription.xml`` from it (units, DefaultExperiment, a description for every
   variable, ModelStructure with outputs, their dependencies and the InitialUnknowns) and
   ``guid.h``, whose GUID is derived from that interface;
3. compiles the layer and the model into ``binaries/<platform>/<Name>.so`` with fixed flags;
4. writes the archive (``cosim.packaging``) with ``sources/`` (everything a user needs to
   rebuild the binary on another platform: the C files, ``model.h``, ``guid.h``, the FMI 2.0
   headers, ``buildDescription.xml`` and ``README.txt`` with the compiler command) and
   ``documentation/`` (``docs/models/<name>.md`` as HTML).

Nothing of Python is in or behind the binary: it needs the C library and libm only.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import tempfile
import uuid
from functools import cache
from pathlib import Path
from xml.etree import ElementTree as ET

from cosim.errors import Problem, ScenarioError
from cosim.packaging import (
    documentation_members,
    inputs_hash,
    unit_definitions,
    write_archive,
    xml_bytes,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
COMMON = REPO_ROOT / "fmus" / "common"
LAYER = ("model.h", "fmi2_layer.c")
DESCRIBE = "describe_model.c"
FMI_HEADERS = ("fmi2Functions.h", "fmi2FunctionTypes.h", "fmi2TypesPlatform.h")
# Deterministic and portable: no -march (the binary runs on any x86-64), no fast-math, no
# contraction into fused multiply-adds (the arithmetic is the Python editions', bit for bit).
# -O3 -fno-trapping-math let the compiler vectorise the tissue's loops (values unchanged: it
# only stops assuming that a comparison may raise a floating-point exception).
CFLAGS = ("-std=c99", "-O3", "-fno-trapping-math", "-fPIC", "-fvisibility=hidden",
          "-ffp-contract=off", "-Wall", "-Wextra")
GENERATION_TOOL = "cosim build-fmus (C model, FMI 2.0 layer fmus/common/fmi2_layer.c)"


def c_source(model_folder: Path) -> Path | None:
    """The C model file of a library folder (``fmus/cell/cell.c``), if it has one."""
    path = Path(model_folder) / f"{Path(model_folder).name}.c"
    return path if path.is_file() else None


def compiler() -> str:
    """The C compiler: ``$CC``, else ``cc``, else ``gcc``."""
    import os

    chosen = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not chosen:
        raise ScenarioError(Problem(
            "no C compiler found to build the model library (looked for $CC, cc, gcc)",
            hint="install one (e.g. 'apt-get install gcc'), or use FMUs built elsewhere"))
    return chosen


@cache
def compiler_identity(cc: str) -> str:
    """The compiler's first ``--version`` line: part of what a build depends on."""
    try:
        result = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False)
    except OSError as error:
        raise ScenarioError(Problem(f"cannot run the C compiler '{cc}': {error}",
                                    hint="set CC to a working C compiler")) from None
    return (result.stdout.splitlines() or [cc])[0]


def fmi_headers() -> Path:
    """The folder of the FMI 2.0 headers (fmpy ships them)."""
    import fmpy

    return Path(fmpy.__file__).parent / "c-code"


def binary_folder() -> tuple[str, str]:
    """(FMI 2.0 platform folder, shared-library suffix) of this machine."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "arm64", "aarch64"):
        raise ScenarioError(Problem(f"no FMI 2.0 platform name for a {machine} machine",
                                    hint="compile sources/ of the FMU with your tool"))
    if sys.platform.startswith("linux"):
        return "linux64", ".so"
    if sys.platform == "darwin":
        return "darwin64", ".dylib"
    raise ScenarioError(Problem(f"building the C library on {sys.platform} is not supported",
                                hint="build on Linux or macOS, or compile each FMU's sources/ "
                                     "with your tool (sources/README.txt)"))


def build_inputs(source: Path, documentation_file: Path | None) -> str:
    """The hash of everything a C FMU is built from (``cosim.packaging.inputs_hash``)."""
    files = [source, *(COMMON / name for name in (*LAYER, DESCRIBE)),
             *(fmi_headers() / name for name in FMI_HEADERS), Path(__file__),
             Path(__file__).with_name("packaging.py")]
    if documentation_file is not None and Path(documentation_file).is_file():
        files.append(Path(documentation_file))
    return inputs_hash(files, (compiler_identity(compiler()), " ".join(CFLAGS),
                               *binary_folder()))


def describe(source: Path, work: Path) -> dict:
    """The model's table (name, description, default experiment, variables) as a dict."""
    program = work / "describe_model"
    _compile([compiler(), "-std=c99", f"-I{COMMON}", str(COMMON / DESCRIBE), str(source),
              "-o", str(program), "-lm"], source, cwd=work)
    result = subprocess.run([str(program)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ScenarioError(Problem(f"describing the model failed: {result.stderr.strip()}",
                                    file=str(source)))
    return json.loads(result.stdout)


def build_c_fmu(source: Path, dest_dir: Path, documentation_file: Path | None = None) -> Path:
    """Build the FMU of the C model ``source`` into ``dest_dir``; returns its path."""
    source = Path(source).resolve()
    platform_folder, suffix = binary_folder()
    inputs = build_inputs(source, documentation_file)
    with tempfile.TemporaryDirectory(prefix="cosim_c_") as tmp:
        work = Path(tmp)
        info = describe(source, work)
        _check_table(info, source)
        name = info["name"]
        guid = "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, "cosim:" + json.dumps(
            info, sort_keys=True))) + "}"
        sources = {name: (COMMON / name).read_bytes() for name in LAYER}
        sources[source.name] = source.read_bytes()
        sources.update({name: (fmi_headers() / name).read_bytes() for name in FMI_HEADERS})
        sources["guid.h"] = (f"/* Written by the build: the GUID of this modelDescription.xml."
                             f" */\n#define MODEL_GUID \"{guid}\"\n").encode()
        compile_files = ["fmi2_layer.c", source.name]
        sources["buildDescription.xml"] = _build_description(name, compile_files)
        sources["README.txt"] = _readme(name, compile_files, suffix).encode()
        folder = work / "sources"
        folder.mkdir()
        for file_name, data in sources.items():
            (folder / file_name).write_bytes(data)
        binary = work / f"{name}{suffix}"
        link = ["-shared", "-lm"] + (["-s"] if suffix == ".so" else [])
        _compile([compiler(), *CFLAGS, "-I.", *compile_files, "-o", str(binary), *link],
                 source, cwd=folder)
        members = {f"sources/{file_name}": data for file_name, data in sources.items()}
        members[f"binaries/{platform_folder}/{name}{suffix}"] = binary.read_bytes()
        members["modelDescription.xml"] = model_description(info, guid, compile_files, source)
        if documentation_file is not None and Path(documentation_file).is_file():
            members.update(documentation_members(Path(documentation_file), name))
    return write_archive(Path(dest_dir) / f"{name}.fmu", members, inputs)


def _compile(command: list[str], source: Path, cwd: Path) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)
    if result.returncode != 0 or "warning:" in result.stderr:
        raise ScenarioError(Problem(
            f"the C compiler failed ({result.returncode}): {result.stderr.strip()[-2000:]}",
            file=str(source), hint="fix the model file; the command was: " + " ".join(command)))


def _check_table(info: dict, source: Path) -> None:
    names = [v["name"] for v in info["variables"]]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    problems = [Problem(f"variable '{n}' appears twice in the table", file=str(source))
                for n in duplicates]
    inputs = {v["name"] for v in info["variables"] if v["causality"] == "input"}
    for v in info["variables"]:
        if v["depends"] and v["causality"] != "output":
            problems.append(Problem(f"'{v['name']}' is not an output but declares depends",
                                    file=str(source)))
        for dependency in v["depends"].split():
            if dependency not in inputs:
                problems.append(Problem(f"output '{v['name']}' depends on '{dependency}', "
                                        "which is not an input", file=str(source)))
        if not v["description"]:
            problems.append(Problem(f"variable '{v['name']}' has no description",
                                    file=str(source), hint="every variable is described"))
    if problems:
        raise ScenarioError(problems)


def model_description(info: dict, guid: str, compile_files: list[str], source: Path) -> bytes:
    """``modelDescription.xml`` (FMI 2.0) of a C model from its table."""
    import cosim

    name = info["name"]
    root = ET.Element("fmiModelDescription", {
        "fmiVersion": "2.0", "modelName": name, "guid": guid,
        "description": info["description"], "author": "cosim", "version": cosim.__version__,
        "generationTool": GENERATION_TOOL, "variableNamingConvention": "flat",
        "numberOfEventIndicators": "0"})
    cosimulation = ET.SubElement(root, "CoSimulation", {
        "modelIdentifier": name, "canHandleVariableCommunicationStepSize": "true",
        "canInterpolateInputs": "false", "maxOutputDerivativeOrder": "0",
        "canRunAsynchronuously": "false", "canBeInstantiatedOnlyOncePerProcess": "false",
        "canNotUseMemoryManagementFunctions": "false", "canGetAndSetFMUstate": "true",
        "canSerializeFMUstate": "true", "providesDirectionalDerivative": "false"})
    files = ET.SubElement(cosimulation, "SourceFiles")
    for file_name in compile_files:
        ET.SubElement(files, "File", {"name": file_name})
    variables = info["variables"]
    units = unit_definitions((v["unit"] for v in variables if v["unit"]), str(source))
    if units is not None:
        root.append(units)
    categories = ET.SubElement(root, "LogCategories")
    ET.SubElement(categories, "Category", {
        "name": "logStatusError", "description": "Errors: invalid parameters, calls in a "
        "wrong state, invalid inputs"})
    ET.SubElement(root, "DefaultExperiment", {
        "startTime": "0.0", "stopTime": repr(float(info["stop_time"])),
        "stepSize": repr(float(info["step_size"]))})
    model_variables = ET.SubElement(root, "ModelVariables")
    index = {}
    for reference, v in enumerate(variables):
        index[v["name"]] = reference + 1
        attributes = {"name": v["name"], "valueReference": str(reference),
                      "description": v["description"], "causality": v["causality"]}
        discrete = v["type"] != "Real"
        if v["causality"] == "parameter":
            attributes.update(variability="fixed", initial="exact")
        elif v["causality"] == "output":
            attributes.update(variability="discrete" if discrete else "continuous",
                              initial="calculated")
        else:
            attributes["variability"] = "discrete" if discrete else "continuous"
        scalar = ET.SubElement(model_variables, "ScalarVariable", attributes)
        typed = {}
        if v["type"] == "Real" and v["unit"]:
            typed["unit"] = v["unit"]
        if v["causality"] != "output":
            typed["start"] = _start(v)
        ET.SubElement(scalar, v["type"], typed)
    structure = ET.SubElement(root, "ModelStructure")
    outputs = [v for v in variables if v["causality"] == "output"]
    if outputs:
        node = ET.SubElement(structure, "Outputs")
        for v in outputs:
            depends = v["depends"].split()
            ET.SubElement(node, "Unknown", {
                "index": str(index[v["name"]]),
                "dependencies": " ".join(str(index[d]) for d in depends),
                "dependenciesKind": " ".join("dependent" for _ in depends)})
        node = ET.SubElement(structure, "InitialUnknowns")
        for v in outputs:
            ET.SubElement(node, "Unknown", {"index": str(index[v["name"]])})
    return xml_bytes(root)


def _start(variable: dict) -> str:
    value = variable["start"]
    if variable["type"] == "Real":
        return repr(float(value))
    if variable["type"] == "Integer":
        return str(int(value))
    if variable["type"] == "Boolean":
        return "true" if value else "false"
    return str(value)


def _build_description(name: str, compile_files: list[str]) -> bytes:
    root = ET.Element("fmiBuildDescription", {"fmiVersion": "3.0"})
    configuration = ET.SubElement(root, "BuildConfiguration", {"modelIdentifier": name})
    file_set = ET.SubElement(configuration, "SourceFileSet", {
        "language": "C99", "compilerOptions": " ".join(CFLAGS)})
    for file_name in compile_files:
        ET.SubElement(file_set, "SourceFile", {"name": file_name})
    ET.SubElement(file_set, "IncludeDirectory", {"name": "."})
    ET.SubElement(configuration, "Library", {
        "name": "m", "external": "true", "description": "the C math library (link with -lm)"})
    return xml_bytes(root)


def _readme(name: str, compile_files: list[str], suffix: str) -> str:
    return (f"{name}: the C sources of this FMU (FMI 2.0 co-simulation).\n\n"
            f"Rebuild the binary for your platform from this folder, e.g. on Linux:\n\n"
            f"    cc {' '.join(CFLAGS)} -I. {' '.join(compile_files)} -o {name}{suffix} "
            f"-shared -lm -s\n\n"
            f"and put it into binaries/<platform>/ of the FMU (linux64, darwin64 as "
            f"{name}.dylib, win64 as {name}.dll). With MSVC: cl /O2 /LD /I. "
            f"{' '.join(compile_files)} /Fe{name}.dll\n"
            f"buildDescription.xml lists the same files for tools that compile FMUs.\n"
            f"{name.lower()}.c holds the model's equations (documentation/index.html);\n"
            f"fmi2_layer.c is the FMI 2.0 interface, model.h what joins them.\n")
