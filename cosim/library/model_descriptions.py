"""``modelDescription.xml`` of a C library model, FMI 2.0 and FMI 3.0, from its tables (what
``fmus/common/describe_model.c`` prints: ``cosim.library.build_c.describe``).

The FMI 2.0 edition (``model_description2``) declares what ``fmus/common/fmi2_layer.c`` serves:
the table's variables as ScalarVariables, value reference = position in the table. The FMI 3.0
edition (``model_description3``) declares what ``fmus/common/fmi3_layer.c`` serves:

- value references: the model's table keeps its positions (those of the FMI 2.0 edition), the
  array outputs follow, then the independent variable ``time``;
- types: Real is ``<Float64>``, Integer ``<Int32>``, Boolean ``<Boolean>``, String ``<String>``;
  an Integer parameter that sizes an array output is a ``structuralParameter`` of type
  ``<UInt64>`` (set in configuration mode) and the array's ``<Dimension valueReference=…/>``;
- co-simulation only, FMU state get/set and serialisation, no event mode.

Both carry units in ``<UnitDefinitions>``, a description for every variable, the
DefaultExperiment, every output in ModelStructure with its direct dependencies on inputs (none
unless the table says ``depends``), and every output as an initial unknown.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree import ElementTree as ET

from cosim.errors import Problem, ScenarioError
from cosim.library.packaging import unit_definitions, xml_bytes

GENERATION_TOOL_FMI2 = "cosim build-fmus (C model, FMI 2.0 layer fmus/common/fmi2_layer.c)"
GENERATION_TOOL_FMI3 = "cosim build-fmus (C model, FMI 3.0 layer fmus/common/fmi3_layer.c)"
TYPES = {"Real": "Float64", "Integer": "Int32", "Boolean": "Boolean", "String": "String"}


def check_table(info: dict, source: Path) -> None:
    """Variable names unique, every variable described, dependencies on inputs only."""
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


def model_description2(info: dict, guid: str, compile_files: list[str], source: Path
                       ) -> bytes:
    """``modelDescription.xml`` (FMI 2.0) of a C model from its table."""
    import cosim

    name = info["name"]
    root = ET.Element("fmiModelDescription", {
        "fmiVersion": "2.0", "modelName": name, "guid": guid,
        "description": info["description"], "author": "cosim", "version": cosim.__version__,
        "generationTool": GENERATION_TOOL_FMI2, "variableNamingConvention": "flat",
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
        discrete = v["type"] != "Real" or v.get("discrete", False)
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
            typed["start"] = start_text(v)
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


def structural_parameters(info: dict) -> set[str]:
    """Names of the Integer parameters that size an array output (FMI 3 structural parameters)."""
    return {name for array in info.get("arrays", []) for name in array["dimensions"].split()}


def value_references(info: dict) -> dict[str, int]:
    """Every variable's value reference in the FMI 3.0 edition, by name."""
    names = [v["name"] for v in info["variables"]] + [a["name"] for a in info.get("arrays", [])]
    return {name: reference for reference, name in enumerate([*names, "time"])}


def check_arrays(info: dict, source: Path) -> None:
    """Array outputs are named uniquely, described, and shaped by Integer parameters that
    start at a size (>= 1)."""
    variables = {v["name"]: v for v in info["variables"]}
    problems = []
    for array in info.get("arrays", []):
        name = array["name"]
        if name in variables or name == "time":
            problems.append(Problem(f"array output '{name}' has the name of another variable",
                                    file=str(source)))
        if not array["description"]:
            problems.append(Problem(f"array output '{name}' has no description",
                                    file=str(source), hint="every variable is described"))
        dimensions = array["dimensions"].split()
        if not 1 <= len(dimensions) <= 4:
            problems.append(Problem(f"array output '{name}' needs 1 to 4 dimensions, has "
                                    f"{len(dimensions)}", file=str(source)))
        for dimension in dimensions:
            v = variables.get(dimension)
            if v is None or v["type"] != "Integer" or v["causality"] != "parameter":
                problems.append(Problem(f"dimension '{dimension}' of array output '{name}' is "
                                        "not an Integer parameter", file=str(source)))
            elif v["start"] < 1:
                problems.append(Problem(f"dimension '{dimension}' of array output '{name}' "
                                        f"starts at {v['start']:g}: a size is at least 1",
                                        file=str(source)))
    if problems:
        raise ScenarioError(problems)


def model_description3(info: dict, token: str, source: Path) -> bytes:
    """``modelDescription.xml`` (FMI 3.0) of a C model from its tables."""
    import cosim

    check_arrays(info, source)
    name = info["name"]
    references = value_references(info)
    structural = structural_parameters(info)
    variables, arrays = info["variables"], info.get("arrays", [])
    root = ET.Element("fmiModelDescription", {
        "fmiVersion": "3.0", "modelName": name, "instantiationToken": token,
        "description": info["description"], "author": "cosim", "version": cosim.__version__,
        "generationTool": GENERATION_TOOL_FMI3, "variableNamingConvention": "flat"})
    ET.SubElement(root, "CoSimulation", {
        "modelIdentifier": name, "canHandleVariableCommunicationStepSize": "true",
        "canBeInstantiatedOnlyOncePerProcess": "false", "canGetAndSetFMUState": "true",
        "canSerializeFMUState": "true", "hasEventMode": "false",
        "mightReturnEarlyFromDoStep": "false"})
    units = unit_definitions([*(v["unit"] for v in variables if v["unit"]),
                              *(a["unit"] for a in arrays if a["unit"]), "s"], str(source))
    root.append(units)
    categories = ET.SubElement(root, "LogCategories")
    ET.SubElement(categories, "Category", {
        "name": "logStatusError", "description": "Errors: invalid parameters, calls in a "
        "wrong state, invalid inputs"})
    ET.SubElement(root, "DefaultExperiment", {
        "startTime": "0.0", "stopTime": repr(float(info["stop_time"])),
        "stepSize": repr(float(info["step_size"]))})
    model_variables = ET.SubElement(root, "ModelVariables")
    for v in variables:
        _scalar(model_variables, v, references[v["name"]], v["name"] in structural)
    for array in arrays:
        attributes = {"name": array["name"], "valueReference": str(references[array["name"]]),
                      "description": array["description"], "causality": "output",
                      "variability": "continuous", "initial": "calculated"}
        if array["unit"]:
            attributes["unit"] = array["unit"]
        node = ET.SubElement(model_variables, "Float64", attributes)
        for dimension in array["dimensions"].split():
            ET.SubElement(node, "Dimension", {"valueReference": str(references[dimension])})
    ET.SubElement(model_variables, "Float64", {
        "name": "time", "valueReference": str(references["time"]),
        "description": "simulation time", "causality": "independent",
        "variability": "continuous", "unit": "s"})
    structure = ET.SubElement(root, "ModelStructure")
    outputs = [(v["name"], v["depends"].split()) for v in variables if v["causality"] == "output"]
    outputs += [(a["name"], []) for a in arrays]
    for output, depends in outputs:
        ET.SubElement(structure, "Output", {
            "valueReference": str(references[output]),
            "dependencies": " ".join(str(references[d]) for d in depends),
            "dependenciesKind": " ".join("dependent" for _ in depends)})
    for output, _ in outputs:
        ET.SubElement(structure, "InitialUnknown", {"valueReference": str(references[output])})
    return xml_bytes(root)


def _scalar(parent: ET.Element, v: dict, reference: int, structural: bool) -> None:
    kind = "UInt64" if structural else TYPES[v["type"]]
    attributes = {"name": v["name"], "valueReference": str(reference),
                  "description": v["description"]}
    discrete = v["type"] != "Real" or v.get("discrete", False)
    if structural:
        attributes.update(causality="structuralParameter", variability="fixed")
    elif v["causality"] == "parameter":
        attributes.update(causality="parameter", variability="fixed")
    elif v["causality"] == "output":
        attributes.update(causality="output",
                          variability="discrete" if discrete else "continuous",
                          initial="calculated")
    else:
        attributes.update(causality="input",
                          variability="discrete" if discrete else "continuous")
    if v["type"] == "Real" and v["unit"]:
        attributes["unit"] = v["unit"]
    start = None if v["causality"] == "output" else start_text(v)
    if start is not None and kind != "String":
        attributes["start"] = start
    node = ET.SubElement(parent, kind, attributes)
    if start is not None and kind == "String":
        ET.SubElement(node, "Start", {"value": start})


def start_text(variable: dict) -> str:
    """The start attribute of a table variable."""
    value = variable["start"]
    if variable["type"] == "Real":
        return repr(float(value))
    if variable["type"] == "Integer":
        return str(int(value))
    if variable["type"] == "Boolean":
        return "true" if value else "false"
    return str(value)


