"""SSP (System Structure and Parameterization, Modelica Association, 1.0) in and out.

- ``export_ssp(scenario, output)``: any scenario as an ``.ssp`` archive: ``SystemStructure.ssd``
  (one system; a component per instance with the connectors it connects; its parameters as an
  inline parameter set; units; connections, with ``LinearTransformation`` and
  ``suppressUnitConversion`` where the scenario has them; the time grid as the default
  experiment, the step in the Open Simulation Platform's annotation, which libcosim reads) and
  the FMUs in ``resources/``. The written SSD is checked against the SSP 1.0 schema.
- ``import_ssp(archive, folder)``: an ``.ssp`` (or a folder or ``.ssd``) as a scenario file:
  the FMUs extracted beside it, parameters from parameter bindings (inline or ``.ssv``
  files), connections with their linear transformations. Checked against the schema first;
  what cosim cannot represent (nested systems, system connectors, parameter mappings,
  mapping transformations, signal dictionaries) is refused with its line.

Semantics of a linear transformation: ``input = convert(factor · output + offset)``, in the
output's unit before the unit conversion (none with ``suppressUnitConversion``). The schema
files are those fmpy ships (``fmpy/ssp/schema``); lxml (an fmpy dependency) validates.
"""

from __future__ import annotations

import atexit
import re
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree as ET

import yaml

from cosim.errors import Problem, ScenarioError

if TYPE_CHECKING:
    from cosim.scenario.scenario import Scenario

NS = {"ssd": "http://ssp-standard.org/SSP1/SystemStructureDescription",
      "ssc": "http://ssp-standard.org/SSP1/SystemStructureCommon",
      "ssv": "http://ssp-standard.org/SSP1/SystemStructureParameterValues",
      "osp": "http://opensimulationplatform.com/SSP/OSPAnnotations"}
OSP = "com.opensimulationplatform"
FMU_TYPE = "application/x-fmu-sharedlibrary"
TYPES = {"Real": "Real", "Float64": "Real", "Float32": "Real", "Integer": "Integer",
         "Enumeration": "Integer", "Boolean": "Boolean", "String": "String"}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)


# -- export -----------------------------------------------------------------------------------
def export_ssp(scenario_file: str | Path, output: str | Path) -> Path:
    """Write the scenario as an SSP archive with its FMUs; returns the archive's path."""
    from cosim.scenario.scenario import build, load_scenario

    scenario = load_scenario(scenario_file)
    if scenario.measured:
        raise ScenarioError([scenario.source("measured").problem(
            "measured sources are cosim's, not FMUs: SSP cannot hold them",
            "export a copy of the scenario without its measured section")])
    graph, settings = build(scenario)
    output = Path(output)
    sources: dict[str, str] = {}  # FMU path -> resource name
    for name in graph.instances:
        path = graph.fmu(name).path
        if str(path) not in sources:
            resource = path.name if path.name not in sources.values() else f"{name}_{path.name}"
            sources[str(path)] = resource
    ssd = _ssd(scenario.name or output.stem, scenario.description, graph, settings, sources)
    ET.indent(ssd)
    text = ET.tostring(ssd, encoding="unicode", xml_declaration=False)
    document = '<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n"
    problems = schema_problems(document.encode(), "SystemStructureDescription.xsd", str(output))
    if problems:  # a bug here, not the user's: say so plainly
        raise ScenarioError(problems)
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("SystemStructure.ssd", document)
        for path, resource in sources.items():
            archive.write(path, f"resources/{resource}")
    return output


def _ssd(name: str, description: str, graph, settings, sources: dict[str, str]) -> ET.Element:
    root = ET.Element(_q("ssd", "SystemStructureDescription"),
                      {"name": _safe(name), "version": "1.0", "generationTool": "cosim"})
    system = ET.SubElement(root, _q("ssd", "System"), {"name": _safe(name)})
    if description.strip():
        system.set("description", " ".join(description.split()))
    elements = ET.SubElement(system, _q("ssd", "Elements"))
    connected: dict[str, list[str]] = {n: [] for n in graph.instances}
    for c in graph.connections():
        connected[c.source].append(c.output)
        connected[c.target].append(c.input)
    units: dict[str, Any] = {}
    for instance in graph.instances:
        fmu = graph.fmu(instance)
        component = ET.SubElement(elements, _q("ssd", "Component"), {
            "name": instance, "type": FMU_TYPE, "source": f"resources/{sources[str(fmu.path)]}"})
        connectors = ET.SubElement(component, _q("ssd", "Connectors"))
        for variable in sorted(set(connected[instance]), key=list(fmu.variables).index):
            var = fmu.variables[variable]
            connector = ET.SubElement(connectors, _q("ssd", "Connector"),
                                      {"name": variable, "kind": var.causality})
            kind = ET.SubElement(connector, _q("ssc", TYPES.get(var.type, "Real")))
            if kind.tag == _q("ssc", "Real") and var.unit:
                kind.set("unit", var.unit)
                units[var.unit] = fmu.unit_of(variable)
        if not len(connectors):
            component.remove(connectors)
        parameters = graph.parameters(instance)
        if parameters:
            _parameter_binding(component, instance, parameters, fmu)
    connections = ET.SubElement(system, _q("ssd", "Connections"))
    for c in graph.connections(declared=True):
        connection = ET.SubElement(connections, _q("ssd", "Connection"), {
            "startElement": c.source, "startConnector": c.output,
            "endElement": c.target, "endConnector": c.input})
        factor, offset, convert = c.transform
        if not convert:
            connection.set("suppressUnitConversion", "true")
        if (factor, offset) != (1.0, 0.0):
            ET.SubElement(connection, _q("ssc", "LinearTransformation"),
                          {"factor": repr(float(factor)), "offset": repr(float(offset))})
    if not len(connections):
        system.remove(connections)
    if units:
        _units(root, units)
    experiment = ET.SubElement(root, _q("ssd", "DefaultExperiment"), {
        "startTime": repr(settings.start), "stopTime": repr(settings.stop)})
    annotation = ET.SubElement(ET.SubElement(experiment, _q("ssd", "Annotations")),
                               _q("ssc", "Annotation"), {"type": OSP})
    algorithm = ET.SubElement(annotation, _q("osp", "Algorithm"))
    ET.SubElement(algorithm, _q("osp", "FixedStepAlgorithm"),
                  {"baseStepSize": repr(settings.step)})
    return root


def _parameter_binding(component: ET.Element, instance: str, parameters: dict, fmu) -> None:
    bindings = ET.SubElement(component, _q("ssd", "ParameterBindings"))
    values = ET.SubElement(ET.SubElement(bindings, _q("ssd", "ParameterBinding")),
                           _q("ssd", "ParameterValues"))
    parameter_set = ET.SubElement(values, _q("ssv", "ParameterSet"),
                                  {"version": "1.0", "name": instance})
    listing = ET.SubElement(parameter_set, _q("ssv", "Parameters"))
    for name, value in parameters.items():
        kind = TYPES.get(fmu.variables[name].type)
        if kind is None or isinstance(value, (list, tuple, bytes)):
            raise ScenarioError(Problem(f"'{instance}.{name}' is a {fmu.variables[name].type}; "
                                        "SSP 1.0 parameter sets hold scalars only"))
        parameter = ET.SubElement(listing, _q("ssv", "Parameter"), {"name": name})
        text = ("true" if value else "false") if kind == "Boolean" else \
            str(value) if kind == "String" else repr(int(value)) if kind == "Integer" else \
            repr(float(value))
        ET.SubElement(parameter, _q("ssv", kind), {"value": text})


def _units(root: ET.Element, units: dict[str, Any]) -> None:
    from cosim.fmi.units import BASE_UNITS

    node = ET.Element(_q("ssd", "Units"))
    for name, definition in sorted(units.items()):
        unit = ET.SubElement(node, _q("ssc", "Unit"), {"name": name})
        attributes = {}
        if definition is not None:
            attributes = {b: str(e) for b, e in zip(BASE_UNITS, definition.exponents,
                                                    strict=True) if e}
            if definition.factor != 1.0:
                attributes["factor"] = repr(definition.factor)
            if definition.offset != 0.0:
                attributes["offset"] = repr(definition.offset)
        ET.SubElement(unit, _q("ssc", "BaseUnit"), attributes)
    root.insert(list(root).index(root.find(_q("ssd", "System"))) + 1, node)


# -- import -----------------------------------------------------------------------------------
def import_ssp(source: str | Path, folder: str | Path, step: float | None = None) -> Path:
    """Write a scenario file for the SSP ``source`` into ``folder`` (its FMUs extracted into
    ``folder/resources``); returns the scenario file's path."""
    source, folder = Path(source), Path(folder)
    where = str(source)
    if not source.exists():
        raise ScenarioError(Problem("no such SSP file", file=where))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cosim_ssp_") as tmp:
        root_dir = _unpack(source, Path(tmp))
        ssd_file = root_dir / "SystemStructure.ssd" if root_dir.is_dir() else root_dir
        data = ssd_file.read_bytes()
        problems = schema_problems(data, "SystemStructureDescription.xsd", where)
        if problems:
            raise ScenarioError(problems)
        scenario, resources = _scenario_from_ssd(data, ssd_file.parent, where, step)
        for resource in resources:
            target = folder / resource
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ssd_file.parent / resource, target)
    output = folder / f"{Path(source).stem}.yaml"
    header = f"# Imported from {source.name} (SSP 1.0) by cosim import-ssp\n"
    output.write_text(header + yaml.safe_dump(scenario, sort_keys=False, width=100),
                      encoding="utf-8")
    return output


def load_scenario_or_ssp(path: str | Path) -> Scenario:
    """A scenario file, or an SSP archive (``.ssp``, or its ``.ssd``) imported as one: what
    ``cosim run``, ``cosim check``, ``cosim graph`` and the Python API's ``load`` read."""
    from cosim.scenario.scenario import load_scenario

    if Path(path).suffix.lower() in (".ssp", ".ssd"):
        return load_ssp(path)
    return load_scenario(path)


def load_ssp(source: str | Path, step: float | None = None) -> Scenario:
    """An SSP archive as a checked scenario, without a scenario file to write: imported into
    a folder of this process (its FMUs extracted there), removed when the process ends. What
    ``cosim run x.ssp`` goes through."""
    from cosim.scenario.scenario import load_scenario

    folder = Path(tempfile.mkdtemp(prefix="cosim-ssp-"))
    atexit.register(shutil.rmtree, folder, True)
    return load_scenario(import_ssp(source, folder, step))


def _unpack(source: Path, tmp: Path) -> Path:
    if source.is_dir() or source.suffix.lower() == ".ssd":
        return source
    try:
        with zipfile.ZipFile(source) as archive:
            archive.extractall(tmp)
    except zipfile.BadZipFile:
        raise ScenarioError(Problem("not an SSP archive (not a zip file)", file=str(source),
                                    hint="an .ssp is a zip holding SystemStructure.ssd and "
                                    "resources/")) from None
    if not (tmp / "SystemStructure.ssd").is_file():
        raise ScenarioError(Problem("the archive holds no SystemStructure.ssd",
                                    file=str(source)))
    return tmp


def _scenario_from_ssd(data: bytes, base: Path, where: str, step: float | None
                       ) -> tuple[dict, list[str]]:
    from lxml import etree  # keeps each element's line

    root = etree.fromstring(data)
    problems: list[Problem] = []

    def refuse(element, message: str, hint: str | None = None) -> None:
        problems.append(Problem(message, file=where, line=element.sourceline, hint=hint))

    system = root.find("ssd:System", NS)
    fmus: dict[str, str] = {}
    instances: dict[str, Any] = {}
    resources: list[str] = []
    for unsupported, text in (("ssd:Connectors", "system connectors"),
                              ("ssd:ParameterBindings", "parameter bindings on the system"),
                              ("ssd:SignalDictionaries", "signal dictionaries")):
        node = system.find(unsupported, NS)
        if node is not None and len(node):
            refuse(node, f"{text} are not supported", "bind parameters on each component")
    for element in _children(system, "ssd:Elements"):
        name = element.get("name", "")
        if element.tag != _q("ssd", "Component"):
            refuse(element, f"'{name}': nested systems and signal dictionary references are "
                   "not supported", "flatten the system: one level of FMU components")
            continue
        kind, resource = element.get("type", FMU_TYPE), element.get("source", "")
        if kind != FMU_TYPE or not resource.lower().endswith(".fmu"):
            refuse(element, f"component '{name}' is not an FMU ({kind}, {resource})")
            continue
        if not (base / resource).is_file():
            refuse(element, f"component '{name}': {resource} is not in the archive")
            continue
        key = Path(resource).stem
        fmus.setdefault(key, resource)
        if resource not in resources:
            resources.append(resource)
        parameters = _parameters(element, base, refuse)
        instances[name] = {"fmu": key, "parameters": parameters} if parameters else key
    connections: list[Any] = []
    for connection in _children(system, "ssd:Connections"):
        start, end = connection.get("startElement"), connection.get("endElement")
        if not start or not end:
            refuse(connection, "a connection to the system's own connectors is not supported",
                   "connect component to component")
            continue
        ends = f"{start}.{connection.get('startConnector')}", \
            f"{end}.{connection.get('endConnector')}"
        transform: dict[str, Any] = {}
        if connection.get("suppressUnitConversion") == "true":
            transform["convert_units"] = False
        for child in connection:
            if child.tag == _q("ssc", "LinearTransformation"):
                transform["factor"] = float(child.get("factor", "1"))
                transform["offset"] = float(child.get("offset", "0"))
            elif child.tag.endswith("Transformation"):
                refuse(child, f"{etree.QName(child.tag).localname} is not supported",
                       "only LinearTransformation")
        connections.append({"from": ends[0], "to": ends[1], **transform} if transform
                           else f"{ends[0]} -> {ends[1]}")
    experiment = root.find("ssd:DefaultExperiment", NS)
    start = float(experiment.get("startTime", "0")) if experiment is not None else 0.0
    stop = experiment.get("stopTime") if experiment is not None else None
    found = root.find(".//osp:FixedStepAlgorithm", NS)
    step = step or (float(found.get("baseStepSize")) if found is not None else None)
    if stop is None:
        problems.append(Problem("the SSD's DefaultExperiment has no stopTime", file=where,
                                hint="add <ssd:DefaultExperiment stopTime=…> or edit the "
                                "scenario written"))
    if step is None:
        problems.append(Problem("the SSD gives no communication step", file=where,
                                hint="give one: cosim import-ssp --step 0.001 (or the OSP "
                                "annotation FixedStepAlgorithm baseStepSize)"))
    if problems:
        raise ScenarioError(problems)
    scenario = {"version": 1, "name": root.get("name", "imported system")}
    if system.get("description"):
        scenario["description"] = system.get("description")
    scenario.update({"fmus": fmus, "instances": instances, "connections": connections,
                     "simulation": {"start": start, "stop": float(stop), "step": step}})
    return scenario, resources


def _parameters(element, base: Path, refuse) -> dict[str, Any]:
    """A component's parameter values: inline parameter sets and ``.ssv`` files, in order."""
    values: dict[str, Any] = {}
    for binding in element.findall("ssd:ParameterBindings/ssd:ParameterBinding", NS):
        if binding.find("ssd:ParameterMapping", NS) is not None:
            refuse(binding, "parameter mappings are not supported",
                   "name the parameters as the FMU does")
        prefix = binding.get("prefix", "")
        parameter_set = binding.find("ssd:ParameterValues/ssv:ParameterSet", NS)
        if parameter_set is None and binding.get("source"):
            file = base / binding.get("source")
            if not file.is_file():
                refuse(binding, f"parameter file {binding.get('source')} is not in the archive")
                continue
            data = file.read_bytes()
            problems = schema_problems(data, "SystemStructureParameterValues.xsd", str(file))
            if problems:
                raise ScenarioError(problems)
            from lxml import etree

            parameter_set = etree.fromstring(data)
        for parameter in parameter_set.findall("ssv:Parameters/ssv:Parameter", NS) \
                if parameter_set is not None else []:
            name = parameter.get("name", "")
            name = name[len(prefix):] if prefix and name.startswith(prefix) else name
            typed = next(iter(parameter), None)
            if typed is None:
                continue
            kind, text = typed.tag.rpartition("}")[2], typed.get("value", "")
            values[name] = (float(text) if kind == "Real" else int(text)
                            if kind in ("Integer", "Enumeration") else text == "true"
                            if kind == "Boolean" else text)
    return values


# -- schema -----------------------------------------------------------------------------------
def schema_problems(document: bytes, schema: str, where: str) -> list[Problem]:
    """Problems of an SSP document against the SSP 1.0 schema ``schema`` (fmpy's copy)."""
    import fmpy
    from lxml import etree

    folder = Path(fmpy.__file__).parent / "ssp" / "schema"
    try:
        tree = etree.fromstring(document)
    except etree.XMLSyntaxError as error:
        return [Problem(f"not well-formed XML: {error.msg}", file=where, line=error.lineno)]
    validator = etree.XMLSchema(file=str(folder / schema))
    if validator.validate(tree):
        return []
    return [Problem(re.sub(r"\{[^}]*\}", "", entry.message), file=where, line=entry.line,
                    hint="see the SSP 1.0 standard (ssp-standard.org)")
            for entry in validator.error_log]


# -- helpers ----------------------------------------------------------------------------------
def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def _safe(name: str) -> str:
    return " ".join(str(name).split()) or "system"


def _children(parent, path: str) -> list:
    node = parent.find(path, NS)
    return [] if node is None else [child for child in node if isinstance(child.tag, str)]
