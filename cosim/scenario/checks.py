"""A scenario checked against its FMUs: what ``scenario.build`` finds once the FMUs are open.

Pinned SHA-256, binaries for this platform, record patterns, events (variables, values, what
may change), signals of criteria and plots, the variables a cohort sets. With the checks the
coupling graph makes itself (``CouplingGraph.connect``/``add_instance``: ports, types, units,
values) they are the one collector of problems that ``cosim run`` and ``cosim check`` share.
Every problem carries the scenario line that caused it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosim.coupling.graph import CouplingGraph, parse_port, value_problem
from cosim.errors import Problem, Source
from cosim.fmi.fmu_file import CO_SIMULATION, COUPLED_TYPES, binary_problem, host_platform
from cosim.master.description import Event

if TYPE_CHECKING:
    from cosim.scenario.scenario import Scenario


def check_pins(scenario: Scenario, graph: CouplingGraph, paths: dict[str, Path],
               problems: list[Problem]) -> None:
    """Every pinned SHA-256 against the FMU as read (the bytes later extracted and run)."""
    for key, source in scenario.fmus.items():
        pin = source.sha256
        if pin is None or key not in paths:
            continue
        users = [s.name for s in scenario.instances.values() if s.fmu == key
                 and s.name in graph]
        if users:
            actual = graph.fmu(users[0]).sha256
        else:
            with open(paths[key], "rb") as stream:
                actual = hashlib.file_digest(stream, "sha256").hexdigest()
        if actual != pin:
            problems.append(scenario.source("fmus", key, "sha256").problem(
                f"SHA-256 mismatch for {paths[key]}: the scenario pins {pin}, the file has "
                f"{actual}", "the FMU is not the one pinned: get the right file, or update the "
                "pin if this version was checked"))


def check_binaries(scenario: Scenario, graph: CouplingGraph, problems: list[Problem]) -> None:
    """Every FMU has a binary for this platform, named after the modelIdentifier of the
    interface its instances run."""
    seen = set()
    for spec in scenario.instances.values():
        interface = graph.interface(spec.name) if spec.name in graph else None
        if (spec.fmu, interface) in seen or spec.name not in graph:
            continue
        seen.add((spec.fmu, interface))
        fmu = graph.fmu(spec.name)
        problem = binary_problem(fmu, host_platform(fmu), interface)
        if problem:
            problems.append(Problem(problem.message, file=spec.source.file,
                                    line=spec.source.line, key=f"fmus.{spec.fmu}",
                                    hint=problem.hint))


def check_checkpoint(scenario: Scenario, graph: CouplingGraph, problems: list[Problem]) -> None:
    """A checkpoint can hold every instance: co-simulation FMUs (FMI 2.0 or 3.0) that
    serialise their state (``cosim.running.checkpoint``)."""
    unable = sorted(name for name in graph.instances if not graph.fmu(name).can_serialize_state)
    if unable:
        problems.append(scenario.source("checkpoint").problem(
            f"these instances' FMUs cannot save their state, so no checkpoint can hold them: "
            f"{', '.join(unable)} (canSerializeFMUstate is false)",
            "remove 'checkpoint:' or use FMUs that can serialise their state"))
    other = sorted(name for name in graph.instances
                   if graph.interface(name) not in (None, CO_SIMULATION))
    if other:
        problems.append(scenario.source("checkpoint").problem(
            f"checkpoints hold co-simulation instances only so far: "
            f"{', '.join(other)} (model exchange: the solver's state is not saved)",
            "remove 'checkpoint:' for this scenario"))


def check_cohort_parameters(scenario: Scenario, graph: CouplingGraph,
                             problems: list[Problem]) -> None:
    """What a cohort sets: settable, numeric variables of declared instances."""
    from cosim.scenario.cohort import sample_cohort

    base = scenario.file.parent if scenario.file else Path.cwd()
    names = sample_cohort(scenario.cohort, base).names  # parse_scenario checked the mapping
    for name in names:
        where = (("cohort", "table") if scenario.cohort.get("method") == "table"
                 else ("cohort", "parameters", name))
        source = scenario.source(*where)
        instance, variable = parse_port(name) or (name, "")
        if instance not in graph:
            problems.append(source.problem(f"the cohort sets '{name}': unknown instance "
                                           f"'{instance}'",
                                           f"instances: {', '.join(graph.instances)}"))
            continue
        fmu = graph.fmu(instance)
        var = fmu.variables.get(variable)
        if var is None:
            problems.append(source.problem(
                f"the cohort sets '{name}': the FMU {fmu.model_name} has no variable "
                f"'{variable}'", f"`cosim info {fmu.path.name}` lists its variables"))
        elif var.type not in COUPLED_TYPES or var.dimensions or (
                var.causality not in ("parameter", "input")
                and var.initial not in ("exact", "approx")):
            problems.append(source.problem(
                f"the cohort sets '{name}', a {var.causality} {var.type} that cannot take "
                "a drawn number", "a cohort sets numeric parameters, inputs or start values"))


def expand_record(scenario: Scenario, graph: CouplingGraph, problems: list[Problem]
                   ) -> dict[str, list[str]]:
    record: dict[str, list[str]] = {name: [] for name in graph.instances}
    for pattern, source in scenario.record_patterns:
        instance, variable = parse_port(pattern)
        names = graph.instances if instance == "*" else [instance]
        if instance != "*" and instance not in graph:
            problems.append(source.problem(f"unknown instance '{instance}'",
                                           f"instances: {', '.join(graph.instances)}"))
            continue
        for name in names:
            fmu = graph.fmu(name)
            if variable == "*":
                chosen = [v.name for v in fmu.variables.values() if v.causality == "output"
                          and v.type in COUPLED_TYPES]
            elif variable in fmu.variables:
                if fmu.variables[variable].type not in COUPLED_TYPES:
                    problems.append(source.problem(
                        f"'{pattern}' is a {fmu.variables[variable].type}; only numbers, "
                        "Booleans and enumerations are recorded"))
                    continue
                chosen = [variable]
            else:
                problems.append(source.problem(
                    f"the FMU {fmu.model_name} of '{name}' has no variable '{variable}'",
                    f"`cosim info {fmu.path.name}` lists its variables"))
                continue
            for v in chosen:
                if v not in record[name]:
                    record[name].append(v)
    return record


def check_measured_record(scenario: Scenario, record: dict[str, list[str]],
                          problems: list[Problem]) -> None:
    """A measured source's columns are recorded only when its data may be stored in full
    (``store: full``): a pattern naming one otherwise is refused, ``*`` leaves it out."""
    for name, table in scenario.measured.items():
        if table.store == "full":
            continue
        for pattern, source in scenario.record_patterns:
            if parse_port(pattern)[0] == name and record.get(name):
                problems.append(source.problem(
                    f"'{pattern}' would copy the measured data of '{name}' into the results, "
                    f"which its store: {table.store} forbids",
                    f"set measured.{name}.store: full to keep the data, or record the "
                    "instances it feeds"))
        record[name] = []


def check_reference(reference: str, source: Source, measured: Mapping[str, Any],
                    problems: list[Problem]) -> None:
    """A criterion's reference is a column of a measured source."""
    name, _, column = reference.partition(".")
    if name not in measured:
        problems.append(source.problem(
            f"'{name}' is not a measured source",
            f"measured sources: {', '.join(measured) or 'none (add a measured: section)'}"))
    elif column not in measured[name].columns:
        problems.append(source.problem(f"the measured source '{name}' has no column '{column}'",
                                       f"its columns: {', '.join(measured[name].columns)}"))


def require_signal(signal: str, source: Source, graph: CouplingGraph,
                    record: dict[str, list[str]], problems: list[Problem]) -> None:
    """A signal a criterion or plot needs: it must exist; it is recorded if it was not."""
    port = parse_port(signal)
    if port is None or port[0] not in graph:
        problems.append(source.problem(f"unknown signal '{signal}'",
                                       f"instances: {', '.join(graph.instances)}"))
        return
    instance, variable = port
    fmu = graph.fmu(instance)
    if variable not in fmu.variables:
        problems.append(source.problem(
            f"the FMU {fmu.model_name} of '{instance}' has no variable '{variable}'",
            f"`cosim info {fmu.path.name}` lists its variables"))
        return
    if variable not in record[instance]:
        record[instance].append(variable)


def check_event(event: Event, source: Source, graph: CouplingGraph,
                 problems: list[Problem]) -> None:
    if event.instance not in graph:
        problems.append(source.problem(f"unknown instance '{event.instance}'"))
        return
    fmu = graph.fmu(event.instance)
    fed = {c.input for c in graph.connections() if c.target == event.instance}
    for name in event.values:
        var = fmu.variables.get(name)
        if var is None:
            problems.append(source.problem(f"the FMU {fmu.model_name} of '{event.instance}' "
                                           f"has no variable '{name}'"))
        elif var.causality == "input" and name in fed:
            problems.append(source.problem(f"'{event.instance}.{name}' is fed by a connection",
                                           "an event may set unconnected inputs only"))
        elif not (var.causality == "input" or var.variability == "tunable"):
            problems.append(source.problem(
                f"'{event.instance}.{name}' cannot change during a run ({var.causality}, "
                f"{var.variability})", "events may set inputs and tunable parameters"))
        elif problem := value_problem(f"{event.instance}.{name}", var, event.values[name],
                                      source, shape=graph.shape(event.instance, name),
                                      fmi3=fmu.fmi3):
            problems.append(problem)


