"""The Python API: load or build a scenario, run it, get its signals and verdict as objects.

    from cosim.api import load, run, scenario

    done = run("scenarios/vvi_complete_av_block.yaml")       # in memory: no file written
    done.passed, done.verdict["paced at the lower rate"].value
    done["heart.P_ao"].values, done["heart.P_ao"].unit        # numpy arrays with units

    s = scenario("two oscillators", stop=10.0, step=1e-3, algorithm="gauss-seidel")
    s.instance("left", "oscillator", parameters={"k": 2.0}).instance("right", "oscillator")
    s.connect("left.x", "right.x_other").connect("right.x", "left.x_other")
    s.criterion("bounded", "left.x", "max", max=1.01)
    done = s.run("results/two.h5")                            # the file `cosim run` writes

One path whatever the caller: a scenario built here is the same data a scenario file holds,
checked by the same code (``cosim.scenario.scenario.parse_scenario``: every problem at the line
of the script that gave it); ``run`` is the pipeline of ``cosim run``
(``cosim.running.pipeline.run_scenario``: prepare → claim → run → commit), in this process, or
``supervised`` in a worker process (``cosim.running.supervise``: what ``cosim run`` itself
calls, through this function). An error raises the same ``CosimError`` (``ScenarioError``:
file, line, key) ``cosim run`` prints; an interruption raises ``cosim.errors.Interrupted``; a
FAIL verdict is a result, not an error.

In this process by default: a run starts in milliseconds, its errors are Python exceptions with
their fields, and it works with what only this process has. ``supervised=True`` costs a worker
process (~1 s) and keeps the caller alive whatever an FMU does (a segmentation fault, ``exit()``,
a hang: ``simulation.call_timeout``): use it for FMUs you do not trust, and in a notebook whose
kernel must not die. ``isolation: process`` in a scenario isolates single instances instead.

Imports nothing heavy at module level: ``cosim run`` (a supervisor that never loads numpy,
HDF5 or an FMU) goes through ``run`` too.
"""

from __future__ import annotations

import difflib
import inspect
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cosim.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_VERDICT_FAIL,
    CosimError,
    Interrupted,
)

if TYPE_CHECKING:
    import numpy as np

    from cosim.scenario.criteria import CohortVerdict, Outcome
    from cosim.scenario.scenario import Scenario
    from cosim.twins.personalise import FitRun
    from cosim.twins.therapy import Comparison

MEMORY = Path("/dev/shm")  # where an in-memory run's results stay while it runs, if it exists


# -- scenarios ---------------------------------------------------------------------------------
def load(path: str | Path) -> Scenario:
    """A scenario file (YAML, or an SSP archive ``.ssp``), read and checked; FMUs are opened
    when it runs. Raises ``ScenarioError`` with every problem (file, line, key)."""
    from cosim.scenario.ssp import load_scenario_or_ssp

    return load_scenario_or_ssp(path)


def scenario(name: str, *, stop: float, step: float, start: float = 0.0,
             algorithm: str = "jacobi", description: str = "") -> ScenarioBuilder:
    """A new scenario, built in Python: the sections of a scenario file
    (``docs/scenario-format.md``) added by the builder's methods."""
    simulation = {"start": start, "stop": stop, "step": step, "algorithm": algorithm}
    data = {"version": 1, "name": name, "description": description, "fmus": {},
            "instances": {}, "connections": [], "simulation": simulation}
    builder = ScenarioBuilder(data, Path.cwd(), *_caller())
    for key in ("version", "name", "description", "fmus", "instances", "simulation"):
        builder._at((key,))
    return builder


def edit(path: str | Path) -> ScenarioBuilder:
    """A scenario file as a builder, to change it in Python (a parameter, the stop time, a
    criterion) and run it without writing it back. Its relative paths stay relative to it."""
    from cosim.scenario.scenario import load_scenario
    from cosim.scenario.yaml_file import read_yaml

    path = Path(path)
    load_scenario(path)  # its own problems at its own lines first
    data, _ = read_yaml(path.read_text(encoding="utf-8"), str(path))
    data.setdefault("connections", [])
    return ScenarioBuilder(data, path.resolve().parent, *_caller())


class ScenarioBuilder:
    """A scenario as the data of a scenario file, built call by call; each method returns the
    builder. ``build()`` checks it (``ScenarioError``: the line of the call that gave what is
    wrong) into the ``Scenario`` a file would give; ``yaml()`` is that file."""

    def __init__(self, data: dict[str, Any], base: Path, file: str, line: int):
        self.data = data
        self.base = base  # relative FMU and table paths start here
        self.file = file  # the script building it: where its errors point
        self.lines: dict[tuple, int] = {(): line}

    def fmu(self, key: str, source: str | Path, *, sha256: str | None = None
            ) -> ScenarioBuilder:
        """An FMU under ``key``: an ``.fmu`` file or a library model's name (``cell``, …),
        pinned by its SHA-256 if given."""
        value = str(source)
        self.data.setdefault("fmus", {})[key] = (value if sha256 is None
                                                 else {"file": value, "sha256": sha256})
        return self._at(("fmus", key))

    def instance(self, name: str, fmu: str | Path, *, parameters: Mapping[str, Any] | None = None,
                 **options: Any) -> ScenarioBuilder:
        """An instance of ``fmu``: a key given to ``fmu()``, or a file or library model
        (declared under a key of its own). ``options``: ``scale``, ``cost``, ``isolation``,
        ``interface``, ``solver``, ``description``, ``step`` (multirate) as in a scenario
        file."""
        key = str(fmu)
        if key not in self.data.get("fmus", {}):
            key = Path(key).stem if key.endswith(".fmu") else key
            if key not in self.data.get("fmus", {}):
                self.fmu(key, fmu)
        spec: dict[str, Any] = {"fmu": key, **options}
        if parameters:
            spec["parameters"] = dict(parameters)
        self.data.setdefault("instances", {})[name] = spec
        return self._at(("instances", name))

    def parameters(self, instance: str, **values: Any) -> ScenarioBuilder:
        """Set (or change) start values of an instance's parameters."""
        spec = self.data.get("instances", {}).get(instance)
        if isinstance(spec, str):
            spec = self.data["instances"][instance] = {"fmu": spec}
        if spec is None:
            raise KeyError(f"no instance '{instance}'; instances: "
                           f"{', '.join(self.data.get('instances', {}))}")
        spec.setdefault("parameters", {}).update(values)
        return self._at(("instances", instance, "parameters"))

    def connect(self, output: str, input: str, *, factor: float | None = None,
                offset: float | None = None, convert_units: bool | None = None
                ) -> ScenarioBuilder:
        """``output`` (``instance.variable``) feeds ``input``; optionally transformed:
        ``input = convert(factor · output + offset)``."""
        transform = {k: v for k, v in (("factor", factor), ("offset", offset),
                                       ("convert_units", convert_units)) if v is not None}
        connections = self.data.setdefault("connections", [])
        connections.append({"from": output, "to": input, **transform} if transform
                           else f"{output} -> {input}")
        return self._at(("connections", len(connections) - 1))

    def simulation(self, **settings: Any) -> ScenarioBuilder:
        """Change ``start``, ``stop``, ``step``, ``algorithm`` or ``call_timeout``."""
        self.data.setdefault("simulation", {}).update(settings)
        return self._at(("simulation",))

    def record(self, *variables: str, interval: float | None = None,
               reduce: Mapping[str, str] | None = None) -> ScenarioBuilder:
        """What to record (``instance.variable``, ``instance.*``), every ``interval`` s."""
        section: dict[str, Any] = {"variables": list(variables)}
        if interval is not None:
            section["interval"] = interval
        if reduce:
            section["reduce"] = dict(reduce)
        self.data["record"] = section
        return self._at(("record",))

    def event(self, time: float, set: Mapping[str, Any], description: str = ""
              ) -> ScenarioBuilder:
        """At ``time``, set unconnected inputs and tunable parameters (``instance.variable``:
        value)."""
        events = self.data.setdefault("events", [])
        events.append({"time": time, "set": dict(set),
                       **({"description": description} if description else {})})
        return self._at(("events", len(events) - 1))

    def criterion(self, name: str, signal: str, measure: str, **terms: Any) -> ScenarioBuilder:
        """An acceptance criterion: ``measure`` of ``signal``, ``terms`` as in a scenario file
        (``window=(2, 20)``, ``min``, ``max``, ``per``, ``when``, ``within``,
        ``description``)."""
        if "window" in terms:
            terms["window"] = list(terms["window"])
        criteria = self.data.setdefault("criteria", [])
        criteria.append({"name": name, "signal": signal, "measure": measure, **terms})
        return self._at(("criteria", len(criteria) - 1))

    def plot(self, *signals: str) -> ScenarioBuilder:
        self.data["plot"] = list(signals)
        return self._at(("plot",))

    def section(self, name: str, value: Any) -> ScenarioBuilder:
        """Any other section as a scenario file writes it: ``cohort``, ``isolation``,
        ``checkpoint``, ``parallel``, ``credibility``."""
        self.data[name] = value
        return self._at((name,))

    def yaml(self) -> str:
        """The scenario file this builder stands for (``cosim run`` runs it alike)."""
        import yaml

        return (f"# built in Python by {self.file}:{self.lines[()]}\n"
                + yaml.safe_dump(self.data, sort_keys=False, width=100))

    def build(self) -> Scenario:
        """The checked ``Scenario``; ``ScenarioError`` names the script's lines."""
        from cosim.scenario.scenario import parse_scenario

        return parse_scenario(self.yaml(), Path(self.file), base=self.base, lines=self.lines)

    def run(self, output: str | Path | None = None, **options: Any) -> Run:
        """``run(self.build(), output, **options)``."""
        return run(self.build(), output, **options)

    def _at(self, path: tuple) -> ScenarioBuilder:
        """Remember the script line that gave ``path`` (if the call came from the script)."""
        file, line = _caller()
        if file == self.file:
            self.lines[path] = line
        return self


def _caller() -> tuple[str, int]:
    """The file and line of the first frame outside this module."""
    frame = inspect.currentframe()
    while frame is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    return (frame.f_code.co_filename, frame.f_lineno) if frame else ("<python>", 0)


# -- running -----------------------------------------------------------------------------------
def run(what: str | Path | Scenario | ScenarioBuilder, output: str | Path | None = None, *,
        supervised: bool = False, plot: bool = True, resume: bool | Path = False,
        memory_limit: float | None = None, quiet: bool = True) -> Run:
    """Run a scenario (a file, a ``Scenario``, a builder) and return how it went.

    ``output``: the results file, claimed, written and committed as ``cosim run`` does (with
    its PNG and HTML report unless ``plot`` is False); None: in memory, nothing left on disk
    (the same writer fills a private file in RAM, ``/dev/shm``, read back and removed).
    ``supervised``: in a worker process, as ``cosim run`` (``memory_limit``: its bytes of
    address space; ``quiet`` False: the progress line). ``resume``: go on with an earlier run
    of ``output`` (``cosim run --resume``).

    Returns a ``Run`` for a completed run, PASS or FAIL; raises the ``CosimError`` ``cosim
    run`` would print (exit 1), ``Interrupted`` on Ctrl-C or SIGTERM (exit 130)."""
    if isinstance(what, ScenarioBuilder):
        what = what.build()
    if output is None:
        if resume:
            raise CosimError("resume: a run in memory has nothing to go on with; give the "
                             "results file (output=) of the run to resume")
        return _in_memory(what, supervised=supervised, memory_limit=memory_limit, quiet=quiet)
    output = Path(output)
    if supervised:
        return _supervised(what, output, plot, resume, memory_limit, quiet)
    from cosim.running.pipeline import run_scenario

    what = Path(what) if isinstance(what, str) else what
    report = run_scenario(what, output, plot=plot, resume=resume)
    return Run(what, report.results, report.text(),
               EXIT_VERDICT_FAIL if report.passed is False else EXIT_OK)


def _supervised(what: str | Path | Scenario, output: Path, plot: bool, resume: bool | Path,
                memory_limit: float | None, quiet: bool) -> Run:
    """``run_supervised``'s end as a ``Run`` or the exception that says why it is none."""
    from cosim.running.supervise import Options, run_supervised

    what = Path(what) if isinstance(what, str) else what
    done = run_supervised(what, output, plot=plot, resume=resume,
                          options=Options(memory_limit=memory_limit, quiet=quiet))
    message = done.message.removeprefix("error: ")
    if done.exit == EXIT_INTERRUPTED:
        raise Interrupted(message)
    if done.exit == EXIT_ERROR:
        raise CosimError(message)
    return Run(what, output, done.text, done.exit)


def _in_memory(what: str | Path | Scenario, *, supervised: bool, memory_limit: float | None,
               quiet: bool) -> Run:
    """The run into a private file that is read into memory and removed."""
    from cosim.launcher import rank_and_size

    if rank_and_size()[1] > 1:
        raise CosimError("a run in memory runs in one process; under mpiexec give the "
                         "results file (output=) the ranks write together")
    folder = Path(tempfile.mkdtemp(prefix="cosim-memory-",
                                   dir=MEMORY if os.access(MEMORY, os.W_OK) else None))
    try:
        try:
            done = run(what, folder / "results.h5", supervised=supervised, plot=False,
                       memory_limit=memory_limit, quiet=quiet)
        except (CosimError, KeyboardInterrupt) as error:
            error.__notes__ = []  # the file they name is removed with the folder
            for kept in folder.glob("results.partial-*.h5"):
                try:
                    error.partial = _read_signals(kept)  # the rows computed until it failed
                except (OSError, KeyError, CosimError):
                    break
                said = error.args[0] if error.args and isinstance(error.args[0], str) else ""
                if f"kept in {kept}" in said:  # the supervisor's message names the file
                    error.args = (said.replace(f"kept in {kept}", "kept in memory: the "
                                               "exception's .partial"), *error.args[1:])
                else:
                    error.add_note("the rows computed until then are in memory: the "
                                   "exception's .partial")
            raise
        lines = done.text.splitlines()
        text = "\n".join(["results: in memory", *lines[1:]])
        return Run(done._scenario, None, text, done.exit_code,
                   memory=_read_all(done.results))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# -- patient-specific twins (docs/twins.md) -----------------------------------------------------
def fit(path: str | Path, output: str | Path | None = None, *,
        personalised: str | Path | None = None, plot: bool = True) -> FitRun:
    """Fit the scenario's ``fit`` section to its measured data (``cosim fit``): every
    evaluation a cohort member (over the ranks under ``mpiexec``). Writes the personalised
    scenario (default ``<stem>.personalised.yaml`` beside it) and its run into ``output``
    (default ``results/<stem>.personalised.h5``) with ``/fit``; returns the fitted parameters
    with their uncertainty (``.result``), the personalised file and its run's report."""
    from cosim.twins.personalise import fit_scenario

    return fit_scenario(path, output, personalised=personalised, plot=plot)


def compare_therapies(path: str | Path, programmings: Mapping[str, Mapping[str, float]],
                      output: str | Path | None = None, *, threshold: float,
                      window: tuple[float, float] | None = None, **options: Any) -> Comparison:
    """Run a (personalised) scenario once per device programming (``{label: {"instance.
    parameter": value}}``) as one cohort and compare capture margin, capture, pacing
    percentage, cardiac output and projected battery longevity, each with a verdict;
    ``threshold``: the patient's capture threshold (V). ``options``: ``limits``, ``signals``
    (``cosim.twins.therapy``)."""
    from cosim.twins.therapy import compare_therapies as compare

    return compare(path, programmings, output, threshold=threshold, window=window, **options)


def summary(results: str | Path) -> dict[str, Any]:
    """What may leave the site where the data live (``cosim summary``): verdicts, figures,
    fitted parameters, hashes, the pseudonym; no time series, no measured value, no path."""
    from cosim.twins.privacy import summary as summarise

    return summarise(results)


# -- what a run gives back ---------------------------------------------------------------------
@dataclass(frozen=True)
class Signal:
    """One recorded variable: its values at ``time``, with unit and description."""

    name: str  # instance.variable
    time: np.ndarray
    values: np.ndarray
    unit: str
    description: str

    def __array__(self, dtype=None, copy=None):
        import numpy as np

        return np.asarray(self.values, dtype=dtype)

    def __len__(self) -> int:
        return len(self.values)

    def to_xarray(self):
        """An ``xarray.DataArray`` over ``time`` with CF ``units`` and ``long_name``."""
        import xarray

        dims = ["time"] + [f"{self.name}_{i}" for i in range(1, self.values.ndim)]
        return xarray.DataArray(self.values, dims=dims, coords={"time": self.time},
                                name=self.name,
                                attrs={"units": self.unit, "long_name": self.description})


class Signals(Mapping[str, Signal]):
    """The recorded signals of a run (or of one cohort member): ``signals["heart.P_ao"]``."""

    def __init__(self, time: np.ndarray, signals: dict[str, Signal], status: str,
                 attrs: dict[str, Any]):
        self.time = time
        self._signals = signals
        self.status = status  # completed, failed, interrupted
        self.attrs = attrs  # the results file's attributes: provenance, end reason, timings

    def __getitem__(self, name: str) -> Signal:
        try:
            return self._signals[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._signals, n=3, cutoff=0.6)
            hint = (f"did you mean {' or '.join(map(repr, close))}?" if close
                    else "recorded: " + ", ".join(self._signals))
            raise KeyError(f"'{name}' was not recorded; {hint}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._signals)

    def __len__(self) -> int:
        return len(self._signals)

    def to_xarray(self):
        """An ``xarray.Dataset`` of every signal over ``time``."""
        import xarray

        return xarray.Dataset({name: s.to_xarray() for name, s in self._signals.items()},
                              coords={"time": self.time})


@dataclass(frozen=True)
class Verdict:
    """The acceptance verdict: each criterion's ``Outcome`` (figure ``value``, ``min``,
    ``max``, ``window_start``/``window_stop``, ``passed``, ``broke_at``, ``reason``)."""

    outcomes: tuple[Outcome, ...]

    @property
    def passed(self) -> bool | None:
        """True: PASS; False: FAIL; None: no criteria."""
        return all(o.passed for o in self.outcomes) if self.outcomes else None

    def __getitem__(self, name: str) -> Outcome:
        for outcome in self.outcomes:
            if outcome.name == name:
                return outcome
        raise KeyError(f"no criterion '{name}'; criteria: "
                       f"{', '.join(o.name for o in self.outcomes)}")

    def text(self) -> str:
        from cosim.scenario.criteria import verdict_text

        return verdict_text(list(self.outcomes)) if self.outcomes else "no criteria"


@dataclass(frozen=True)
class Cohort:
    """A cohort's summary: its verdict (members passed, failed, not completed; the worst
    member per criterion), the summary table as columns, each member's signals and verdict."""

    verdict: CohortVerdict
    table: dict[str, np.ndarray]  # member, parameters, status, passed, each criterion's figure
    members: dict[str, Signals] = field(repr=False)
    verdicts: dict[str, Verdict] = field(repr=False)


@dataclass(frozen=True)
class _Contents:
    """Everything a results file holds that a ``Run`` gives back."""

    signals: Signals | None
    verdict: Verdict
    cohort: Cohort | None


class Run:
    """A completed run (PASS, FAIL, or no criteria): what ``cosim run`` printed (``text``), its
    exit code, and the results: ``signals``, ``verdict``, ``cohort`` (read from the file when
    first asked, or held in memory)."""

    def __init__(self, scenario: Scenario | Path, results: Path | None, text: str,
                 exit_code: int, *, memory: _Contents | None = None):
        self._scenario = scenario  # or its file, read when asked
        self.results = results  # the results file; None: in memory
        self.text = text
        self.exit_code = exit_code  # EXIT_OK or EXIT_VERDICT_FAIL, as `cosim run` exits
        if memory is not None:
            self.__dict__["_contents"] = memory

    @property
    def passed(self) -> bool:
        """False when the verdict is FAIL (a cohort: a member failed or did not complete)."""
        return self.exit_code == EXIT_OK

    @cached_property
    def _contents(self) -> _Contents:
        return _read_all(self.results)

    @property
    def signals(self) -> Signals:
        if self._contents.signals is None:
            raise KeyError("a cohort run has signals per member: run.cohort.members[id]")
        return self._contents.signals

    @property
    def verdict(self) -> Verdict:
        return self._contents.verdict

    @property
    def cohort(self) -> Cohort | None:
        return self._contents.cohort

    @property
    def scenario(self) -> Scenario:
        if isinstance(self._scenario, Path):
            self._scenario = load(self._scenario)
        return self._scenario

    def __getitem__(self, name: str) -> Signal:
        return self.signals[name]

    def __repr__(self) -> str:
        return f"<Run {self.results or 'in memory'}: {self.text.splitlines()[-1]}>"


def _read_all(path: Path) -> _Contents:
    """A results file's signals, verdict and cohort, read into memory."""
    from cosim.results.reader import open_results

    with open_results(path) as results:
        if not results.members:
            from cosim.scenario.criteria import read_outcomes

            return _Contents(_read_signals(path), Verdict(tuple(read_outcomes(results.group))),
                             None)
        from cosim.running.pipeline import judged_members
        from cosim.scenario.criteria import cohort_verdict, read_outcomes

        ids = results.members
        judged = judged_members(results.group, len(ids))
        criteria = _criteria_of(results)
        members = {m: _read_signals(path, m) for m in ids}
        verdicts = {m: Verdict(tuple(read_outcomes(results.group[f"members/{m}"])))
                    for m in ids}
        return _Contents(None, Verdict(()), Cohort(cohort_verdict(criteria, judged),
                                                   results.summary(), members, verdicts))


def _criteria_of(results) -> list:
    """The criteria of the scenario that wrote ``results`` (its text is provenance)."""
    from cosim.scenario.criteria import parse_criteria
    from cosim.scenario.yaml_file import read_yaml

    data, _ = read_yaml(str(results.attrs["scenario_text"]), None)
    return parse_criteria(data.get("criteria"), lambda *problem: None)


def _read_signals(path: Path, member: str | None = None) -> Signals:
    from cosim.results.reader import open_results

    with open_results(path, member) as results:
        time = results.time.copy()
        signals = {name: Signal(name, time, results[name], results.unit(name),
                                results.description(name)) for name in results.variables}
        return Signals(time, signals, results.status, results.attrs)
