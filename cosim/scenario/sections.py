"""The sections of a scenario file, each checked where it is written: keys, types, times,
names; every problem reported with its line into one collector (``SectionChecker``), the
values returned typed (``cosim.master.description``). ``cosim.scenario.scenario`` reads the
file and puts the sections together into a ``Scenario``."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cosim.coupling.graph import SCALES, parse_port
from cosim.errors import Problems, Source
from cosim.fmi.fmu_file import INTERFACES
from cosim.fmi.isolation import MODES, Isolation
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


# -- checking the file itself -----------------------------------------------------------------
class SectionChecker(Problems):
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


def check_patient(section: Any, check: SectionChecker) -> str:
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


def check_fmus(section: Any, base: Path, check: SectionChecker) -> dict[str, FmuSource]:
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


def check_checkpoint(section: Any, check: SectionChecker) -> float | None:
    """``checkpoint: {every: s}``: seconds of simulated time between two checkpoints."""
    if section is None:
        return None
    if not isinstance(section, Mapping):
        check.report(("checkpoint",), "must be a mapping", "checkpoint: {every: 10}")
        return None
    check.keys(section, ("checkpoint",), {"every"})
    return check.number(section, ("checkpoint", "every"), positive=True)


def check_isolation(section: Any, check: SectionChecker) -> Isolation:
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


def check_instances(section: Any, fmus: dict[str, Path], isolation: Isolation,
                     check: SectionChecker) -> dict[str, InstanceSpec]:
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
        solver = check_solver(spec.get("solver"), path + ("solver",), check)
        out[name] = InstanceSpec(name, fmu, scale, dict(parameters), float(cost),
                                 check.source(*path), dataclasses.replace(isolation, mode=mode),
                                 interface, solver)
    return out


def check_instance_steps(section: Any, simulation: tuple | None, check: SectionChecker
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


def check_solver(section: Any, path: tuple, check: SectionChecker) -> Solver | None:
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


def check_parallel(section: Any, check: SectionChecker) -> Parallel:
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


def check_connections(section: Any, check: SectionChecker
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


def check_simulation(section: Any, check: SectionChecker
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
    adaptive = check_adaptive(section.get("adaptive"), step, check)
    iteration = check_iteration(section.get("iteration"), check)
    if adaptive is not None and iteration is not None:
        check.report(("simulation", "iteration"), "adaptive and iteration cannot be combined "
                     "yet", "leave one of simulation.adaptive and simulation.iteration out")
    return start, stop, step, algorithm, call_timeout or CALL_TIMEOUT, adaptive, iteration


def check_iteration(section: Any, check: SectionChecker) -> Iteration | None:
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


def check_adaptive(section: Any, step: float, check: SectionChecker) -> Adaptive | None:
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


def check_record(section: Any, settings: Settings, check: SectionChecker
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


def check_events(section: Any, settings: Settings | None, check: SectionChecker
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
