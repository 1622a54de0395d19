"""The coupling graph: which FMU instances exist and which output feeds which input.

A ``CouplingGraph`` holds one node per instance (its FMU, scale, parameters, cost, isolation,
interface, solver: read through its methods) and one edge per connection ``instance.output ->
instance.input`` (``Connection``: with the unit conversion ``input = scale * output + shift``).
It keeps them in a ``networkx.MultiDiGraph``, which no other module sees. Users build it in Python
(``add_instance``, ``connect``) or from a scenario file (``cosim.scenario.scenario``); ``check()``
returns
every problem found, each located at the scenario line that caused it.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from cosim.errors import Problem, ScenarioError, Source
from cosim.fmi.fmu_file import (
    BOOLEAN,
    COUPLED_TYPES,
    ENUMERATION,
    FLOAT_TYPES,
    FMI3_INT_TYPES,
    FMU,
    INT_TYPES,
    INTEGER,
    SCHEDULED_EXECUTION,
    STRING,
    Variable,
    read_fmu,
)
from cosim.fmi.instances import default_interface
from cosim.fmi.units import conversion

if TYPE_CHECKING:
    from cosim.fmi.isolation import Isolation

SCALES = ("cell", "tissue", "organ", "device", "other")
NOWHERE = Source()  # built in Python: no scenario line to point at


@dataclass(frozen=True)
class Connection:
    """One checked edge: ``source.output -> target.input`` with its unit conversion."""

    source: str
    output: str
    target: str
    input: str
    scale: float = 1.0
    shift: float = 0.0
    transform: tuple[float, float, bool] = (1.0, 0.0, True)  # as declared: factor, offset,
    # convert_units (``connect``); scale and shift include it

    def __str__(self) -> str:
        return f"{self.source}.{self.output} -> {self.target}.{self.input}"


def parse_port(text: str) -> tuple[str, str] | None:
    """``"heart.P_ao"`` -> ``("heart", "P_ao")``; variable names may contain dots."""
    instance, dot, variable = str(text).strip().partition(".")
    if not dot or not instance or not variable:
        return None
    return instance, variable


class CouplingGraph:
    """Instances of FMUs and the connections between them."""

    def __init__(self) -> None:
        self.graph = nx.MultiDiGraph()
        self._problems: list[Problem] = []
        self._fmus: dict[Path, FMU] = {}

    # -- building -----------------------------------------------------------------------------
    def add_instance(self, name: str, fmu: FMU | str | Path, *, scale: str = "other",
                     parameters: Mapping[str, Any] | None = None, cost: float = 1.0,
                     source: Source = NOWHERE, isolation: Isolation | None = None,
                     interface: str | None = None, solver: Any = None) -> None:
        """Add an FMU instance; problems are kept for ``check()``. ``isolation``: where it
        runs (``cosim.fmi.isolation``; None: in the master's process); ``interface``: which of the
        FMU's interfaces (None: co-simulation if it has one); ``solver``: how a model
        exchange instance is integrated (``cosim.fmi.model_exchange.Solver``)."""
        if name in self.graph:
            self._problems.append(source.problem(f"instance '{name}' is declared twice",
                                                 "give every instance its own name"))
            return
        if not isinstance(fmu, FMU):
            path = Path(fmu).resolve()
            if path not in self._fmus:
                self._fmus[path] = read_fmu(path)
            fmu = self._fmus[path]
        if scale not in SCALES:
            self._problems.append(source.problem(f"unknown scale '{scale}'",
                                                 f"use one of {', '.join(SCALES)}"))
        if interface is not None and interface not in fmu.interfaces:
            self._problems.append(source.problem(
                f"the FMU {fmu.model_name} has no {interface} interface",
                f"it has: {', '.join(fmu.interfaces)}"))
            interface = None
        if (interface or default_interface(fmu)) == SCHEDULED_EXECUTION:
            self._problems.append(source.problem(
                f"the FMU {fmu.model_name} ({fmu.path.name}) "
                + ("offers only scheduled execution" if len(fmu.interfaces) == 1 else
                   "was asked to run as scheduled execution")
                + " (FMI 3 model partitions activated by clocks): cosim does not run "
                "scheduled execution",
                "run its co-simulation or model exchange interface, or export the model "
                "with one of them (docs/fmi.md says why scheduled execution is left out)"))
        self.graph.add_node(name, fmu=fmu, scale=scale, parameters=dict(parameters or {}),
                            cost=float(cost), source=source, order=len(self.graph),
                            isolation=isolation, interface=interface, solver=solver)
        for parameter, value in (parameters or {}).items():
            problem = self._check_start_value(name, parameter, value, source)
            if problem:
                self._problems.append(problem)

    def connect(self, output: str, input: str, *, source: Source = NOWHERE,
                factor: float = 1.0, offset: float = 0.0, convert_units: bool = True) -> None:
        """Connect ``"a.y"`` to ``"b.u"``; every mistake is kept for ``check()``.

        ``factor``, ``offset``: a linear transformation (SSP's LinearTransformation), applied
        in the output's unit before the unit conversion: ``u = convert(factor · y + offset)``;
        ``convert_units=False``: no unit conversion (SSP's suppressUnitConversion)."""
        problems_before = len(self._problems)
        ends = []
        for text, expected in ((output, "output"), (input, "input")):
            port = parse_port(text)
            if port is None:
                self._problems.append(source.problem(
                    f"'{text}' is not of the form instance.variable",
                    "write connections as 'generator.V_pace_v -> lead.V_pace_v'"))
                continue
            instance, variable = port
            if instance not in self.graph:
                self._problems.append(source.problem(
                    f"unknown instance '{instance}'" + _suggest(instance, self.graph.nodes),
                    f"instances declared: {', '.join(self.graph.nodes) or 'none'}"))
                continue
            fmu: FMU = self.graph.nodes[instance]["fmu"]
            var = fmu.variables.get(variable)
            if var is None:
                names = [v.name for v in fmu.variables.values() if v.causality == expected]
                self._problems.append(source.problem(
                    f"the FMU {fmu.model_name} of '{instance}' has no variable '{variable}'"
                    + _suggest(variable, names),
                    f"its {expected}s: {', '.join(names) or 'none'} (`cosim info "
                    f"{fmu.path.name}` lists all)"))
                continue
            if var.causality != expected:
                self._problems.append(source.problem(
                    f"'{text}' is an {var.causality}, not an {expected}",
                    "a connection goes from an output to an input: 'a.output -> b.input'"))
                continue
            ends.append((instance, var))
        if len(self._problems) > problems_before or len(ends) != 2:
            return
        (src, out_var), (dst, in_var) = ends
        src_fmu, dst_fmu = self.graph.nodes[src]["fmu"], self.graph.nodes[dst]["fmu"]
        uncoupled = [v.type for v in (out_var, in_var) if v.type not in COUPLED_TYPES]
        if uncoupled:
            self._problems.append(source.problem(
                f"{output} -> {input}: {uncoupled[0]} variables cannot be connected",
                "connections carry numbers (Real, Integer, Boolean, Enumeration; FMI 3: "
                "Float, Int and UInt types)"))
            return
        if not _types_compatible(out_var.type, in_var.type):
            self._problems.append(source.problem(
                f"type mismatch: {output} is {out_var.type}, {input} is {in_var.type}",
                "connect Real/Float to Real/Float; integers, enumerations and Booleans may "
                "feed numbers of any type; String, Binary and Clock variables are not coupled"))
            return
        out_shape, in_shape = self.shape(src, out_var.name), self.shape(dst, in_var.name)
        if out_shape != in_shape:
            self._problems.append(source.problem(
                f"shape mismatch: {output} is {_shape_text(out_shape)}, {input} is "
                f"{_shape_text(in_shape)}",
                "connect arrays of the same dimensions (set the structural parameters that "
                "size them to match)"))
            return
        scale, shift = 1.0, 0.0
        if out_var.type in FLOAT_TYPES and in_var.type in FLOAT_TYPES and convert_units:
            units = conversion(src_fmu.unit_of(out_var.name), dst_fmu.unit_of(in_var.name))
            if units is None:
                self._problems.append(source.problem(
                    f"unit mismatch: {output} is in {out_var.unit}, {input} is in {in_var.unit}"
                    ", which measure different quantities",
                    "connect variables of the same physical quantity"))
                return
            scale, shift = units
        for _, _, data in self.graph.in_edges(dst, data=True):
            if data["input"] == in_var.name:
                self._problems.append(source.problem(
                    f"input {input} is fed twice: already by {data['source_instance']}."
                    f"{data['output']}" + _at(data["where"]),
                    "an input takes exactly one connection; remove one of them"))
                return
        self.graph.add_edge(src, dst, output=out_var.name, input=in_var.name,
                            scale=scale * factor, shift=scale * offset + shift,
                            source_instance=src, where=source,
                            transform=(factor, offset, convert_units))

    # -- reading ------------------------------------------------------------------------------
    @property
    def instances(self) -> list[str]:
        """Instance names in declaration order."""
        return sorted(self.graph.nodes, key=lambda n: self.graph.nodes[n]["order"])

    def __contains__(self, instance: object) -> bool:
        return instance in self.graph

    def fmu(self, instance: str) -> FMU:
        return self.graph.nodes[instance]["fmu"]

    def parameters(self, instance: str) -> dict[str, Any]:
        """The parameters and start values ``instance`` is given (a copy)."""
        return dict(self.graph.nodes[instance]["parameters"])

    def scale(self, instance: str) -> str:
        """The scale ``instance`` models (``SCALES``)."""
        return self.graph.nodes[instance]["scale"]

    def cost(self, instance: str) -> float:
        """The relative cost of a step of ``instance`` declared for partitioning."""
        return self.graph.nodes[instance]["cost"]

    def feeding(self, instance: str) -> list[str]:
        """The other instances whose outputs feed ``instance``'s inputs."""
        return sorted({s for s, _ in self.graph.in_edges(instance) if s != instance},
                      key=self._order)

    def _order(self, instance: str) -> int:
        return self.graph.nodes[instance]["order"]

    def shape(self, instance: str, variable: str) -> tuple[int, ...]:
        """The shape of ``instance.variable`` (``()``: a scalar), sized by the instance's
        structural parameters."""
        node = self.graph.nodes[instance]
        return node["fmu"].shape(variable, node["parameters"])

    def interface(self, instance: str) -> str | None:
        """The FMU interface ``instance`` runs (None: the FMU's default)."""
        return self.graph.nodes[instance]["interface"]

    def solver(self, instance: str) -> Any:
        """How a model exchange ``instance`` is integrated (None: the default solver)."""
        return self.graph.nodes[instance]["solver"]

    def isolation(self, instance: str) -> Isolation | None:
        """Where ``instance`` was asked to run (None: in the master's process)."""
        return self.graph.nodes[instance]["isolation"]

    def connections(self, declared: bool = False) -> list[Connection]:
        """Every connection, ordered by target instance order then input name (``declared``:
        in the order they were connected)."""
        edges = [Connection(s, d["output"], t, d["input"], d["scale"], d["shift"],
                            d["transform"])
                 for s, t, d in self.graph.edges(data=True)]
        if declared:
            return edges
        order = {n: self.graph.nodes[n]["order"] for n in self.graph}
        return sorted(edges, key=lambda c: (order[c.target], c.input))

    def unconnected_inputs(self) -> list[str]:
        """``instance.input`` for every input nothing feeds (it keeps its start value)."""
        fed = {(c.target, c.input) for c in self.connections()}
        return [f"{name}.{v.name}" for name in self.instances
                for v in self.fmu(name).variables.values()
                if v.causality == "input" and (name, v.name) not in fed]

    def variable_graph(self) -> nx.DiGraph:
        """Variables as nodes: connections, plus direct feed-through inside each FMU."""
        graph = nx.DiGraph()
        for c in self.connections():
            graph.add_edge((c.source, c.output), (c.target, c.input))
        for name in self.instances:
            for output, inputs in self.fmu(name).dependencies.items():
                for input_name in inputs:
                    graph.add_edge((name, input_name), (name, output))
        return graph

    def algebraic_loops(self) -> list[list[str]]:
        """Cycles through direct feed-through, as lists of ``instance.variable``."""
        graph = self.variable_graph()
        loops = []
        for component in nx.strongly_connected_components(graph):
            if len(component) > 1:
                cycle = nx.find_cycle(graph.subgraph(component))
                loops.append([f"{a}.{b}" for (a, b), _ in cycle])
        return sorted(loops)

    def gauss_seidel_order(self) -> list[str]:
        """Instances so that each one runs after the instances feeding it, where possible.

        Groups of instances that feed each other in a cycle run in data-flow order. Inside such
        a group, an instance whose outputs depend directly on an input (ModelStructure
        ``dependencies``) runs after the instance feeding that input, so that those outputs are
        computed from the values of the current step; only what is left of a cycle is broken
        by declaration order (the instance declared first runs first, its inputs from the
        group hold the previous step's values).
        """
        order = {n: self.graph.nodes[n]["order"] for n in self.graph}
        direct = [(c.source, c.target) for c in self.connections()
                  if any(c.input in inputs for inputs in self.fmu(c.target).dependencies.values())]
        sequence = []
        for group in _in_data_flow_order(nx.DiGraph(self.graph), order):
            if len(group) == 1:
                sequence.extend(group)
                continue
            members = set(group)
            inside = nx.DiGraph()
            inside.add_nodes_from(group)
            inside.add_edges_from((s, t) for s, t in direct if s in members and t in members)
            for inner in _in_data_flow_order(inside, order):
                sequence.extend(inner)
        return sequence

    def check(self) -> list[Problem]:
        """Every problem found while building (empty: the graph can run)."""
        problems = list(self._problems)
        if not self.graph:
            problems.append(Problem("no instances declared",
                                    hint="declare at least one instance of an FMU"))
        return problems

    def warnings(self) -> list[str]:
        """Things that can run but deserve a look: unconnected inputs, algebraic loops."""
        notes = [f"algebraic loop (broken by a one-step delay): {' -> '.join(loop)}"
                 for loop in self.algebraic_loops()]
        return notes

    def validate(self) -> None:
        """Raise ``ScenarioError`` with every problem, if there is any."""
        problems = self.check()
        if problems:
            raise ScenarioError(problems)

    # -- internals ----------------------------------------------------------------------------
    def _check_start_value(self, instance: str, name: str, value: Any,
                           source: Source) -> Problem | None:
        fmu: FMU = self.graph.nodes[instance]["fmu"]
        var = fmu.variables.get(name)
        if var is None:
            settable = [v.name for v in fmu.variables.values()
                        if v.causality in ("parameter", "input")]
            return source.problem(
                f"the FMU {fmu.model_name} of '{instance}' has no variable '{name}'"
                + _suggest(name, settable), f"settable: {', '.join(settable)}")
        if var.causality not in ("parameter", "input", "structuralParameter") and \
                var.initial not in ("exact", "approx"):
            return source.problem(
                f"'{instance}.{name}' is {var.causality} and cannot be set",
                "set parameters, inputs or variables with a start value")
        return value_problem(f"{instance}.{name}", var, value, source,
                             shape=fmu.shape(name, self.graph.nodes[instance]["parameters"]),
                             fmi3=fmu.fmi3)


def value_problem(port: str, var: Variable, value: Any, source: Source, *,
                  shape: tuple[int, ...] = (), fmi3: bool = False) -> Problem | None:
    """Why ``value`` cannot be set on ``var`` (type; an array's ``shape``; each value's
    finiteness, integer range, declared bounds, enumeration items); None when it can."""
    if var.dimensions:
        try:
            values = np.asarray(value, dtype=object)
        except ValueError:
            values = np.empty(0, dtype=object)
        if values.shape != shape:
            return source.problem(
                f"'{port}' is an array of shape {_shape_text(shape)}, got {value!r}",
                f"give a list of {_shape_text(shape)} values")
        items = list(values.flat)
    else:
        items = [value]
    for item in items:
        problem = _scalar_problem(port, var, item, source, fmi3)
        if problem:
            return problem
    return None


def _scalar_problem(port: str, var: Variable, value: Any, source: Source, fmi3: bool
                    ) -> Problem | None:
    expected = ((int, float) if var.type in FLOAT_TYPES else (bool,) if var.type == BOOLEAN
                else (str,) if var.type == STRING else (bytes, str) if var.type == "Binary"
                else (int,))
    if isinstance(value, bool) and var.type != BOOLEAN or not isinstance(value, expected):
        return source.problem(f"'{port}' is {var.type}, got {type(value).__name__} {value!r}",
                              f"give a {var.type} value")
    try:
        finite = math.isfinite(float(value)) if var.type in FLOAT_TYPES else True
    except OverflowError:
        finite = False
    if not finite:
        return source.problem(f"'{port}' must be a finite number, got {str(value)[:20]}",
                              ".inf, .nan and numbers beyond ±1.8e308 are not values")
    limits = _integer_range(var.type, fmi3)
    if limits is not None and not limits[0] <= value <= limits[1]:
        return source.problem(f"'{port}' = {str(value)[:20]} does not fit the FMU's {limits[2]}",
                              f"give a value from {limits[0]} to {limits[1]}")
    if var.type == ENUMERATION and var.items and value not in {v for v, _ in var.items}:
        return source.problem(f"'{port}' = {value} is not a value of its enumeration",
                              "one of " + ", ".join(f"{v} ({n})" for v, n in var.items))
    if var.type in FLOAT_TYPES or var.type in INT_TYPES and var.type != BOOLEAN:
        low = -math.inf if var.minimum is None else var.minimum
        high = math.inf if var.maximum is None else var.maximum
        if not low <= value <= high:
            return source.problem(f"'{port}' = {value:g} is outside [{low:g}, {high:g}], the "
                                  "range the FMU declares", "give a value in that range")
    return None


def _in_data_flow_order(graph: nx.DiGraph, order: dict[str, int]) -> list[list[str]]:
    """The strongly connected groups of ``graph`` in topological order, each in declaration
    order; groups that do not depend on each other in declaration order."""
    condensed = nx.condensation(graph)
    groups: dict[int, list[str]] = {}
    for node, group in condensed.graph["mapping"].items():
        groups.setdefault(group, []).append(node)
    sequence = nx.lexicographical_topological_sort(
        condensed, key=lambda g: min(order[n] for n in groups[g]))
    return [sorted(groups[g], key=order.get) for g in sequence]


def _integer_range(kind: str, fmi3: bool) -> tuple[int, int, str] | None:
    """The values an integer variable of type ``kind`` holds, and the type's name: FMI 2
    Integer and Enumeration are 32-bit; FMI 3 has IntN and UIntN, Enumeration is Int64."""
    if kind in (INTEGER, ENUMERATION) and not fmi3:
        return -2**31, 2**31 - 1, "32-bit Integer"
    c_type = "Int64" if kind == ENUMERATION else kind
    if c_type not in FMI3_INT_TYPES:
        return None
    bits = int(c_type.removeprefix("U").removeprefix("Int"))
    if c_type.startswith("U"):
        return 0, 2**bits - 1, c_type
    return -2**(bits - 1), 2**(bits - 1) - 1, c_type


def _types_compatible(source: str, target: str) -> bool:
    if source not in COUPLED_TYPES or target not in COUPLED_TYPES:
        return False
    return (source in FLOAT_TYPES and target in FLOAT_TYPES) or source in INT_TYPES


def _shape_text(shape: tuple[int, ...]) -> str:
    return "a scalar" if not shape else "[" + ", ".join(map(str, shape)) + "]"


def _suggest(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _at(source: Source) -> str:
    if source.line:
        return f" (line {source.line})"
    return ""
