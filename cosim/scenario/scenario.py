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
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cosim.coupling.graph import SCALES, CouplingGraph, parse_port
from cosim.errors import CosimError, FMUError, Problem, Problems, ScenarioError, Source, line_of
from cosim.fmi.fmu_file import INTERFACES
from cosim.fmi.isolation import MODES, Isolation
from cosim.fmi.measured import Table, read_measured, source_fmu
from cosim.fmi.model_exchange import METHODS, Solver
from cosim.master.description import (
    CALL_TIMEOUT,
    ITERATION_METHODS,
    MAX_STEPS,
    Adaptive,
    Event,
    FmuSource,
    Iteration,
    Parallel,
    Settings,
    steps_between,
)
from cosim.master.master import ALGORITHMS
from cosim.scenario import checks
from cosim.scenario.credibility import check_credibility
from cosim.scenario.criteria import Criterion, parse_criteria
from cosim.scenario.decimation import check_reduce, modes_by_variable
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
_ARROW = re.compile(r"^\s*(\S+)\s*->\s*(\S+)\s*$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True)
class InstanceSpec:
    name: str
    fmu: str  # key in Scenario.fmus
    scale: str
    parameters: dict[str, Any]
    cost: float
    source: Source
    isolation: Isolation | None = None  # None: in cosim's process
    interface: str | None = None  # None: the FMU's co-simulation interface if it has one
    solver: Solver | None = None  # how a model exchange instance is integrated


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


# -- checking the file itself -----------------------------------------------------------------
class _Checker(Problems):
    """The problems of a scenario file, and the checks every section makes of its values."""

    def keys(self, data: Mapping, path: tuple, allowed: set[str]) -> None:
        """Report every key of ``data`` that is not ``allowed``."""
        for key in data:
            if key not in allowed:
                self.report(path + (key,), f"unknown key '{key}'",
                            f"allowed: {', '.join(sorted(allowed))}")

    def number(self, data: Mapping, path: tuple, default=None, positive=False) -> float | None:
        value = data.get(path[-1], default)
        if value is None:
            self.report(path, "missing", f"give {path[-1]} in seconds")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.report(path, f"must be a number, got {value!r}", "e.g. 0.001")
            return None
        try:
            finite = math.isfinite(float(value))
        except OverflowError:
            finite = False
        if not finite:
            self.report(path, f"must be a finite number of seconds, got {str(value)[:20]}",
                        "numbers beyond ±1.8e308 read as infinite; .inf and .nan are not times")
            return None
        if positive and value <= 0:
            self.report(path, f"must be positive, got {value:g}", "a step is > 0 seconds")
            return None
        return float(value)


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
    check = _Checker(file, lines)
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

    fmus = _check_fmus(data.get("fmus"), base, check)
    simulation = _check_simulation(data.get("simulation"), check)
    settings = Settings(*simulation[:4], call_timeout=simulation[4]) if simulation else \
        Settings(0.0, 1.0, 1.0)  # the time grid the other sections are checked against
    isolation = dataclasses.replace(_check_isolation(data.get("isolation"), check),
                                    timeout=settings.call_timeout)
    instances = _check_instances(data.get("instances"), fmus, isolation, check)
    rates = _check_instance_steps(data.get("instances"), simulation, check)
    connections, transforms = _check_connections(data.get("connections"), check)
    record_patterns, record_interval = _check_record(data.get("record"), settings, check)
    record_reduce = check_reduce(data.get("record").get("reduce") if isinstance(
        data.get("record"), Mapping) else None, check.report)
    events = _check_events(data.get("events"), settings if simulation else None, check)
    criteria = parse_criteria(data.get("criteria"), check.within("criteria"))
    cohort = data.get("cohort")
    if cohort is not None:
        from cosim.scenario.cohort import check_cohort

        check_cohort(cohort, base, check)
    plot = data.get("plot") or []
    if not isinstance(plot, list) or not all(isinstance(p, str) for p in plot):
        check.report(("plot",), "plot is a list of 'instance.variable'", "e.g. [cell.V]")
        plot = []
    parallel = _check_parallel(data.get("parallel"), check)
    checkpoint_every = _check_checkpoint(data.get("checkpoint"), check)
    check_credibility(data.get("credibility"), check.report)
    measured = read_measured(data.get("measured"), base, check.within("measured"),
                             (settings.start, settings.stop) if simulation else None)
    for name in set(measured) & set(instances):
        check.report(("measured", name), f"'{name}' is also an instance",
                     "give measured sources and instances different names")
    patient = _check_patient(data.get("patient"), check)
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


def _check_patient(section: Any, check: _Checker) -> str:
    """``patient: {id: P-0042}``: a pseudonym, checked to look like one (no spaces, short)."""
    if section is None:
        return ""
    ident = section.get("id") if isinstance(section, Mapping) else None
    if isinstance(section, Mapping):
        check.keys(section, ("patient",), {"id"})
    if not isinstance(ident, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", ident):
        check.report(("patient", "id"), f"a patient id is a pseudonym of up to 32 letters, "
                     f"digits, - and _, got {ident!r}",
                     "use a study code such as P-0042, never a name or a record number")
        return ""
    return ident


def _check_fmus(section: Any, base: Path, check: _Checker) -> dict[str, FmuSource]:
    """Where each FMU comes from (a file or a library model), by key, with its pin."""
    if not isinstance(section, Mapping) or not section:
        check.report(("fmus",), "missing or empty",
                     "map a key to an FMU file or library model, e.g. 'cell: cell'")
        return {}
    fmus = {}
    for key, value in section.items():
        pin = None
        if isinstance(value, Mapping):  # {file: …, sha256: …}
            check.keys(value, ("fmus", key), {"file", "sha256"})
            pin = value.get("sha256")
            if pin is not None:
                if isinstance(pin, str) and _SHA256.match(pin):
                    pin = pin.lower()
                else:
                    check.report(("fmus", key, "sha256"), "sha256 must be 64 hexadecimal "
                                 f"digits, got {pin!r}", "`cosim info FILE.fmu` prints it; "
                                 "quote it in YAML")
                    pin = None
            value = value.get("file")
            if not isinstance(value, str) or not value:
                check.report(("fmus", key, "file"), f"must be a file path or model name, got "
                             f"{value!r}", "e.g. {file: lead.fmu, sha256: <64 hex digits>}")
                continue
        if not isinstance(value, str) or not value:
            check.report(("fmus", key), f"must be a file path or model name, got {value!r}")
            continue
        if value.endswith(".fmu"):
            fmus[key] = FmuSource(file=(base / value).resolve(), sha256=pin)
            if not fmus[key].file.is_file():
                check.report(("fmus", key), f"FMU file not found: {fmus[key].file}",
                             "paths are relative to the scenario file's folder")
        else:
            from cosim.library.build import library_model_names

            names = library_model_names()
            if value not in names:
                check.report(("fmus", key), f"'{value}' is neither an .fmu file nor a model "
                             "of the library", f"library models: {', '.join(names)}")
            fmus[key] = FmuSource(model=value, sha256=pin)
    return fmus


def _check_checkpoint(section: Any, check: _Checker) -> float | None:
    """``checkpoint: {every: s}``: seconds of simulated time between two checkpoints."""
    if section is None:
        return None
    if not isinstance(section, Mapping):
        check.report(("checkpoint",), "must be a mapping", "checkpoint: {every: 10}")
        return None
    check.keys(section, ("checkpoint",), {"every"})
    return check.number(section, ("checkpoint", "every"), positive=True)


def _check_isolation(section: Any, check: _Checker) -> Isolation:
    """``isolation: process`` or ``{default: process, memory: MB}``: the default of every
    instance, and the memory of child processes (their call limit is simulation.call_timeout)."""
    if section is None:
        return Isolation()
    if isinstance(section, str):
        section = {"default": section}
        where: tuple = ("isolation",)
    elif isinstance(section, Mapping):
        check.keys(section, ("isolation",), {"default", "memory"})
        where = ("isolation", "default")
    else:
        check.report(("isolation",), f"must be none, process or a mapping, got {section!r}",
                     "isolation: {default: process, memory: 4000}")
        return Isolation()
    mode = section.get("default", "none")
    if mode not in MODES:
        check.report(where, f"unknown isolation {mode!r}", _MODES_HINT)
        mode = "none"
    limits = {}
    for key, name, example in (("memory", "memory_mb", "memory: 4000 (MB per child process)"),):
        value = section.get(key)
        if key not in section:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0 < value < float("inf")):
            check.report(("isolation", key), f"{key} must be a positive number, got {value!r}",
                         example)
        else:
            limits[name] = float(value)
    return Isolation(mode=mode, **limits)


_MODES_HINT = "none (in cosim's process, the default) or process (a child process)"


def _check_instances(section: Any, fmus: dict[str, Path], isolation: Isolation,
                     check: _Checker) -> dict[str, InstanceSpec]:
    if not isinstance(section, Mapping) or not section:
        check.report(("instances",), "missing or empty", "declare 'name: {fmu: key}' entries")
        return {}
    allowed = {"fmu", "scale", "parameters", "cost", "description", "isolation", "interface",
               "solver", "step"}
    out = {}
    for name, spec in section.items():
        path = ("instances", name)
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            check.report(path, f"instance name {name!r} is not an identifier",
                         "use letters, digits and _ (a dot separates instance and variable)")
            continue
        if isinstance(spec, str):
            spec = {"fmu": spec}
        if not isinstance(spec, Mapping):
            check.report(path, "must be a mapping", "e.g. 'pacer: {fmu: generator}'")
            continue
        check.keys(spec, path, allowed)
        fmu = spec.get("fmu")
        if fmu not in fmus:
            check.report(path + ("fmu",), f"unknown FMU key {fmu!r}",
                         f"keys under fmus: {', '.join(map(str, fmus)) or 'none'}")
        scale = spec.get("scale", "other")
        if scale not in SCALES:
            check.report(path + ("scale",), f"unknown scale {scale!r}",
                         f"one of {', '.join(SCALES)}")
        parameters = spec.get("parameters") or {}
        if not isinstance(parameters, Mapping):
            check.report(path + ("parameters",), "must be a mapping of name: value")
            parameters = {}
        cost = spec.get("cost", 1.0)
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or cost <= 0:
            check.report(path + ("cost",), f"cost must be a positive number, got {cost!r}",
                         "a relative cost estimate per step, e.g. 1 or 25")
            cost = 1.0
        mode = spec.get("isolation", isolation.mode)
        if mode not in MODES:
            check.report(path + ("isolation",), f"unknown isolation {mode!r}", _MODES_HINT)
            mode = isolation.mode
        interface = spec.get("interface")
        if interface is not None and interface not in INTERFACES:
            check.report(path + ("interface",), f"unknown interface {interface!r}",
                         f"one of {', '.join(INTERFACES)}")
            interface = None
        solver = _check_solver(spec.get("solver"), path + ("solver",), check)
        out[name] = InstanceSpec(name, fmu, scale, dict(parameters), float(cost),
                                 check.source(*path), dataclasses.replace(isolation, mode=mode),
                                 interface, solver)
    return out


def _check_instance_steps(section: Any, simulation: tuple | None, check: _Checker
                          ) -> dict[str, int]:
    """``instances.<name>.step``: an instance's own communication step (cosim.master.multirate),
    a whole multiple of ``simulation.step``; returns instance -> multiple (> 1 only)."""
    rates: dict[str, int] = {}
    if not isinstance(section, Mapping):
        return rates
    for name, spec in section.items():
        if not isinstance(spec, Mapping) or "step" not in spec:
            continue
        path = ("instances", name, "step")
        own = check.number(spec, path, positive=True)
        if own is None or simulation is None:
            continue
        step, iteration = simulation[2], simulation[6]
        multiple = round(own / step)
        if multiple < 1 or not math.isclose(own, multiple * step, rel_tol=1e-9):
            check.report(path, f"{own:g} s is not a whole multiple of simulation.step "
                         f"({step:g} s)", "simulation.step is the base step, the fastest "
                         f"instance's: use {max(1, multiple) * step:g} s, or a smaller "
                         "simulation.step")
            continue
        if iteration is not None and multiple > 1:
            check.report(path, "an instance's own step and simulation.iteration cannot be "
                         "combined yet", "leave out this step or simulation.iteration")
            continue
        if multiple > 1:
            rates[name] = multiple
    return rates


def _check_solver(section: Any, path: tuple, check: _Checker) -> Solver | None:
    """``solver: {method: cvode|euler, relative_tolerance, absolute_tolerance, max_step}``."""
    if section is None:
        return None
    if not isinstance(section, Mapping):
        check.report(path, "must be a mapping", "solver: {method: cvode, "
                     "relative_tolerance: 1e-6}")
        return None
    check.keys(section, path, {"method", "relative_tolerance", "absolute_tolerance",
                               "max_step"})
    method = section.get("method", "cvode")
    if method not in METHODS:
        check.report(path + ("method",), f"unknown solver {method!r}",
                     f"one of {', '.join(METHODS)}")
        method = "cvode"
    values = {}
    for key in ("relative_tolerance", "absolute_tolerance", "max_step"):
        if key in section:
            values[key] = check.number(section, path + (key,), positive=True)
    return Solver(method, **{k: v for k, v in values.items() if v is not None})


def _check_parallel(section: Any, check: _Checker) -> Parallel:
    """``parallel: {group_size, balance, measure_steps}``; the rank count is checked at run time."""
    if section is None:
        return Parallel()
    if not isinstance(section, Mapping):
        check.report(("parallel",), "must be a mapping", "e.g. parallel: {group_size: 2}")
        return Parallel()
    check.keys(section, ("parallel",), {"group_size", "balance", "measure_steps"})
    for key in ("group_size", "measure_steps"):
        value = section.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            check.report(("parallel", key), f"{key} must be a whole number ≥ 1, got {value!r}",
                         f"e.g. {key}: {2 if key == 'group_size' else 100}")
    balance = section.get("balance", "declared")
    if balance not in ("declared", "measured"):
        check.report(("parallel", "balance"), f"unknown balance {balance!r}",
                     "declared (the instances' cost:) or measured (time the first steps)")
    return Parallel(section.get("group_size"), balance,
                    section.get("measure_steps", Parallel.measure_steps))


def _check_connections(section: Any, check: _Checker
                       ) -> tuple[list[tuple[str, str, Source]], dict[tuple[str, str], dict]]:
    """``a.output -> b.input``, or ``{from: a.output, to: b.input, factor: 2, offset: 0,
    convert_units: true}`` (a linear transformation, as SSP's LinearTransformation)."""
    if section is None:
        return [], {}
    if not isinstance(section, list):
        check.report(("connections",), "must be a list", "- a.output -> b.input")
        return [], {}
    out, transforms = [], {}
    for i, item in enumerate(section):
        if isinstance(item, Mapping):
            check.keys(item, ("connections", i), {"from", "to", "factor", "offset",
                                                  "convert_units"})
            ends = [item.get(key) for key in ("from", "to")]
            if not all(isinstance(end, str) and parse_port(end) for end in ends):
                check.report(("connections", i), "a connection mapping needs 'from' and 'to' "
                             "as instance.variable", "{from: a.y, to: b.u, factor: 2.0}")
                continue
            transform = {}
            for key in ("factor", "offset"):
                if key in item:
                    transform[key] = check.number(item, ("connections", i, key))
            if not isinstance(item.get("convert_units", True), bool):
                check.report(("connections", i, "convert_units"), "must be true or false")
            transform["convert_units"] = item.get("convert_units", True) is not False
            if None in transform.values():
                continue
            out.append((ends[0].strip(), ends[1].strip(), check.source("connections", i)))
            transforms[ends[0].strip(), ends[1].strip()] = transform
            continue
        match = _ARROW.match(item) if isinstance(item, str) else None
        if not match:
            check.report(("connections", i), f"not a connection: {item!r}",
                         "write '- instance.output -> instance.input'")
            continue
        out.append((match.group(1), match.group(2), check.source("connections", i)))
    return out, transforms


def _check_simulation(section: Any, check: _Checker
                      ) -> tuple[float, float, float, str, float, Adaptive | None,
                                 Iteration | None] | None:
    """``(start, stop, step, algorithm, call_timeout, adaptive, iteration)``; None (problems
    reported) when they are wrong."""
    if not isinstance(section, Mapping):
        check.report(("simulation",), "missing", "give start, stop and step in seconds")
        return None
    check.keys(section, ("simulation",), {"start", "stop", "step", "algorithm", "call_timeout",
                                          "adaptive", "iteration"})
    start = check.number(section, ("simulation", "start"), default=0.0)
    stop = check.number(section, ("simulation", "stop"))
    step = check.number(section, ("simulation", "step"), positive=True)
    call_timeout = check.number(section, ("simulation", "call_timeout"), default=CALL_TIMEOUT,
                                positive=True)
    algorithm = section.get("algorithm", "jacobi")
    if algorithm not in ALGORITHMS:
        check.report(("simulation", "algorithm"), f"unknown algorithm {algorithm!r}",
                     f"one of {', '.join(ALGORITHMS)}")
        algorithm = "jacobi"
    if None in (start, stop, step):
        return None
    if stop <= start:
        check.report(("simulation", "stop"), f"stop ({stop:g} s) must be after start "
                     f"({start:g} s)", "stop > start")
        return None
    count = (stop - start) / step
    if not math.isfinite(count) or count > MAX_STEPS:
        check.report(("simulation", "step"), f"{stop - start:g} s in steps of {step:g} s is "
                     f"{count:.3g} steps, more than the limit of {MAX_STEPS:.0e}",
                     "check the units: stop and step are in seconds")
        return None
    if step < 1e6 * math.ulp(max(abs(start), abs(stop))):
        check.report(("simulation", "step"), f"a step of {step:g} s is below what floating "
                     f"point resolves at t = {max(abs(start), abs(stop)):g} s",
                     "times would be off by more than a millionth of a step; use a larger "
                     "step or times nearer zero")
        return None
    try:
        steps_between(start, stop, step)
    except ValueError as error:
        check.report(("simulation", "step"), str(error), "choose a step that divides stop - start")
        return None
    adaptive = _check_adaptive(section.get("adaptive"), step, check)
    iteration = _check_iteration(section.get("iteration"), check)
    if adaptive is not None and iteration is not None:
        check.report(("simulation", "iteration"), "adaptive and iteration cannot be combined "
                     "yet", "leave one of simulation.adaptive and simulation.iteration out")
    return start, stop, step, algorithm, call_timeout or CALL_TIMEOUT, adaptive, iteration


def _check_iteration(section: Any, check: _Checker) -> Iteration | None:
    """``simulation.iteration``: method (constant, aitken, iqn-ils), tolerance,
    max_iterations, relaxation."""
    if section is None:
        return None
    path = ("simulation", "iteration")
    if not isinstance(section, Mapping):
        check.report(path, "iteration is a mapping",
                     "e.g. iteration: {method: iqn-ils, tolerance: 1e-10}")
        return None
    check.keys(section, path, {"method", "tolerance", "max_iterations", "relaxation"})
    method = section.get("method", "iqn-ils")
    if method not in ITERATION_METHODS:
        check.report(path + ("method",), f"unknown method {method!r}",
                     f"one of {', '.join(ITERATION_METHODS)}")
        return None
    tolerance = check.number(section, path + ("tolerance",), default=1e-10, positive=True)
    relaxation = check.number(section, path + ("relaxation",), default=0.5, positive=True)
    count = section.get("max_iterations", 50)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        check.report(path + ("max_iterations",), f"must be a whole number >= 1, got {count!r}",
                     "e.g. 50")
        return None
    if tolerance is None or relaxation is None:
        return None
    return Iteration(method=method, tolerance=tolerance, max_iterations=count,
                     relaxation=relaxation)


def _check_adaptive(section: Any, step: float, check: _Checker) -> Adaptive | None:
    """``simulation.adaptive``: max_step (s, a multiple of step), tolerance (relative),
    extrapolation (0, 1, 2, or a mapping with ``default`` and ``instance.output`` keys)."""
    if section is None:
        return None
    path = ("simulation", "adaptive")
    if not isinstance(section, Mapping):
        check.report(path, "adaptive is a mapping",
                     "e.g. adaptive: {max_step: 0.2, tolerance: 0.001, extrapolation: 1}")
        return None
    check.keys(section, path, {"max_step", "tolerance", "extrapolation"})
    max_step = check.number(section, path + ("max_step",), positive=True)
    tolerance = check.number(section, path + ("tolerance",), default=1e-3, positive=True)
    if max_step is not None and max_step < step * (1 - 1e-9):
        check.report(path + ("max_step",), f"max_step ({max_step:g} s) is below "
                     f"simulation.step ({step:g} s)", "simulation.step is the smallest step; "
                     "max_step the largest")
    extrapolation = section.get("extrapolation", 1)
    orders: dict[str, int] = {}
    if isinstance(extrapolation, Mapping):
        for key, order in extrapolation.items():
            if key != "default" and (not isinstance(key, str) or key.count(".") < 1):
                check.report(path + ("extrapolation", str(key)), "not an output",
                             "keys are 'default' and outputs 'instance.variable'")
            elif order not in (0, 1, 2) or isinstance(order, bool):
                check.report(path + ("extrapolation", str(key)),
                             f"order must be 0, 1 or 2, got {order!r}",
                             "0: hold, 1: linear, 2: quadratic")
            else:
                orders[key] = order
        default = orders.pop("default", 1)
    elif extrapolation in (0, 1, 2) and not isinstance(extrapolation, bool):
        default = extrapolation
    else:
        check.report(path + ("extrapolation",), f"order must be 0, 1 or 2, got "
                     f"{extrapolation!r}", "or a mapping: {default: 1, lead.I_stim: 0}")
        default = 1
    if max_step is None or tolerance is None:
        return None
    return Adaptive(max_step=max_step, tolerance=tolerance, extrapolation=default,
                    orders=orders)


def _check_record(section: Any, settings: Settings, check: _Checker
                  ) -> tuple[list[tuple[str, Source]], float | None]:
    """The record patterns, and the seconds between recorded points (None: every point)."""
    if section is None:
        return [("*.*", Source())], None
    items_path: tuple = ("record", "variables")
    if isinstance(section, list):  # the short form: record: [cell.V, ...]
        section, items_path = {"variables": section}, ("record",)
    if not isinstance(section, Mapping):
        check.report(("record",), "must be a list of variables or a mapping",
                     "record: {interval: 0.01, variables: [cell.V, generator.*]}")
        return [], None
    check.keys(section, ("record",), {"variables", "interval", "reduce"})
    every = None
    if "interval" in section:
        interval = check.number(section, ("record", "interval"), positive=True)
        if interval is not None:
            ratio = interval / settings.step
            if round(ratio) < 1 or abs(ratio - round(ratio)) > 1e-9 * max(1.0, ratio):
                check.report(("record", "interval"), f"interval {interval:g} s is not a whole "
                             f"number of steps of {settings.step:g} s",
                             "use a multiple of simulation.step")
            elif round(ratio) > 1:
                every = interval
    variables = section.get("variables", ["*.*"])
    patterns = []
    if not isinstance(variables, list):
        check.report(("record", "variables"), "must be a list", "[cell.V, generator.*]")
        return [], every
    for i, item in enumerate(variables):
        if not isinstance(item, str) or parse_port(item) is None:
            check.report(items_path + (i,), f"not 'instance.variable': {item!r}",
                         "e.g. cell.V, generator.* (all outputs), *.* (all outputs)")
            continue
        patterns.append((item, check.source(*items_path, i)))
    return patterns, every


def _check_events(section: Any, settings: Settings | None, check: _Checker
                  ) -> list[tuple[Event, Source]]:
    if section is None:
        return []
    if not isinstance(section, list):
        check.report(("events",), "must be a list", "- {time: 10, set: {lead.fault: 1}}")
        return []
    out = []
    for i, item in enumerate(section):
        path = ("events", i)
        if not isinstance(item, Mapping) or set(item) - {"time", "set", "description"}:
            check.report(path, "an event is {time: seconds, set: {instance.variable: value}}")
            continue
        time = check.number(item, path + ("time",))
        values = item.get("set")
        if not isinstance(values, Mapping) or not values:
            check.report(path + ("set",), "give the values to set",
                         "set: {lead.fault: 1}")
            continue
        by_instance: dict[str, dict[str, Any]] = {}
        for name, value in values.items():
            port = parse_port(name)
            if port is None:
                check.report(path + ("set", name), f"not 'instance.variable': {name!r}")
                continue
            by_instance.setdefault(port[0], {})[port[1]] = value
        if time is None:
            continue
        if settings is not None and not settings.start <= time < settings.stop:
            check.report(path + ("time",), f"an event at {time:g} s never happens: the run goes "
                         f"from {settings.start:g} s to {settings.stop:g} s",
                         "give a time from start (included) to stop (excluded)")
            continue
        for instance, vals in by_instance.items():
            out.append((Event(time, instance, vals), check.source(*path)))
    return out


# -- building the coupling graph --------------------------------------------------------------
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

