"""Fitting a twin to one patient's data (`cosim fit`): parameters with bounds and optional
priors, measured targets with their noise and weights, an optimiser from scipy; every model
evaluation a cohort member, so a fit runs over MPI ranks with the cohort machinery and takes
the same steps at any rank count (each member is computed whole on one rank, and every rank
runs the same optimiser on the same residuals).

The scenario's ``fit`` section (``docs/twins.md``)::

    fit:
      parameters:
        a.k: {low: 0.5, high: 4, start: 1}          # bounds, start (default: the middle)
        a.c: {low: 0, high: 1, prior: {mean: 0.2, sd: 0.1}}   # optional Gaussian prior
      targets:
        - {signal: a.x, reference: clinic.x, sigma: 0.02, window: [0, 10]}   # a measured signal
        - {signal: a.v, measure: max, value: 1.1, sigma: 0.05, weight: 2}    # a measured figure
      optimiser: {method: least_squares, max_evaluations: 400, step: 0.001, seed: 1}

Residuals: a signal target gives ``sqrt(weight)·(simulated − measured)/sigma`` at each measured
sample in its window (the simulation interpolated linearly between recorded points); a figure
target (any criterion ``measure`` of the signal) gives ``sqrt(weight)·(figure − value)/sigma``;
a prior gives ``(θ − mean)/sd``. The optimiser minimises their sum of squares over the
parameters scaled to [0, 1] within their bounds. Uncertainty: the covariance
``(JᵀJ)⁻¹`` of the residuals' Jacobian at the optimum (finite differences, one cohort of
``1 + n`` members per evaluation point), scaled by the reduced χ² unless every target states
its ``sigma`` (then the noise is known); 95 % intervals ``θ ± 1.96·sd``.
"""

from __future__ import annotations

import math
import time as clock
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cosim.errors import CosimError, Problems
from cosim.scenario.criteria import MEASURES, Criterion, NotEvaluable, evaluate

METHODS = ("least_squares", "differential_evolution")
Z95 = 1.959963984540054

# a batch of parameter vectors (k × n, in the parameters' own units) -> for each member its
# recorded signals {"instance.variable": (time, values)}, or None where the member failed
Simulate = Callable[[np.ndarray], list[dict[str, tuple[np.ndarray, np.ndarray]] | None]]


@dataclass(frozen=True)
class Parameter:
    name: str  # instance.parameter
    low: float
    high: float
    start: float
    prior_mean: float | None = None
    prior_sd: float | None = None


@dataclass(frozen=True)
class Target:
    name: str
    signal: str
    reference: tuple[np.ndarray, np.ndarray] | None = None  # measured (t, y) in signal units
    reference_name: str = ""  # source.column
    measure: str = ""  # for a figure target
    value: float = math.nan
    per: str | None = None
    within: float = 0.1
    window: tuple[float, float] | None = None
    sigma: float | None = None
    weight: float = 1.0


@dataclass(frozen=True)
class FitProblem:
    parameters: tuple[Parameter, ...]
    targets: tuple[Target, ...]
    method: str = "least_squares"
    max_evaluations: int = 400  # members simulated, at most (about)
    step: float = 1e-3  # finite-difference step, a fraction of each parameter's range
    seed: int = 0
    population: int = 8  # differential evolution: members per parameter in a generation

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parameters)

    @property
    def signals(self) -> list[str]:
        return sorted({t.signal for t in self.targets} | {t.per for t in self.targets if t.per})


@dataclass
class FitResult:
    names: tuple[str, ...]
    values: np.ndarray
    sd: np.ndarray
    covariance: np.ndarray
    residuals: np.ndarray  # at the optimum, every row
    target_rms: dict[str, float]  # per target: root mean square of its residuals (in sigmas)
    cost: float  # sum of squared residuals
    noise_known: bool
    method: str
    message: str
    members: int = 0  # model evaluations (cohort members simulated)
    batches: int = 0  # cohorts run
    seconds: float = 0.0
    simulated: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @property
    def interval(self) -> np.ndarray:
        """95 % intervals, one row (low, high) per parameter."""
        return np.column_stack((self.values - Z95 * self.sd, self.values + Z95 * self.sd))

    def summary(self) -> dict[str, Any]:
        """What the fit found, as plain data (no time series)."""
        return {
            "method": self.method, "message": self.message, "cost": self.cost,
            "noise_known": self.noise_known, "members": self.members, "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "parameters": {n: {"value": float(v), "sd": float(s), "low95": float(lo),
                               "high95": float(hi)}
                           for n, v, s, (lo, hi) in zip(self.names, self.values, self.sd,
                                                        self.interval, strict=True)},
            "target_rms": self.target_rms,
        }

    def text(self) -> str:
        lines = [f"fit ({self.method}): {self.message}; cost {self.cost:.4g}, "
                 f"{self.members} model runs in {self.batches} cohorts, {self.seconds:.1f} s"]
        for name, value, sd, (low, high) in zip(self.names, self.values, self.sd, self.interval,
                                                strict=True):
            lines.append(f"  {name} = {value:.6g} ± {sd:.3g} (95 %: {low:.6g} … {high:.6g})")
        for target, rms in self.target_rms.items():
            lines.append(f"  target {target}: rms residual {rms:.3g} σ")
        return "\n".join(lines)


# -- the fit section --------------------------------------------------------------------------
def read_fit(scenario: Any) -> FitProblem:
    """The scenario's ``fit`` section as a ``FitProblem``; every mistake at its line and key
    (one ``ScenarioError``)."""
    problems = Problems(str(scenario.file) if scenario.file else None, scenario.lines)
    section = scenario.fit
    if not isinstance(section, Mapping):
        problems.report(("fit",), "the scenario has no fit section",
                        "add fit: {parameters: …, targets: …} (docs/twins.md)")
        problems.raise_any()
    if scenario.cohort is not None:
        problems.report(("cohort",), "a fit runs its own cohorts: remove the cohort section")
    for key in section:
        if key not in ("parameters", "targets", "optimiser"):
            problems.report(("fit", key), f"unknown key '{key}'",
                            "allowed: parameters, targets, optimiser")
    parameters = _read_parameters(section.get("parameters"), problems)
    targets = _read_targets(section.get("targets"), scenario, problems)
    options = section.get("optimiser", {}) or {}
    if not isinstance(options, Mapping):
        problems.report(("fit", "optimiser"), "optimiser is a mapping", "{method: least_squares}")
        options = {}
    method = options.get("method", "least_squares")
    if method not in METHODS:
        problems.report(("fit", "optimiser", "method"), f"unknown method {method!r}",
                        f"use {' or '.join(METHODS)}")
    numbers = {}
    for key, default, kind in (("max_evaluations", 400, int), ("step", 1e-3, float),
                               ("seed", 0, int), ("population", 8, int)):
        value = options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 and \
                key != "seed" or (kind is int and value != int(value)):
            problems.report(("fit", "optimiser", key), f"{key} must be a positive "
                            f"{'integer' if kind is int else 'number'}, got {value!r}")
            value = default
        numbers[key] = kind(value)
    for key in options:
        if key not in ("method", "max_evaluations", "step", "seed", "population"):
            problems.report(("fit", "optimiser", key), f"unknown key '{key}'",
                            "allowed: method, max_evaluations, step, seed, population")
    problems.raise_any()
    return FitProblem(tuple(parameters), tuple(targets), method, **numbers)


def _number(entry: Mapping, key: str, path: tuple, problems: Problems) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        problems.report(path + (key,), f"{key} must be a finite number, got {value!r}")
        return None
    return float(value)


def _read_parameters(section: Any, problems: Problems) -> list[Parameter]:
    if not isinstance(section, Mapping) or not section:
        problems.report(("fit", "parameters"), "no parameters to fit",
                        "parameters: {instance.parameter: {low: …, high: …}}")
        return []
    found = []
    for name, entry in section.items():
        path = ("fit", "parameters", name)
        if not isinstance(entry, Mapping):
            problems.report(path, "a parameter is {low: …, high: …, start: …, prior: …}")
            continue
        for key in entry:
            if key not in ("low", "high", "start", "prior"):
                problems.report(path + (key,), f"unknown key '{key}'",
                                "allowed: low, high, start, prior")
        low, high = _number(entry, "low", path, problems), _number(entry, "high", path, problems)
        if low is None or high is None or not low < high:
            problems.report(path, "needs bounds low < high", "e.g. {low: 0.5, high: 4}")
            continue
        start = _number(entry, "start", path, problems)
        start = (low + high) / 2 if start is None else start
        if not low <= start <= high:
            problems.report(path + ("start",), f"start {start:g} lies outside [{low:g}, {high:g}]")
        prior = entry.get("prior")
        mean = sd = None
        if prior is not None:
            if not isinstance(prior, Mapping):
                problems.report(path + ("prior",), "a prior is {mean: …, sd: …}")
            else:
                mean = _number(prior, "mean", path + ("prior",), problems)
                sd = _number(prior, "sd", path + ("prior",), problems)
                if mean is None or sd is None or sd <= 0:
                    problems.report(path + ("prior",), "a prior needs mean and sd > 0")
                    mean = sd = None
        found.append(Parameter(str(name), low, high, start, mean, sd))
    return found


def _read_targets(section: Any, scenario: Any, problems: Problems) -> list[Target]:
    if not isinstance(section, list) or not section:
        problems.report(("fit", "targets"), "no targets: what must the twin match?",
                        "targets: [{signal: a.x, reference: source.column, sigma: …}]")
        return []
    allowed = {"name", "signal", "reference", "measure", "value", "per", "within", "window",
               "sigma", "weight"}
    found = []
    for i, entry in enumerate(section):
        path = ("fit", "targets", i)
        if not isinstance(entry, Mapping) or not isinstance(entry.get("signal"), str):
            problems.report(path, "a target needs a signal 'instance.variable'")
            continue
        for key in entry:
            if key not in allowed:
                problems.report(path + (key,), f"unknown key '{key}'",
                                f"allowed: {', '.join(sorted(allowed))}")
        signal = entry["signal"]
        window = entry.get("window")
        if window is not None:
            if not (isinstance(window, list) and len(window) == 2 and all(
                    isinstance(w, (int, float)) and not isinstance(w, bool) for w in window)
                    and window[0] < window[1]):
                problems.report(path + ("window",), "window is [start, stop] seconds")
                window = None
            else:
                window = (float(window[0]), float(window[1]))
        sigma = _number(entry, "sigma", path, problems)
        if sigma is not None and sigma <= 0:
            problems.report(path + ("sigma",), "sigma (the measurement noise) must be > 0")
            sigma = None
        weight = _number(entry, "weight", path, problems)
        weight = 1.0 if weight is None else weight
        name = str(entry.get("name", f"{i}: {signal}"))
        reference = entry.get("reference")
        if reference is not None:
            source, _, column = str(reference).partition(".")
            table = scenario.measured.get(source)
            if table is None or column not in table.columns:
                problems.report(path + ("reference",), f"'{reference}' is not a measured column",
                                "measured sources: " + ", ".join(
                                    f"{s}.{c}" for s, t in scenario.measured.items()
                                    for c in t.columns) or "none")
                continue
            found.append(Target(name, signal, None, str(reference), window=window, sigma=sigma,
                                weight=weight))
            continue
        measure = entry.get("measure")
        value = _number(entry, "value", path, problems)
        if measure not in MEASURES or value is None:
            problems.report(path, "a target is a measured signal (reference: source.column) or "
                            "a measured figure (measure: … and value: …)",
                            f"measures: {', '.join(MEASURES)}")
            continue
        within = _number(entry, "within", path, problems)
        found.append(Target(name, signal, None, "", str(measure), value,
                            entry.get("per"), 0.1 if within is None else within, window, sigma,
                            weight))
    return found


def with_references(problem: FitProblem, scenario: Any, graph: Any) -> FitProblem:
    """The targets' measured samples, in the unit of the signal they are compared with;
    signals checked against the FMUs."""
    problems = Problems(str(scenario.file) if scenario.file else None, scenario.lines)
    targets = []
    for i, target in enumerate(problem.targets):
        instance, _, variable = target.signal.partition(".")
        if instance not in graph or variable not in graph.fmu(instance).variables:
            problems.report(("fit", "targets", i, "signal"), f"unknown signal '{target.signal}'",
                            f"instances: {', '.join(graph.instances)}")
            continue
        if target.reference_name:
            source, _, column = target.reference_name.partition(".")
            table = scenario.measured[source]
            unit = graph.fmu(instance).variables[variable].unit
            t, y = table.time, table.column_in(column, unit)
            if target.window:
                inside = (t >= target.window[0] - 1e-12) & (t <= target.window[1] + 1e-12)
                t, y = t[inside], y[inside]
            target = replace(target, reference=(t, y))
        targets.append(target)
    for p in problem.parameters:
        instance, _, variable = p.name.partition(".")
        if instance not in graph or variable not in graph.fmu(instance).variables:
            problems.report(("fit", "parameters", p.name), f"unknown parameter '{p.name}'",
                            "write instance.parameter of a declared instance")
    problems.raise_any()
    return replace(problem, targets=tuple(targets))


# -- residuals and the optimisers -------------------------------------------------------------
def residuals(problem: FitProblem, theta: np.ndarray,
              series: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Every residual row of one evaluation (targets, then priors), in sigmas."""
    rows = []
    for target in problem.targets:
        t, y = series[target.signal]
        scale = math.sqrt(target.weight) / (target.sigma or 1.0)
        if target.reference is not None:
            measured_t, measured = target.reference
            rows.append(scale * (np.interp(measured_t, t, y) - measured))
            continue
        criterion = Criterion(target.name, target.signal, target.measure, target.window,
                              per=target.per, within=target.within, min=-math.inf)
        values = {target.signal: y, **({target.per: series[target.per][1]} if target.per
                                       else {})}
        outcome = evaluate(criterion, t, values)
        if outcome.reason:
            raise NotEvaluable(f"target '{target.name}': {outcome.reason}")
        rows.append(np.array([scale * (outcome.value - target.value)]))
    for p, value in zip(problem.parameters, theta, strict=True):
        if p.prior_sd is not None:
            rows.append(np.array([(value - p.prior_mean) / p.prior_sd]))
    return np.concatenate(rows)


def run_fit(problem: FitProblem, simulate: Simulate) -> FitResult:
    """Fit ``problem`` with ``simulate`` (a cohort per batch: ``cohort_simulator``)."""
    from scipy.optimize import differential_evolution, least_squares

    low = np.array([p.low for p in problem.parameters])
    span = np.array([p.high for p in problem.parameters]) - low
    n = len(low)
    count = {"members": 0, "batches": 0}
    started = clock.perf_counter()

    def theta(u: np.ndarray) -> np.ndarray:
        return low + span * np.clip(u, 0.0, 1.0)

    def batch(us: Sequence[np.ndarray]) -> list[np.ndarray | None]:
        thetas = np.array([theta(u) for u in us])
        count["members"] += len(thetas)
        count["batches"] += 1
        out = []
        for th, series in zip(thetas, simulate(thetas), strict=True):
            try:
                out.append(None if series is None else residuals(problem, th, series))
            except NotEvaluable:
                out.append(None)
        return out

    def steps(u: np.ndarray) -> np.ndarray:
        h = problem.step
        return np.where(u + h <= 1.0, h, -h)  # inside the bounds

    cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def evaluate_with_jacobian(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = np.asarray(u, dtype=np.float64).tobytes()
        if key not in cache:
            h = steps(u)
            points = [u] + [u + h[j] * np.eye(n)[j] for j in range(n)]
            results = batch(points)
            if any(r is None for r in results):
                failed = [theta(p) for p, r in zip(points, results, strict=True) if r is None]
                raise FitError("the model did not complete (or a target could not be "
                               "evaluated) at " + ", ".join(
                                   f"{name} = {v:.6g}" for name, v in zip(problem.names,
                                                                          failed[0], strict=True))
                               + ": narrow the bounds, or check the scenario runs there")
            r0 = results[0]
            jac = np.column_stack([(results[j + 1] - r0) / h[j] for j in range(n)])
            cache.clear()
            cache[key] = (r0, jac)
        return cache[key]

    u0 = (np.array([p.start for p in problem.parameters]) - low) / span
    message = ""
    if problem.method == "differential_evolution":
        def costs(_: Any, population: Any) -> list[float]:
            found = batch([np.asarray(u) for u in population])
            return [math.inf if r is None else float(r @ r) for r in found]

        popsize = max(problem.population, 5)
        generations = max(1, problem.max_evaluations // (popsize * n) - 1)
        de = differential_evolution(lambda u: 0.0, [(0.0, 1.0)] * n, x0=u0, seed=problem.seed,
                                    popsize=popsize, maxiter=generations, polish=False,
                                    updating="deferred", workers=costs, tol=1e-6)
        u0 = np.asarray(de.x)
        message = f"differential evolution: {de.message}; "
    budget = max(1, problem.max_evaluations - count["members"])
    solution = least_squares(lambda u: evaluate_with_jacobian(u)[0], u0,
                             jac=lambda u: evaluate_with_jacobian(u)[1], bounds=(0.0, 1.0),
                             method="trf", x_scale="jac", max_nfev=max(2, budget // (n + 1)))
    r, jac_u = evaluate_with_jacobian(solution.x)
    jac = jac_u / span  # d residuals / d theta
    noise_known = all(t.sigma is not None for t in problem.targets)
    dof = max(1, len(r) - n)
    scale = 1.0 if noise_known else float(r @ r) / dof
    try:
        covariance = scale * np.linalg.inv(jac.T @ jac)
    except np.linalg.LinAlgError:
        covariance = np.full((n, n), np.inf)
    sd = np.sqrt(np.clip(np.diag(covariance), 0.0, None))
    rms, row = {}, 0
    for target in problem.targets:
        size = 1 if target.reference is None else len(target.reference[0])
        rms[target.name] = float(np.sqrt(np.mean(r[row:row + size] ** 2)))
        row += size
    return FitResult(problem.names, theta(solution.x), sd, covariance, r, rms, float(r @ r),
                     noise_known, problem.method, message + solution.message,
                     count["members"], count["batches"], clock.perf_counter() - started)


class FitError(CosimError):
    """A fit that cannot go on: one sentence, what to change."""
