"""FMU files: what an FMU declares, read without loading its binary.

``read_fmu(path)`` judges the archive first (``cosim.fmi.archive``: sizes, ratios, names, before
anything is inflated), then reads ``modelDescription.xml`` with fmpy (FMI 2.0 and 3.0, every
interface: co-simulation, model exchange, scheduled execution) and refuses what cannot run
safely here: another FMI version, no interface, a ``modelIdentifier`` that is not a C identifier
(it names the binary to load), a DTD, value references shared by variables that are not aliases
the standard allows. The result is an ``FMU``: variables (with units, bounds, enumeration
values, array dimensions), units, direct dependencies (in steps and in initialisation),
capabilities, interfaces, platforms.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosim.errors import FMUError, Problem
from cosim.fmi.archive import (
    MAX_MODEL_DESCRIPTION_BYTES,
    check_archive,
    extract_archive,
    read_member,
)
from cosim.fmi.units import UnitDefinition, define, from_fmpy

REAL, INTEGER, BOOLEAN, STRING, ENUMERATION = "Real", "Integer", "Boolean", "String", "Enumeration"
FLOAT64_TYPES = (REAL, "Float64")  # FMI 2 Real, FMI 3 Float64: the signal array's own type
FLOAT_TYPES = (*FLOAT64_TYPES, "Float32")
FMI3_INT_TYPES = ("Int8", "UInt8", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64")
INT_TYPES = (INTEGER, BOOLEAN, ENUMERATION, *FMI3_INT_TYPES)  # coupled as float64 values
COUPLED_TYPES = (*FLOAT_TYPES, *INT_TYPES)  # String, Binary, Clock: set, never coupled
CO_SIMULATION, MODEL_EXCHANGE, SCHEDULED_EXECUTION = (
    "co-simulation", "model-exchange", "scheduled-execution")
INTERFACES = (CO_SIMULATION, MODEL_EXCHANGE, SCHEDULED_EXECUTION)
C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RUNTIME_FOLDERS = ("binaries/", "resources/")  # what an instance needs of the archive


@dataclass(frozen=True)
class Variable:
    """One model variable as the FMU declares it."""

    name: str
    value_reference: int
    type: str
    causality: str
    variability: str
    initial: str | None
    unit: str | None
    description: str
    start: Any
    minimum: float | None = None  # declared min/max (the variable's, else its type's)
    maximum: float | None = None
    items: tuple[tuple[int, str], ...] = ()  # Enumeration: (value, name) of each item
    dimensions: tuple[int | str, ...] = ()  # FMI 3 arrays: a size, or a structural parameter
    display_unit: str | None = None


@dataclass
class FMU:
    """An FMU file and what its model description declares."""

    path: Path
    sha256: str
    fmi_version: str
    model_name: str
    model_identifier: str
    guid: str
    generation_tool: str
    variables: dict[str, Variable]
    units: dict[str, UnitDefinition]
    dependencies: dict[str, tuple[str, ...]]  # output -> inputs it feeds through directly
    initial_dependencies: dict[str, tuple[str, ...]]  # the same in initialisation mode
    can_get_and_set_state: bool
    can_handle_variable_step: bool
    can_serialize_state: bool  # canGetAndSetFMUstate and canSerializeFMUstate: checkpoints
    platforms: tuple[str, ...]  # folders under binaries/
    # binaries/<platform>/<modelIdentifier>.<so|dll|dylib> members, for every interface's
    # modelIdentifier
    binaries: tuple[str, ...] = ()
    description: Any = field(repr=False, default=None)  # fmpy's ModelDescription
    only_once_per_process: bool = False  # canBeInstantiatedOnlyOncePerProcess
    interfaces: dict[str, str] = field(default_factory=dict)  # interface -> modelIdentifier
    _unzip_dir: Path | None = field(default=None, repr=False)
    _archive: bytes | None = field(default=None, repr=False)  # ``hold``: the file's bytes

    def __getstate__(self) -> dict[str, Any]:
        """Pickled for another process (an MPI rank, a member runner): without this
        process's extraction folder; with the bytes it ``hold``s."""
        return {**self.__dict__, "_unzip_dir": None}

    def hold(self) -> None:
        """Read the file's bytes once and keep them (checked against the SHA-256 read
        before): the processes this FMU is pickled for extract from them instead of reading
        the file again (``cosim.running.mpi``: one read per job, not one per rank)."""
        if self._archive is None:
            data = self.path.read_bytes()
            if hashlib.sha256(data).hexdigest() != self.sha256:
                raise _changed(self.path)
            self._archive = data

    @property
    def fmi3(self) -> bool:
        return self.fmi_version.startswith("3.")

    def shape(self, name: str, parameters: Mapping[str, Any] | None = None
              ) -> tuple[int, ...]:
        """The shape of variable ``name`` (``()``: a scalar); a dimension given by a
        structural parameter takes its value from ``parameters``, else its start value."""
        shape = []
        for dimension in self.variables[name].dimensions:
            if isinstance(dimension, str):
                value = (parameters or {}).get(dimension, self.variables[dimension].start)
                dimension = int(value)
            shape.append(dimension)
        return tuple(shape)

    def size(self, name: str, parameters: Mapping[str, Any] | None = None) -> int:
        """How many values variable ``name`` holds (1 for a scalar)."""
        return int(np.prod(self.shape(name, parameters), dtype=np.int64))

    def unit_of(self, name: str) -> UnitDefinition | None:
        """The unit definition of a variable (None: no unit declared)."""
        unit = self.variables[name].unit
        if not unit:
            return None
        return self.units.get(unit) or define(unit) or UnitDefinition(unit, (0,) * 8)

    def unzip_dir(self) -> Path:
        """The folder the FMU is extracted to (once per process; removed at exit): what it
        needs to run, its binaries and resources (not its sources or documentation).

        The bytes extracted are the bytes hashed: a file changed since ``read_fmu`` (a pinned
        SHA-256 was checked then) is refused, not run.
        """
        if self._unzip_dir is None:
            with (open(self.path, "rb") if self._archive is None
                  else io.BytesIO(self._archive)) as stream:
                if (self._archive is None and
                        hashlib.file_digest(stream, "sha256").hexdigest() != self.sha256):
                    raise _changed(self.path)
                target = Path(tempfile.mkdtemp(prefix=f"cosim_{self.model_identifier}_"))
                atexit.register(shutil.rmtree, target, ignore_errors=True)
                # bounded: never more than declared; only what it needs to run
                extract_archive(self.path, target, stream, RUNTIME_FOLDERS)
            self._unzip_dir = target
        return self._unzip_dir


def _changed(path: Path) -> FMUError:
    return FMUError(Problem("the FMU file changed after it was checked (its SHA-256 differs)",
                            file=str(path), hint="do not replace FMUs while a run starts; "
                            "run again"))


def read_fmu(path: str | Path) -> FMU:
    """Read an FMU's model description and check it can run here; loads no binary.

    The archive is judged from its central directory first (``cosim.fmi.archive``: sizes,
    ratios, names), before anything is inflated.
    """
    from fmpy import read_model_description

    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise FMUError(Problem("no such FMU file", file=where,
                               hint="check the path; relative paths are taken from the "
                                    "scenario file's folder"))
    names = check_archive(path).names
    if "modelDescription.xml" not in names:
        raise FMUError(Problem("the archive has no modelDescription.xml", file=where,
                               hint="an FMU holds modelDescription.xml at its root"))
    _refuse_doctype(path, read_member(path, "modelDescription.xml",
                                      MAX_MODEL_DESCRIPTION_BYTES))
    try:
        md = read_model_description(str(path), validate=True)
    except Exception as error:  # fmpy raises plain Exceptions for schema and parse errors
        raise FMUError(Problem(f"invalid modelDescription.xml: {error}".strip(), file=where,
                               hint="run `fmpy validate` on it; ask its exporter to fix it"
                               )) from None
    if not md.fmiVersion.startswith(("2.", "3.")):
        raise FMUError(Problem(f"FMI {md.fmiVersion} FMUs are not supported",
                               file=where, hint="export the model as FMI 2.0 or 3.0"))
    interfaces = {kind: node.modelIdentifier for kind, node in (
        (CO_SIMULATION, md.coSimulation), (MODEL_EXCHANGE, md.modelExchange),
        (SCHEDULED_EXECUTION, md.scheduledExecution)) if node is not None}
    if not interfaces:
        raise FMUError(Problem("the FMU declares no interface (co-simulation, model exchange "
                               "or scheduled execution)", file=where,
                               hint="export it again with an interface"))
    for identifier in interfaces.values():
        if not C_IDENTIFIER.fullmatch(identifier or ""):
            raise FMUError(Problem(
                f"modelIdentifier {identifier!r} is not a C identifier", file=where,
                hint="refused: it names the binary to load (binaries/<platform>/"
                     "<modelIdentifier>.so), so a path in it would load a file from outside the "
                     "FMU; the FMI 2.0 and 3.0 schemas define it as a short class name "
                     "according to C syntax"))
    main = md.coSimulation or md.modelExchange or md.scheduledExecution
    identifier = main.modelIdentifier
    platforms = tuple(sorted({n.split("/")[1] for n in names
                              if n.startswith("binaries/") and n.count("/") >= 2
                              and n.split("/")[2]}))
    binaries = tuple(sorted({_binary_name(p, i) for p in platforms
                             for i in interfaces.values()} & set(names)))

    units = {u.name: from_fmpy(u) for u in md.unitDefinitions}
    variables = {}
    for v in md.modelVariables:
        variables[v.name] = Variable(
            name=v.name, value_reference=int(v.valueReference), type=v.type,
            causality=v.causality or "local", variability=v.variability or "continuous",
            initial=v.initial, unit=(v.unit or (v.declaredType.unit if v.declaredType
                                                 and hasattr(v.declaredType, "unit")
                                                 else None)) or None,
            description=v.description or "", start=v.start, **_bounds(v),
            dimensions=tuple(int(d.start) if d.variable is None else d.variable.name
                             for d in v.dimensions),
            display_unit=v.displayUnit or None)
    inputs = [v.name for v in md.modelVariables if v.causality == "input"]
    dependencies: dict[str, tuple[str, ...]] = {}
    for unknown in md.outputs:  # no ``dependencies`` attribute: depends on every input
        deps = unknown.dependencies
        dependencies[unknown.variable.name] = (
            tuple(inputs) if deps is None else tuple(d.name for d in deps
                                                     if d.causality == "input"))
    for v in md.modelVariables:
        if v.causality == "output" and v.name not in dependencies:
            dependencies[v.name] = tuple(inputs)
    # InitialUnknowns: an output listed without ``dependencies`` depends on every known, inputs
    # included; an output not listed has its start value (initial exact or approx)
    initial_dependencies = {name: () for name, v in variables.items() if v.causality == "output"}
    for unknown in md.initialUnknowns:
        if unknown.variable.causality == "output":
            deps = unknown.dependencies
            initial_dependencies[unknown.variable.name] = (
                tuple(inputs) if deps is None else tuple(d.name for d in deps
                                                         if d.causality == "input"))
    # FMI 3 has one value reference per variable, whatever its type (an alias is an <Alias>
    # element, which fmpy lists as a variable of its own with the same reference and start):
    # fmpy's validation above refuses two variables sharing one
    problem = None if md.fmiVersion.startswith("3.") else _alias_problem(variables)
    if problem:
        raise FMUError(Problem(problem, file=where,
                               hint="the FMI 2.0 standard lets variables share a value "
                                    "reference only as aliases of one value, of which at most "
                                    "one has a start value; ask its exporter to fix it"))
    with open(path, "rb") as stream:
        sha256 = hashlib.file_digest(stream, "sha256").hexdigest()
    return FMU(path=path.resolve(), sha256=sha256, fmi_version=md.fmiVersion,
               model_name=md.modelName, model_identifier=identifier, guid=md.guid,
               generation_tool=md.generationTool or "", variables=variables, units=units,
               dependencies=dependencies, initial_dependencies=initial_dependencies,
               can_get_and_set_state=bool(main.canGetAndSetFMUstate),
               can_serialize_state=bool(
                   getattr(main, "canGetAndSetFMUstate", None) or getattr(
                       main, "canGetAndSetFMUState", None)) and bool(
                   getattr(main, "canSerializeFMUstate", None) or getattr(
                       main, "canSerializeFMUState", None)),
               can_handle_variable_step=bool(getattr(
                   main, "canHandleVariableCommunicationStepSize", False)),
               platforms=platforms, binaries=binaries, description=md,
               only_once_per_process=bool(main.canBeInstantiatedOnlyOncePerProcess),
               interfaces=interfaces)


def _binary_name(platform: str, identifier: str) -> str:
    """FMI 2 platforms are win64, linux64, darwin64 …; FMI 3 ones x86_64-windows …"""
    system = platform.rsplit("-", 1)[-1]
    extension = ".dll" if system.startswith("win") else (
        ".dylib" if system.startswith("darwin") else ".so")
    return f"binaries/{platform}/{identifier}{extension}"


def host_platform(fmu: FMU) -> str:
    """The binaries folder this machine loads for ``fmu`` (FMI 2 ``linux64``, FMI 3
    ``x86_64-linux`` …)."""
    from fmpy import platform, platform_tuple

    return platform_tuple if fmu.fmi3 else platform


def binary_problem(fmu: FMU, platform: str, interface: str | None = None) -> Problem | None:
    """Why the FMU cannot be loaded on ``platform`` for ``interface`` (None: its first): no
    binary folder, or no binary named after that interface's modelIdentifier in it."""
    if platform not in fmu.platforms:
        return Problem(f"the FMU has no binary for this platform ({platform}); it has: "
                       + (", ".join(fmu.platforms) or "none (source code only?)"),
                       file=str(fmu.path), hint=f"export or compile the FMU for {platform}")
    identifier = fmu.interfaces[interface] if interface else fmu.model_identifier
    if _binary_name(platform, identifier) not in fmu.binaries:
        return Problem(f"the FMU has no {_binary_name(platform, identifier)}",
                       file=str(fmu.path), hint="the binary must be named after the "
                       "modelIdentifier; export the FMU again")
    return None


def _bounds(v: Any) -> dict[str, Any]:
    """min, max and enumeration items of an fmpy variable, its declared type filling gaps."""
    declared = v.declaredType
    found: dict[str, Any] = {}
    for key, attribute in (("minimum", "min"), ("maximum", "max")):
        text = getattr(v, attribute, None) or getattr(declared, attribute, None)
        if text not in (None, ""):
            try:
                found[key] = float(text)
            except ValueError:
                pass  # the schema already checked it; a value we cannot read bounds nothing
    if v.type == ENUMERATION and declared is not None:
        found["items"] = tuple((int(item.value), item.name) for item in declared.items)
    return found


def base_type(kind: str) -> str:
    """The FMI 2.0 C type a variable type is read and written with (Enumeration: Integer)."""
    return INTEGER if kind == ENUMERATION else kind


def _alias_problem(variables: Mapping[str, Variable]) -> str | None:
    """FMI 2: variables sharing a base type and value reference must be aliases the standard
    allows: one value, at most one of them with a start value (FMI 2.0, ScalarVariable
    ``valueReference``; the FMI Library of the FMU Compliance Checker refuses the same)."""
    by_reference: dict[tuple[str, int], list[Variable]] = {}
    for v in variables.values():
        by_reference.setdefault((base_type(v.type), v.value_reference), []).append(v)
    for (kind, reference), group in sorted(by_reference.items()):
        started = [v.name for v in group if v.start is not None]
        if len(started) > 1:
            return (f"variables {', '.join(repr(n) for n in started)} share the {kind} value "
                    f"reference {reference} and each has a start value: they are not aliases "
                    "of one value")
    return None


def _refuse_doctype(path: Path, xml: bytes) -> None:
    """A model description never needs a DTD; entities could read files or expand to GBs."""
    from lxml import etree

    declared = _prolog_declares_doctype(xml)
    if not declared:
        try:  # any other encoding: lxml tells, without resolving anything
            parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
            info = etree.fromstring(xml, parser).getroottree().docinfo
            declared = bool(info.doctype) or info.internalDTD is not None
        except etree.XMLSyntaxError as error:
            raise FMUError(Problem(f"invalid modelDescription.xml: {error}", file=str(path),
                                   hint="ask its exporter to fix it")) from None
    if declared:
        raise FMUError(Problem("modelDescription.xml declares a DTD (<!DOCTYPE …>)",
                               file=str(path), hint="refused: FMI model descriptions have "
                               "none, and its entities could read other files or expand "
                               "without bound"))


def _prolog_declares_doctype(xml: bytes) -> bool:
    """Whether ``<!DOCTYPE`` follows the XML declaration, comments and processing
    instructions before the root element (one linear scan)."""
    i = 3 if xml.startswith(b"\xef\xbb\xbf") else 0
    while True:
        while i < len(xml) and xml[i] in b" \t\r\n":
            i += 1
        for opening, closing in ((b"<?", b"?>"), (b"<!--", b"-->")):
            if xml.startswith(opening, i):
                end = xml.find(closing, i + len(opening))
                if end < 0:
                    return False
                i = end + len(closing)
                break
        else:
            return xml.startswith(b"<!DOCTYPE", i)
