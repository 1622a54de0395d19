"""The model library: which models there are, and their FMUs built from ``fmus/`` when stale.

A library model is a folder ``fmus/<name>/`` with its documentation in
``docs/models/<name>.md``. It holds a C model file ``<name>.c`` (the edition scenarios use,
compiled by ``cosim.library.build_c``), a pythonfmu script (a unique file name, e.g.
``cosim_cell.py``,
the Python edition), or both: the Python edition is then the independent reference the tests
hold the C edition to. ``fmus/common/`` holds the C FMI layer, not a model.

- ``library_fmu(name)``: the FMU a scenario's ``fmus: {key: name}`` means, in
  ``build/fmus/<Name>.fmu``: the C edition where there is one, else the Python edition.
- ``library_fmu(name, fmi3=True)``: the FMI 3.0 edition of a C model (same model file, the FMI
  3.0 layer), in ``build/fmus/fmi3/<Name>.fmu``; ``cosim build-fmus`` builds them with the FMI
  2.0 ones;
- ``library_fmu(name, python=True)``: the Python edition of a model that also has a C one, in
  ``build/fmus/python/<Name>.fmu`` (``cosim build-fmus --python`` builds them all).

A build is skipped when the FMU was built from the same inputs (``cosim.library.packaging``: the
hash
of the sources, documentation, build code and tool versions is stored in the archive), so
``scripts/setup.sh`` rebuilds only what changed. Every FMU is reproducible byte for byte.

The pythonfmu path: the script defines one ``pythonfmu.Fmi2Slave`` subclass, which may declare
``UNITS = {"V": "mV", ...}`` (any unit pint knows), ``OUTPUT_DEPENDENCIES = {"V": [], "y":
["u"]}`` (an output not listed depends on all inputs) and ``CAN_GET_AND_SET_STATE = True`` (it
implements ``_get_fmu_state``/``_set_fmu_state`` for everything it keeps). pythonfmu writes
neither units nor a complete ModelStructure, so this module completes ``modelDescription.xml``
(UnitDefinitions, ``unit`` attributes, Outputs with their dependencies, InitialUnknowns), gives
it a GUID derived from its content and no build date, and rewrites the archive reproducibly.
"""

from __future__ import annotations

import re
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

from cosim.errors import CosimError, Problem, ScenarioError
from cosim.library.build_c import build_c_fmu, build_inputs, c_source
from cosim.library.packaging import (
    built_from,
    documentation_members,
    inputs_hash,
    unit_definitions,
    write_archive,
    xml_bytes,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SOURCES = REPO_ROOT / "fmus"
DEFAULT_DOCS = REPO_ROOT / "docs" / "models"
DEFAULT_OUTPUT = REPO_ROOT / "build" / "fmus"
PYTHON_EDITIONS = "python"  # sub-folder of the output for Python editions of C models
FMI3_EDITIONS = "fmi3"  # sub-folder of the output for FMI 3.0 editions of C models


def model_sources(root: Path = DEFAULT_SOURCES) -> list[Path]:
    """The pythonfmu model scripts under ``root``: the one ``*.py`` of each sub-folder."""
    scripts = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        script = python_script(folder)
        if script is not None:
            scripts.append(script)
    return scripts


def python_script(folder: Path) -> Path | None:
    """The pythonfmu script of a model folder, if it has one."""
    candidates = sorted(p for p in Path(folder).glob("*.py") if not p.name.startswith("_"))
    if len(candidates) > 1:
        raise ScenarioError(Problem(
            f"{len(candidates)} scripts in one model folder: "
            + ", ".join(p.name for p in candidates), file=str(folder),
            hint="keep one model script per folder of fmus/"))
    return candidates[0] if candidates else None


def library_model_names(sources: Path = DEFAULT_SOURCES) -> list[str]:
    """Names of the models in the library (folders of ``fmus/`` with a C or Python model)."""
    if not Path(sources).is_dir():
        return []
    return [folder.name for folder in sorted(p for p in Path(sources).iterdir() if p.is_dir())
            if c_source(folder) is not None or python_script(folder) is not None]


def library_fmu(name: str, dest_dir: Path = DEFAULT_OUTPUT, sources: Path = DEFAULT_SOURCES,
                docs: Path = DEFAULT_DOCS, python: bool = False, fmi3: bool = False) -> Path:
    """The FMU of library model ``name`` (see the module's docstring), built first if it is
    missing or was built from other inputs."""
    return _library_build(name, dest_dir, sources, docs, python, fmi3)[0]


def build_library(dest_dir: Path = DEFAULT_OUTPUT, sources: Path = DEFAULT_SOURCES,
                  docs: Path = DEFAULT_DOCS, python: bool = False) -> list[tuple[Path, bool]]:
    """Every library FMU and the FMI 3.0 editions of the C models (with ``python``: also
    their Python editions), built where stale; returns (path, whether it was built now)."""
    results = []
    for name in library_model_names(sources):
        results.append(_library_build(name, dest_dir, sources, docs, False, False))
        folder = Path(sources) / name
        if c_source(folder) is not None:
            results.append(_library_build(name, dest_dir, sources, docs, False, True))
        if python and c_source(folder) is not None and python_script(folder) is not None:
            results.append(_library_build(name, dest_dir, sources, docs, True, False))
    return results


def _library_build(name: str, dest_dir: Path, sources: Path, docs: Path,
                   python: bool, fmi3: bool) -> tuple[Path, bool]:
    folder = Path(sources) / name
    if name not in library_model_names(sources):
        raise ScenarioError(Problem(f"no model '{name}' in the library ({sources})",
                                    hint="library models: "
                                    + ", ".join(library_model_names(sources))))
    documentation_file = Path(docs) / f"{name}.md"
    c_file, script = c_source(folder), python_script(folder)
    if python and script is None:
        raise ScenarioError(Problem(f"library model '{name}' has no Python edition",
                                    file=str(folder)))
    if fmi3 and (python or c_file is None):
        raise ScenarioError(Problem(f"library model '{name}' has no FMI 3.0 edition (only C "
                                    "models have one)", file=str(folder)))
    if c_file is not None and not python:
        version = "3.0" if fmi3 else "2.0"
        out = Path(dest_dir) / FMI3_EDITIONS if fmi3 else Path(dest_dir)
        fmu = out / f"{_c_model_name(c_file)}.fmu"
        try:
            inputs = build_inputs(c_file, documentation_file, version)
        except CosimError:
            if fmu.is_file():  # no compiler here: use the FMU built elsewhere
                return fmu, False
            raise
        if fmu.is_file() and built_from(fmu) == inputs:
            return fmu, False
        return build_c_fmu(c_file, out, documentation_file, version), True
    if c_file is not None:
        dest_dir = Path(dest_dir) / PYTHON_EDITIONS
    fmu = Path(dest_dir) / f"{_class_name(script)}.fmu"
    if fmu.is_file() and built_from(fmu) == python_build_inputs(script, documentation_file,
                                                                 c_file):
        return fmu, False
    return build_fmu(script, dest_dir, documentation_file, c_file), True


def python_build_inputs(script: Path, documentation_file: Path | None,
                        c_file: Path | None = None) -> str:
    """The hash of everything a pythonfmu FMU is built from (``cosim.library.packaging``)."""
    from importlib.metadata import version

    files = [Path(script), Path(__file__), Path(__file__).with_name("packaging.py")]
    if documentation_file is not None and Path(documentation_file).is_file():
        files.append(Path(documentation_file))
    if c_file is not None:
        files.append(Path(c_file))
    return inputs_hash(files, (version("pythonfmu"),))


def c_descriptions(c_file: Path) -> dict[str, str]:
    """The variable descriptions of a C model's table: the one text both editions use."""
    from cosim.library.build_c import describe

    with tempfile.TemporaryDirectory(prefix="cosim_describe_") as tmp:
        return {v["name"]: v["description"] for v in describe(c_file, Path(tmp))["variables"]}


def build_fmu(script: Path, dest_dir: Path = DEFAULT_OUTPUT,
              documentation: Path | None = None, c_file: Path | None = None) -> Path:
    """Build one FMU from a pythonfmu model script into ``dest_dir``; returns its path.
    ``c_file``: the C edition of the same model, whose table describes the variables the
    script leaves undescribed."""
    from pythonfmu.builder import FmuBuilder, get_model_class

    script = Path(script).resolve()
    if str(script.parent) not in sys.path:  # pythonfmu imports the script by module name
        sys.path.insert(0, str(script.parent))
    model_class = get_model_class(script)
    options = {}
    if getattr(model_class, "CAN_GET_AND_SET_STATE", False):
        options = {"canGetAndSetFMUstate": True, "canSerializeFMUstate": True}
    with tempfile.TemporaryDirectory(prefix="cosim_pythonfmu_") as tmp:
        built = FmuBuilder.build_FMU(script, dest=tmp, **options)
        with zipfile.ZipFile(built) as archive:
            members = {info.filename: archive.read(info) for info in archive.infolist()
                       if not info.is_dir()}
    members["modelDescription.xml"] = _complete_model_description(
        members["modelDescription.xml"], getattr(model_class, "UNITS", {}),
        getattr(model_class, "OUTPUT_DEPENDENCIES", {}), str(script),
        c_descriptions(c_file) if c_file is not None else {})
    if documentation is not None and Path(documentation).exists():
        members.update(documentation_members(Path(documentation), model_class.__name__))
    fmu = Path(dest_dir) / Path(built).name
    return write_archive(fmu, members, python_build_inputs(script, documentation, c_file))


def _complete_model_description(xml: bytes, units: dict[str, str],
                                dependencies: dict[str, list[str]], where: str,
                                descriptions: dict[str, str] | None = None) -> bytes:
    root = ET.fromstring(xml)
    variables = root.find("ModelVariables").findall("ScalarVariable")
    for var in variables:  # pythonfmu writes none unless the script passes description=
        if not var.get("description") and (descriptions or {}).get(var.get("name")):
            var.set("description", descriptions[var.get("name")])
    index = {v.get("name"): i + 1 for i, v in enumerate(variables)}
    by_name = {v.get("name"): v for v in variables}
    problems = [Problem(f"UNITS names an unknown variable '{name}'", file=where)
                for name in units if name not in by_name]
    problems += [Problem(f"OUTPUT_DEPENDENCIES names an unknown variable '{name}'",
                         file=where) for name in dependencies if name not in by_name]
    if problems:
        raise ScenarioError(problems)

    _add_units(root, by_name, units, where)
    outputs = [v for v in variables if v.get("causality") == "output"]
    inputs = {v.get("name") for v in variables if v.get("causality") == "input"}
    structure = root.find("ModelStructure")
    for child in list(structure):
        structure.remove(child)
    if outputs:
        node = ET.SubElement(structure, "Outputs")
        for var in outputs:
            attrib = {"index": str(index[var.get("name")])}
            deps = dependencies.get(var.get("name"))
            if deps is not None:
                unknown = [d for d in deps if d not in inputs]
                if unknown:
                    raise ScenarioError(Problem(
                        f"output '{var.get('name')}' depends on {unknown}, which are not inputs",
                        file=where))
                attrib["dependencies"] = " ".join(str(index[d]) for d in deps)
                attrib["dependenciesKind"] = " ".join("dependent" for _ in deps)
            ET.SubElement(node, "Unknown", attrib)
    initial_unknowns = [v for v in outputs if v.get("initial") in (None, "approx", "calculated")]
    initial_unknowns += [v for v in variables if v.get("causality") == "calculatedParameter"
                         and v.get("initial") in (None, "approx", "calculated")]
    if initial_unknowns:
        node = ET.SubElement(structure, "InitialUnknowns")
        for var in sorted(initial_unknowns, key=lambda v: index[v.get("name")]):
            ET.SubElement(node, "Unknown", {"index": str(index[var.get("name")])})
    # Reproducible: no build date, and a GUID derived from the content (pythonfmu's is uuid1).
    root.attrib.pop("generationDateAndTime", None)
    root.set("guid", "")
    root.set("guid", "{" + str(uuid.uuid5(uuid.NAMESPACE_URL, "cosim-pythonfmu:"
                                          + xml_bytes(root).decode())) + "}")
    return xml_bytes(root)


def _add_units(root: ET.Element, by_name: dict[str, ET.Element], units: dict[str, str],
               where: str) -> None:
    for name, unit in units.items():
        real = by_name[name].find("Real")
        if real is None:
            raise ScenarioError(Problem(f"UNITS gives a unit to '{name}', which is not a Real",
                                        file=where))
        real.set("unit", unit)
    node = unit_definitions(units.values(), where)
    if node is not None:
        position = list(root).index(root.find("CoSimulation")) + 1
        root.insert(position, node)


def _class_name(script: Path) -> str:
    match = re.search(r"^class\s+(\w+)\s*\(\s*Fmi2Slave\s*\)", Path(script).read_text(), re.M)
    if not match:
        raise ScenarioError(Problem("no 'class …(Fmi2Slave)' in the model script",
                                    file=str(script)))
    return match.group(1)


def _c_model_name(c_file: Path) -> str:
    """The model name a C model file declares (the first string of its ``MODEL``)."""
    match = re.search(r"^const Model MODEL = \{\s*\"(\w+)\"", Path(c_file).read_text(), re.M)
    if not match:
        raise ScenarioError(Problem("no 'const Model MODEL = {\"Name\", …}' in the model file",
                                    file=str(c_file)))
    return match.group(1)
