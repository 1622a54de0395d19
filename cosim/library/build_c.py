"""Compile a C model of the library (``fmus/<name>/<name>.c``) into a co-simulation FMU, FMI
2.0 or FMI 3.0 (the two editions of a model: same model file, another layer).

A model file holds the equations and a table of its variables (``fmus/common/model.h``); the
FMI 2.0 layer ``fmus/common/fmi2_layer.c`` turns it into the fmi2 functions, the FMI 3.0 layer
``fmus/common/fmi3_layer.c`` into the fmi3 ones. The build, with the system C compiler
(``$CC``, else ``cc``, else ``gcc``):

1. compiles ``describe_model.c`` with the model into a program that prints its tables as JSON;
2. writes ``modelDescription.xml`` from it (``cosim.library.model_descriptions``: units,
   DefaultExperiment, a description for every variable, ModelStructure) and ``guid.h`` (FMI
   2.0) or ``token.h`` (FMI 3.0), whose GUID or instantiation token is derived from that
   interface;
3. compiles the layer and the model into ``binaries/<platform>/<Name>.so`` with fixed flags
   (``linux64`` for FMI 2.0, ``x86_64-linux`` for FMI 3.0);
4. writes the archive (``cosim.library.packaging``) with ``sources/`` (everything a user needs to
   rebuild the binary on another platform: the C files, ``model.h``, the token header, the FMI
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
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from xml.etree import ElementTree as ET

from cosim.errors import Problem, ScenarioError
from cosim.library.model_descriptions import check_table, model_description2, model_description3
from cosim.library.packaging import documentation_members, inputs_hash, write_archive, xml_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMON = REPO_ROOT / "fmus" / "common"
DESCRIBE = "describe_model.c"
# Deterministic and portable: no -march (the binary runs on any x86-64), no fast-math, no
# contraction into fused multiply-adds (the arithmetic is the Python editions', bit for bit).
# -O3 -fno-trapping-math let the compiler vectorise the tissue's loops (values unchanged: it
# only stops assuming that a comparison may raise a floating-point exception).
CFLAGS = ("-std=c99", "-O3", "-fno-trapping-math", "-fPIC", "-fvisibility=hidden",
          "-ffp-contract=off", "-Wall", "-Wextra")


@dataclass(frozen=True)
class Edition:
    """What differs between the FMI 2.0 and the FMI 3.0 build of the same model file."""

    fmi_version: str               # "2.0" or "3.0"
    layer: str                     # the FMI layer in fmus/common/
    headers: tuple[str, ...]       # the FMI headers (fmpy ships them)
    token_header: str              # written by the build: the GUID or instantiation token
    token_macro: str
    platforms: tuple[str, str]     # binaries/ folder of Linux, macOS on this machine's CPU
    platform_names: str            # the other folders, for README.txt


def edition(fmi_version: str) -> Edition:
    """The build of ``fmi_version`` ("2.0" or "3.0")."""
    arm = platform.machine().lower() in ("arm64", "aarch64")
    if fmi_version == "2.0":
        return Edition("2.0", "fmi2_layer.c",
                       ("fmi2Functions.h", "fmi2FunctionTypes.h", "fmi2TypesPlatform.h"),
                       "guid.h", "MODEL_GUID", ("linux64", "darwin64"),
                       "linux64, darwin64 as {name}.dylib, win64 as {name}.dll")
    if fmi_version == "3.0":
        cpu = "aarch64" if arm else "x86_64"
        return Edition("3.0", "fmi3_layer.c",
                       ("fmi3Functions.h", "fmi3FunctionTypes.h", "fmi3PlatformTypes.h"),
                       "token.h", "INSTANTIATION_TOKEN", (f"{cpu}-linux", f"{cpu}-darwin"),
                       "x86_64-linux, aarch64-linux, x86_64-darwin or aarch64-darwin as "
                       "{name}.dylib, x86_64-windows as {name}.dll")
    raise ValueError(f"no FMI {fmi_version} edition (2.0 or 3.0)")


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
    """The folder of the FMI 2.0 and 3.0 headers (fmpy ships them)."""
    import fmpy

    return Path(fmpy.__file__).parent / "c-code"


def binary_folder(fmi_version: str = "2.0") -> tuple[str, str]:
    """(platform folder under binaries/, shared-library suffix) of this machine."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "arm64", "aarch64"):
        raise ScenarioError(Problem(f"no FMI {fmi_version} platform name for a {machine} "
                                    "machine", hint="compile sources/ of the FMU with your tool"))
    linux, darwin = edition(fmi_version).platforms
    if sys.platform.startswith("linux"):
        return linux, ".so"
    if sys.platform == "darwin":
        return darwin, ".dylib"
    raise ScenarioError(Problem(f"building the C library on {sys.platform} is not supported",
                                hint="build on Linux or macOS, or compile each FMU's sources/ "
                                     "with your tool (sources/README.txt)"))


def build_inputs(source: Path, documentation_file: Path | None,
                 fmi_version: str = "2.0") -> str:
    """The hash of everything a C FMU is built from (``cosim.library.packaging.inputs_hash``)."""
    chosen = edition(fmi_version)
    files = [source, *(COMMON / name for name in ("model.h", chosen.layer, DESCRIBE)),
             *(fmi_headers() / name for name in chosen.headers), Path(__file__),
             Path(__file__).with_name("packaging.py"),
             Path(__file__).with_name("model_descriptions.py")]
    if documentation_file is not None and Path(documentation_file).is_file():
        files.append(Path(documentation_file))
    return inputs_hash(files, (compiler_identity(compiler()), " ".join(CFLAGS),
                               *binary_folder(fmi_version)))


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


def build_c_fmu(source: Path, dest_dir: Path, documentation_file: Path | None = None,
                fmi_version: str = "2.0") -> Path:
    """Build the FMU (FMI ``fmi_version``: "2.0" or "3.0") of the C model ``source`` into
    ``dest_dir``; returns its path."""
    source = Path(source).resolve()
    chosen = edition(fmi_version)
    platform_folder, suffix = binary_folder(fmi_version)
    inputs = build_inputs(source, documentation_file, fmi_version)
    with tempfile.TemporaryDirectory(prefix="cosim_c_") as tmp:
        work = Path(tmp)
        info = describe(source, work)
        check_table(info, source)
        name = info["name"]
        compile_files = [chosen.layer, source.name]
        if fmi_version == "2.0":  # the FMI 2.0 interface: the table alone
            table = {key: value for key, value in info.items() if key != "arrays"}
            token = "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, "cosim:" + json.dumps(
                table, sort_keys=True))) + "}"
            description = model_description2(info, token, compile_files, source)
        else:
            token = "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, "cosim-fmi3:" + json.dumps(
                info, sort_keys=True))) + "}"
            description = model_description3(info, token, source)
        sources = {name: (COMMON / name).read_bytes() for name in ("model.h", chosen.layer)}
        sources[source.name] = source.read_bytes()
        sources.update({name: (fmi_headers() / name).read_bytes() for name in chosen.headers})
        what = "GUID" if fmi_version == "2.0" else "instantiation token"
        sources[chosen.token_header] = (
            f"/* Written by the build: the {what} of this modelDescription.xml. */\n"
            f"#define {chosen.token_macro} \"{token}\"\n").encode()
        sources["buildDescription.xml"] = _build_description(name, compile_files)
        sources["README.txt"] = _readme(name, compile_files, suffix, chosen).encode()
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
        members["modelDescription.xml"] = description
        if documentation_file is not None and Path(documentation_file).is_file():
            members.update(documentation_members(Path(documentation_file), name))
    return write_archive(Path(dest_dir) / f"{name}.fmu", members, inputs)


def _compile(command: list[str], source: Path, cwd: Path) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False, cwd=cwd)
    if result.returncode != 0 or "warning:" in result.stderr:
        raise ScenarioError(Problem(
            f"the C compiler failed ({result.returncode}): {result.stderr.strip()[-2000:]}",
            file=str(source), hint="fix the model file; the command was: " + " ".join(command)))


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


def _readme(name: str, compile_files: list[str], suffix: str, chosen: Edition) -> str:
    version = chosen.fmi_version
    return (f"{name}: the C sources of this FMU (FMI {version} co-simulation).\n\n"
            f"Rebuild the binary for your platform from this folder, e.g. on Linux:\n\n"
            f"    cc {' '.join(CFLAGS)} -I. {' '.join(compile_files)} -o {name}{suffix} "
            f"-shared -lm -s\n\n"
            f"and put it into binaries/<platform>/ of the FMU "
            f"({chosen.platform_names.format(name=name)}). With MSVC: cl /O2 /LD /I. "
            f"{' '.join(compile_files)} /Fe{name}.dll\n"
            f"buildDescription.xml lists the same files for tools that compile FMUs.\n"
            f"{name.lower()}.c holds the model's equations (documentation/index.html);\n"
            f"{chosen.layer} is the FMI {version} interface, model.h what joins them.\n")
