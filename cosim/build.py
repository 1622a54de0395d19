"""Build FMUs from the model sources in ``fmus/`` with pythonfmu, completed for exchange.

A model source is a folder ``fmus/<name>/`` holding one Python script (a unique file name,
e.g. ``cosim_cell.py``) that defines one ``pythonfmu.Fmi2Slave`` subclass. Its documentation
is ``docs/models/<name>.md``. The class may declare, as plain class attributes:

- ``UNITS = {"V": "mV", ...}``: the unit of each Real variable (any unit pint knows);
- ``OUTPUT_DEPENDENCIES = {"V": [], "y": ["u"]}``: for each output, the inputs it depends on
  *directly* (an empty list: no direct feed-through); an output not listed depends on all;
- ``CAN_GET_AND_SET_STATE = True``: the model implements ``_get_fmu_state``/``_set_fmu_state``
  for everything it keeps (needed for rollback and checkpoints).

pythonfmu writes neither units nor a complete ModelStructure, so this module rewrites
``modelDescription.xml`` after pythonfmu has built the FMU: UnitDefinitions, ``unit``
attributes, Outputs with their dependencies and InitialUnknowns. The result passes
``fmpy validate`` with no problems, and carries its documentation as HTML.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from xml.dom.minidom import parseString
from xml.etree import ElementTree as ET

from cosim.errors import Problem, ScenarioError
from cosim.units import BASE_UNITS, define

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCES = REPO_ROOT / "fmus"
DEFAULT_DOCS = REPO_ROOT / "docs" / "models"
DEFAULT_OUTPUT = REPO_ROOT / "build" / "fmus"


def model_sources(root: Path = DEFAULT_SOURCES) -> list[Path]:
    """The model scripts under ``root``: one ``*.py`` in each sub-folder."""
    scripts = []
    for folder in sorted(p for p in Path(root).iterdir() if p.is_dir()):
        candidates = [p for p in folder.glob("*.py") if not p.name.startswith("_")]
        if len(candidates) == 1:
            scripts.append(candidates[0])
        elif len(candidates) > 1:
            raise ScenarioError(Problem(
                f"{len(candidates)} scripts in one model folder: "
                + ", ".join(p.name for p in candidates), file=str(folder),
                hint="keep one model script per folder of fmus/"))
    return scripts


def build_fmu(script: Path, dest_dir: Path = DEFAULT_OUTPUT,
              documentation: Path | None = None) -> Path:
    """Build one FMU from a pythonfmu model script into ``dest_dir``; returns its path."""
    from pythonfmu.builder import FmuBuilder, get_model_class

    script = Path(script).resolve()
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    if str(script.parent) not in sys.path:  # pythonfmu imports the script by module name
        sys.path.insert(0, str(script.parent))
    model_class = get_model_class(script)
    options = {}
    if getattr(model_class, "CAN_GET_AND_SET_STATE", False):
        options = {"canGetAndSetFMUstate": True, "canSerializeFMUstate": True}
    with tempfile.TemporaryDirectory(prefix="cosim_doc_") as tmp:
        doc_dir = None
        if documentation is not None and Path(documentation).exists():
            doc_dir = Path(tmp)
            _render_documentation(Path(documentation), doc_dir, model_class.__name__)
        fmu = FmuBuilder.build_FMU(script, dest=dest_dir, documentation_folder=doc_dir,
                                   **options)
    _complete_model_description(Path(fmu), getattr(model_class, "UNITS", {}),
                                getattr(model_class, "OUTPUT_DEPENDENCIES", {}))
    return Path(fmu)


def build_library(dest_dir: Path = DEFAULT_OUTPUT, sources: Path = DEFAULT_SOURCES,
                  docs: Path = DEFAULT_DOCS) -> list[Path]:
    """Build every model under ``sources`` into ``dest_dir``."""
    built = []
    for script in model_sources(sources):
        built.append(build_fmu(script, dest_dir, Path(docs) / f"{script.parent.name}.md"))
    return built


def _render_documentation(markdown_file: Path, out_dir: Path, title: str) -> None:
    import markdown

    body = markdown.markdown(markdown_file.read_text(encoding="utf-8"),
                             extensions=["tables", "fenced_code"])
    html = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"</head><body>\n{body}\n</body></html>\n")
    (out_dir / "index.html").write_text(html, encoding="utf-8")
    shutil.copy2(markdown_file, out_dir / markdown_file.name)


def _complete_model_description(fmu: Path, units: dict[str, str],
                                dependencies: dict[str, list[str]]) -> None:
    with zipfile.ZipFile(fmu) as archive:
        root = ET.fromstring(archive.read("modelDescription.xml"))
        members = {info.filename: archive.read(info) for info in archive.infolist()
                   if info.filename != "modelDescription.xml"}

    variables = root.find("ModelVariables").findall("ScalarVariable")
    index = {v.get("name"): i + 1 for i, v in enumerate(variables)}
    by_name = {v.get("name"): v for v in variables}
    problems = [Problem(f"UNITS names an unknown variable '{name}'", file=str(fmu))
                for name in units if name not in by_name]
    problems += [Problem(f"OUTPUT_DEPENDENCIES names an unknown variable '{name}'",
                         file=str(fmu)) for name in dependencies if name not in by_name]
    if problems:
        raise ScenarioError(problems)

    _add_units(root, by_name, units, fmu)
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
                        file=str(fmu)))
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

    xml = parseString(ET.tostring(root, encoding="UTF-8")).toprettyxml(indent="  ",
                                                                        encoding="UTF-8")
    xml = b"\n".join(line for line in xml.splitlines() if line.strip())
    tmp = fmu.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("modelDescription.xml", xml)
        for name, data in members.items():
            archive.writestr(name, data)
    tmp.replace(fmu)


def _add_units(root: ET.Element, by_name: dict[str, ET.Element], units: dict[str, str],
               fmu: Path) -> None:
    if not units:
        return
    definitions = {}
    for name, unit in units.items():
        real = by_name[name].find("Real")
        if real is None:
            raise ScenarioError(Problem(f"UNITS gives a unit to '{name}', which is not a Real",
                                        file=str(fmu)))
        definition = define(unit)
        if definition is None:
            raise ScenarioError(Problem(f"unknown unit '{unit}' for '{name}'", file=str(fmu),
                                        hint="use a unit pint knows, e.g. mV, uA/cm**2, mmHg"))
        real.set("unit", unit)
        definitions[unit] = definition
    node = ET.Element("UnitDefinitions")
    for unit in sorted(definitions):
        definition = definitions[unit]
        unit_node = ET.SubElement(node, "Unit", {"name": unit})
        attrib = {b: str(e) for b, e in zip(BASE_UNITS, definition.exponents, strict=True) if e}
        if definition.factor != 1.0:
            attrib["factor"] = repr(definition.factor)
        if definition.offset != 0.0:
            attrib["offset"] = repr(definition.offset)
        ET.SubElement(unit_node, "BaseUnit", attrib)
    position = list(root).index(root.find("CoSimulation")) + 1
    root.insert(position, node)


def library_model_names(sources: Path = DEFAULT_SOURCES) -> list[str]:
    """Names of the models in the library (the folders of ``fmus/``)."""
    if not Path(sources).is_dir():
        return []
    return [script.parent.name for script in model_sources(sources)]


def library_fmu(name: str, dest_dir: Path = DEFAULT_OUTPUT, sources: Path = DEFAULT_SOURCES,
                docs: Path = DEFAULT_DOCS) -> Path:
    """The built FMU of library model ``name``; built first if missing or older than its source."""
    scripts = [s for s in model_sources(sources) if s.parent.name == name]
    if not scripts:
        raise ScenarioError(Problem(f"no model '{name}' in the library ({sources})",
                                    hint="library models: " + ", ".join(library_model_names())))
    script = scripts[0]
    class_name = _class_name(script)
    fmu = Path(dest_dir) / f"{class_name}.fmu"
    documentation = Path(docs) / f"{name}.md"
    inputs = [script] + ([documentation] if documentation.exists() else [])
    if not fmu.exists() or fmu.stat().st_mtime < max(p.stat().st_mtime for p in inputs):
        fmu = build_fmu(script, dest_dir, documentation)
    return fmu


def _class_name(script: Path) -> str:
    import re

    match = re.search(r"^class\s+(\w+)\s*\(\s*Fmi2Slave\s*\)", script.read_text(), re.M)
    if not match:
        raise ScenarioError(Problem("no 'class …(Fmi2Slave)' in the model script",
                                    file=str(script)))
    return match.group(1)
