"""The coupling graph: which FMU instances exist and which output feeds which input.

A ``CouplingGraph`` wraps a ``networkx.MultiDiGraph``: one node per instance (attributes
``fmu``, ``scale``, ``parameters``, ``cost``, ``isolation``), one edge per connection
``instance.output -> instance.input`` (attributes ``output``, ``input``, ``scale``, ``shift``:
the unit conversion ``input = scale * output + shift``). Users build it in Python
(``add_instance``, ``connect``) or from a scenario file (``cosim.scenario``); ``check()`` returns
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

from cosim.errors import Problem, ScenarioError
from cosim.fmu_file import (
    ENUMERATION,
    FMU,
    INT_TYPES,
    INTEGER,
    REAL,
    STRING,
    Variable,
    read_fmu,
)
from cosim.units import conversion

if TYPE_CHECKING:
    from cosim.isolation import Isolation

SCALES = ("cell", "tissue", "organ", "device", "other")


@dataclass(frozen=True)
class Source:
    """Where something was declared: a scenario file, line and key (all optional)."""

    file: str | None = None
    line: int | None = None
    key: str | None = None

    def problem(self, message: str, hint: str | None = None) -> Problem:
        return Problem(message, file=self.file, line=self.line, key=self.key, hint=hint)


@dataclass(frozen=True)
class Connection:
    """One checked edge: ``source.output -> target.input`` with its unit conversion."""

    source: str
    output: str
    target: str
    input: str
    scale: float = 1.0
    shift: float = 0.0

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
                     source: Source = Source(), isolation: Isolation | None = None) -> None:
        """Add an FMU instance; problems are kept for ``check()``. ``isolation``: where it
        runs (``cosim.isolation``; None: in the master's process)."""
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
        self.graph.add_node(name, fmu=fmu, scale=scale, parameters=dict(parameters or {}),
                            cost=float(cost), source=source, order=len(self.graph),
                            isolation=isolation)
        for parameter, value in (parameters or {}).items():
            problem = self._check_start_value(name, parameter, value, source)
            if problem:
                self._problems.append(problem)

    def connect(self, output: str, input: str, *, source: Source = Source()) -> None:
        """Connect ``"a.y"`` to ``"b.u"``; every mistake is kept for ``check()``."""
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
        if STRING in (out_var.type, in_var.type):
            self._problems.append(source.problem(
                f"{output} -> {input}: String variables cannot be connected",
                "connections carry numbers (Real, Integer, Boolean, Enumeration)"))
            return
        if not _types_compatible(out_var.type, in_var.type):
            self._problems.append(source.problem(
                f"type mismatch: {output} is {out_var.type}, {input} is {in_var.type}",
                "connect Real to Real; Integer and Boolean may feed Real or each other"))
            return
        scale, shift = 1.0, 0.0
        if out_var.type == REAL and in_var.type == REAL:
            factor = conversion(src_fmu.unit_of(out_var.name), dst_fmu.unit_of(in_var.name))
            if factor is None:
                self._problems.append(source.problem(
                    f"unit mismatch: {output} is in {out_var.unit}, {input} is in {in_var.unit}"
                    ", which measure different quantities",
                    "connect variables of the same physical quantity"))
                return
            scale, shift = factor
        for _, _, data in self.graph.in_edges(dst, data=True):
            if data["input"] == in_var.name:
                self._problems.append(source.problem(
                    f"input {input} is fed twice: already by {data['source_instance']}."
                    f"{data['output']}" + _at(data["where"]),
                    "an input takes exactly one connection; remove one of them"))
                return
        self.graph.add_edge(src, dst, output=out_var.name, input=in_var.name, scale=scale,
                            shift=shift, source_instance=src, where=source)

    # -- reading ------------------------------------------------------------------------------
    @property
    def instances(self) -> list[str]:
        """Instance names in declaration order."""
        return sorted(self.graph.nodes, key=lambda n: self.graph.nodes[n]["order"])

    def fmu(self, instance: str) -> FMU:
        return self.graph.nodes[instance]["fmu"]

    def isolation(self, instance: str) -> Isolation | None:
        """Where ``instance`` was asked to run (None: in the master's process)."""
        return self.graph.nodes[instance]["isolation"]

    def connections(self) -> list[Connection]:
        """Every connection, ordered by target instance order then input name."""
        edges = [Connection(s, d["output"], t, d["input"], d["scale"], d["shift"])
                 for s, t, d in self.graph.edges(data=True)]
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

        Cycles are broken by declaration order: inside a strongly connected group the instance
        declared first runs first, so its inputs from the group come from the previous step.
        """
        order = {n: self.graph.nodes[n]["order"] for n in self.graph}
        condensed = nx.condensation(nx.DiGraph(self.graph))
        members = condensed.graph["mapping"]
        groups: dict[int, list[str]] = {}
        for node, group in members.items():
            groups.setdefault(group, []).append(node)
        sequence = nx.lexicographical_topological_sort(
            condensed, key=lambda g: min(order[n] for n in groups[g]))
        return [n for g in sequence for n in sorted(groups[g], key=order.get)]

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
        if var.causality not in ("parameter", "input") and var.initial not in ("exact", "approx"):
            return source.problem(
                f"'{instance}.{name}' is {var.causality} and cannot be set",
                "set parameters, inputs or variables with a start value")
        return value_problem(f"{instance}.{name}", var, value, source)


def value_problem(port: str, var: Variable, value: Any, source: Source) -> Problem | None:
    """Why ``value`` cannot be set on ``var`` (type, finiteness, 32-bit range, declared bounds,
    enumeration items); None when it can."""
    expected = {"Real": (int, float), "Integer": (int,), "Enumeration": (int,),
                "Boolean": (bool,), "String": (str,)}[var.type]
    if isinstance(value, bool) and var.type != "Boolean" or not isinstance(value, expected):
        return source.problem(f"'{port}' is {var.type}, got {type(value).__name__} {value!r}",
                              f"give a {var.type} value")
    try:
        finite = math.isfinite(float(value)) if var.type == REAL else True
    except OverflowError:
        finite = False
    if not finite:
        return source.problem(f"'{port}' must be a finite number, got {str(value)[:20]}",
                              ".inf, .nan and numbers beyond ±1.8e308 are not values")
    if var.type in (INTEGER, ENUMERATION) and not -2**31 <= value < 2**31:
        return source.problem(f"'{port}' = {str(value)[:20]} does not fit the FMU's 32-bit "
                              "Integer", "give a value from -2147483648 to 2147483647")
    if var.type == ENUMERATION and var.items and value not in {v for v, _ in var.items}:
        return source.problem(f"'{port}' = {value} is not a value of its enumeration",
                              "one of " + ", ".join(f"{v} ({n})" for v, n in var.items))
    if var.type in (REAL, INTEGER, ENUMERATION):
        low = -math.inf if var.minimum is None else var.minimum
        high = math.inf if var.maximum is None else var.maximum
        if not low <= value <= high:
            return source.problem(f"'{port}' = {value:g} is outside [{low:g}, {high:g}], the "
                                  "range the FMU declares", "give a value in that range")
    return None


def _types_compatible(source: str, target: str) -> bool:
    return source == target or (source in INT_TYPES and target in (REAL, *INT_TYPES))


def _suggest(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _at(source: Source) -> str:
    if source.line:
        return f" (line {source.line})"
    return ""
