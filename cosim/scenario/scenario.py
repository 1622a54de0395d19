"""Scenario files: what to couple and run, described in YAML (``docs/scenario-format.md``).

``load_scenario(path)`` reads and checks the file itself (keys, types, times) and returns a
frozen ``Scenario`` of typed values (``cosim.master.description``: its ``Settings`` made once from
the file, ``FmuSource``s, ``Parallel``; the YAML itself is read by ``cosim.scenario.yaml_file``);
``build(scenario)`` opens the FMUs, builds the ``CouplingGraph``, checks everything against the
FMUs' model descriptions (``cosim.scenario.checks``) and completes the settings with what only
the FMUs tell (the variables ``*`` records, how each is reduced). Both collect every problem
with its file, line and key in one ``Problems`` collector and raise one ``ScenarioError``;
nothing here runs a simulation.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosim.coupling.graph import CouplingGraph
from cosim.errors import CosimError, FMUError, Problem, Problems, ScenarioError, Source, line_of
from cosim.fmi.measured import Table, read_measured, source_fmu
from cosim.master.description import (
    Event,
    FmuSource,
    Parallel,
    Settings,
)
from cosim.scenario import checks
from cosim.scenario.credibility import check_credibility
from cosim.scenario.criteria import Criterion, parse_criteria
from cosim.scenario.decimation import check_reduce, modes_by_variable
from cosim.scenario.sections import (
    InstanceSpec,
    SectionChecker,
    check_checkpoint,
    check_connections,
    check_events,
    check_fmus,
    check_instance_steps,
    check_instances,
    check_isolation,
    check_parallel,
    check_patient,
    check_record,
    check_simulation,
)
from cosim.scenario.yaml_file import MAX_BYTES, read_yaml

VERSION = 1
SECTIONS = {
    "version": "format version (1)",
    "name": "a short title",
    "description": "what the scenario tests",
    "fmus": "FMU files or library models by key",
    "instances": "FMU instances by name",
    "connections": "'a.output -> b.input' lines",
    "simulation": "start, stop, step, algorithm, adaptive, iteration",
    "record": "what to record",
    "events": "timed changes",
    "criteria": "acceptance criteria",
    "cohort": "virtual patients or a sweep",
    "plot": "signals to plot",
    "parallel": "how to split work over MPI ranks",
    "isolation": "where FMUs run: none (in cosim's process) or process (a child process each)",
    "checkpoint": "save the run's state every so many seconds of simulated time",
    "credibility": "question of interest, context of use, model influence, decision consequence",
    "measured": "time series from CSV or HDF5 files, as source instances",
    "patient": "a pseudonymous patient identifier (no name, no record number)",
    "fit": "parameters to estimate from measured data (cosim fit)",
}


@dataclass(frozen=True)
class Scenario:
    """A checked scenario file; paths resolved, nothing loaded yet."""

    file: Path | None
    text: str
    name: str
    description: str
    fmus: dict[str, FmuSource]
    instances: dict[str, InstanceSpec]
    connections: list[tuple[str, str, Source]]
    settings: Settings  # all but what needs the FMUs: build() adds the variables recorded
    record_patterns: list[tuple[str, Source]]
    events: list[tuple[Event, Source]]
    criteria: list[Criterion]
    cohort: dict[str, Any] | None  # the cohort mapping, checked (cosim.scenario.cohort samples it)
    plot: list[str]
    parallel: Parallel
    lines: dict[tuple, int] = field(repr=False, default_factory=dict)
    checkpoint_every: float | None = None  # s of simulated time between two checkpoints
    record_reduce: list[tuple[str, str, tuple]] = field(default_factory=list)  # (key, mode,
    # path): record.reduce (cosim.scenario.decimation)
    transforms: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (output,
    # input) -> factor, offset, convert_units of a connection written as a mapping
    sha256: str = ""  # of the text (a file's bytes: read as they are, no newline changes)
    measured: dict[str, Table] = field(default_factory=dict)  # source name -> its data
    patient: str = ""  # pseudonymous identifier
    fit: dict[str, Any] | None = None  # the fit section, checked by cosim.twins.fit

    def source(self, *path) -> Source:
        return Source(str(self.file) if self.file else None, line_of(self.lines, path),
                      ".".join(str(p) for p in path) or None)


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file (without opening FMUs); an SSP archive:
    ``cosim.scenario.ssp.load_scenario_or_ssp``."""
    path = Path(path)
    if not path.exists():
        raise ScenarioError(Problem("no such scenario file", file=str(path)))
    if not path.is_file():
        raise ScenarioError(Problem("not a regular file", file=str(path),
                                    hint="give the path of a scenario .yaml file"))
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ScenarioError(Problem(
                f"the file holds {size:,} bytes, more than the limit of {MAX_BYTES:,}",
                file=str(path), hint="a scenario is a short text; put member tables in a "
                                     "CSV file (cohort: {method: table})"))
        text = path.read_bytes().decode("utf-8")  # as it is: its hash is provenance
    except UnicodeDecodeError as error:
        raise ScenarioError(Problem(f"not UTF-8 text (byte {error.start})", file=str(path),
                                    hint="save the scenario as UTF-8 text")) from None
    except OSError as error:
        raise ScenarioError(Problem(f"cannot read the file: {error.strerror}",
                                    file=str(path))) from None
    return parse_scenario(text, path)


def parse_scenario(text: str, path: Path | None = None, *, base: Path | None = None,
                   lines: Mapping[tuple, int] | None = None) -> Scenario:
    """Check a scenario given as text; ``path`` locates errors and relative FMU paths.

    A scenario built in Python (``cosim.api``) gives the folder its relative paths start from
    (``base``) and the line of its script where each key was given (``lines``): errors then
    point into the script, not into the YAML text made from it."""
    file = str(path) if path else None
    data, text_lines = read_yaml(text, file)
    lines = text_lines if lines is None else dict(lines)
    check = SectionChecker(file, lines)
    if not isinstance(data, Mapping):
        raise ScenarioError(Problem("a scenario is a YAML mapping of sections", file=file,
                                    hint="start with 'version: 1', then fmus:, instances:, …"))
    for key in data:
        if key not in SECTIONS:
            check.report((key,), f"unknown section '{key}'",
                         "sections: " + ", ".join(SECTIONS))
    if data.get("version") != VERSION:
        check.report(("version",), f"version must be {VERSION}, got {data.get('version')!r}",
                     "write 'version: 1' at the top")
    base = base or (path.parent if path else Path.cwd())

    fmus = check_fmus(data.get("fmus"), base, check)
    simulation = check_simulation(data.get("simulation"), check)
    settings = Settings(*simulation[:4], call_timeout=simulation[4]) if simulation else \
        Settings(0.0, 1.0, 1.0)  # the time grid the other sections are checked against
    isolation = dataclasses.replace(check_isolation(data.get("isolation"), check),
                                    timeout=settings.call_timeout)
    instances = check_instances(data.get("instances"), fmus, isolation, check)
    rates = check_instance_steps(data.get("instances"), simulation, check)
    connections, transforms = check_connections(data.get("connections"), check)
    record_patterns, record_interval = check_record(data.get("record"), settings, check)
    record_reduce = check_reduce(data.get("record").get("reduce") if isinstance(
        data.get("record"), Mapping) else None, check.report)
    events = check_events(data.get("events"), settings if simulation else None, check)
    criteria = parse_criteria(data.get("criteria"), check.within("criteria"))
    cohort = data.get("cohort")
    if cohort is not None:
        from cosim.scenario.cohort import check_cohort

        check_cohort(cohort, base, check)
    plot = data.get("plot") or []
    if not isinstance(plot, list) or not all(isinstance(p, str) for p in plot):
        check.report(("plot",), "plot is a list of 'instance.variable'", "e.g. [cell.V]")
        plot = []
    parallel = check_parallel(data.get("parallel"), check)
    checkpoint_every = check_checkpoint(data.get("checkpoint"), check)
    check_credibility(data.get("credibility"), check.report)
    measured = read_measured(data.get("measured"), base, check.within("measured"),
                             (settings.start, settings.stop) if simulation else None)
    for name in set(measured) & set(instances):
        check.report(("measured", name), f"'{name}' is also an instance",
                     "give measured sources and instances different names")
    patient = check_patient(data.get("patient"), check)
    fit = data.get("fit")
    if fit is not None and not isinstance(fit, Mapping):
        check.report(("fit",), "fit is a mapping", "parameters:, targets:, optimiser:")
    check.raise_any()
    start, stop, step, algorithm, call_timeout, adaptive, iteration = simulation
    settings = Settings(start, stop, step, algorithm, record_interval=record_interval,
                        events=tuple(e for e, _ in events), call_timeout=call_timeout,
                        adaptive=adaptive, iteration=iteration, rates=rates)
    return Scenario(file=path, text=text, name=str(data.get("name", path.stem if path else "")),
                    description=str(data.get("description", "")), fmus=fmus,
                    instances=instances, connections=connections, settings=settings,
                    record_patterns=record_patterns, record_reduce=record_reduce,
                    transforms=transforms,
                    events=events, criteria=criteria,
                    cohort=cohort, plot=plot, parallel=parallel, lines=lines,
                    checkpoint_every=checkpoint_every, measured=measured, patient=patient,
                    fit=fit,
                    sha256=hashlib.sha256(text.encode("utf-8")).hexdigest())


def build(scenario: Scenario) -> tuple[CouplingGraph, Settings]:
    """Open the FMUs, build and check the coupling graph; returns it with the full settings."""
    problems = Problems(str(scenario.file) if scenario.file else None, scenario.lines)
    graph = CouplingGraph()
    paths: dict[str, Path] = {}
    for key, source in scenario.fmus.items():
        try:
            paths[key] = source.path()
        except CosimError as error:
            problems.report(("fmus", key), str(error))
    for spec in scenario.instances.values():
        if spec.fmu not in paths:
            continue
        try:
            graph.add_instance(spec.name, paths[spec.fmu], scale=spec.scale,
                               parameters=spec.parameters, cost=spec.cost, source=spec.source,
                               isolation=spec.isolation, interface=spec.interface,
                               solver=spec.solver)
        except FMUError as error:
            for p in error.problems:
                problems.append(Problem(p.message, file=spec.source.file, line=spec.source.line,
                                        key=f"fmus.{spec.fmu}", hint=p.hint))
    for name, table in scenario.measured.items():
        graph.add_instance(name, source_fmu(table), source=scenario.source("measured", name))
    checks.check_pins(scenario, graph, paths, problems)
    if scenario.checkpoint_every:
        checks.check_checkpoint(scenario, graph, problems)
    if not problems:
        checks.check_binaries(scenario, graph, problems)
    problems.raise_any()
    for output, input_, source in scenario.connections:
        graph.connect(output, input_, source=source,
                      **scenario.transforms.get((output, input_), {}))
    problems.extend(graph.check())
    record = checks.expand_record(scenario, graph, problems)
    checks.check_measured_record(scenario, record, problems)
    for event, source in scenario.events:
        checks.check_event(event, source, graph, problems)
    for i, criterion in enumerate(scenario.criteria):
        for signal in criterion.signals():
            checks.require_signal(signal, scenario.source("criteria", i, "signal"), graph,
                                  record, problems)
        if criterion.reference:
            checks.check_reference(criterion.reference, scenario.source("criteria", i,
                                                                        "reference"),
                                   scenario.measured, problems)
    for i, signal in enumerate(scenario.plot):
        checks.require_signal(signal, scenario.source("plot", i), graph, record, problems)
    if scenario.cohort is not None:
        checks.check_cohort_parameters(scenario, graph, problems)
    reduce = _check_reduce_names(scenario, graph, problems)
    problems.raise_any()
    settings = dataclasses.replace(scenario.settings,
                                   record={k: tuple(v) for k, v in record.items() if v},
                                   record_reduce=modes_by_variable(reduce, record, lambda i, v:
                                   graph.fmu(i).variables[v].variability == "discrete"))
    return graph, settings


def _check_reduce_names(scenario: Scenario, graph: CouplingGraph, problems: list[Problem]
                        ) -> list[tuple[str, str]]:
    """``record.reduce`` keys must name instances and variables that exist."""
    found = []
    for key, mode, path in scenario.record_reduce:
        instance, _, variable = key.partition(".")
        if variable and instance not in graph:
            problems.append(scenario.source(*path).problem(
                f"unknown instance '{instance}'", f"instances: {', '.join(graph.instances)}"))
        elif variable not in ("", "*") and variable not in graph.fmu(instance).variables:
            problems.append(scenario.source(*path).problem(
                f"the FMU {graph.fmu(instance).model_name} of '{instance}' has no variable "
                f"'{variable}'", f"`cosim info {graph.fmu(instance).path.name}` lists them"))
        else:
            found.append((key, mode))
    return found

