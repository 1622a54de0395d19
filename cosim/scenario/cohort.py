"""Cohorts of virtual patients and parameter sweeps: a scenario's ``cohort`` mapping to a table.

A scenario may declare (already parsed from YAML into plain dicts, lists, numbers and strings)::

    cohort:
      size: 64                  # random and latin-hypercube only
      seed: 2026                # random and latin-hypercube only (required there)
      method: random            # random | latin-hypercube | grid | table
      parameters:               # "instance.parameter": entry, in the order they are written
        organ.E_es_lvf: {distribution: normal, mean: 2.9, sd: 0.3}
        organ.R_sys:   {distribution: normal, mean: 1.1, sd: 0.1, low: 0.8, high: 1.4}
        lead.R_tissue: {distribution: lognormal, median: 450, sigma: 0.25}
        tissue.intrinsic_rate: {distribution: uniform, low: 30, high: 45}
      table: members.csv        # table only, relative to the scenario's folder

Methods
- ``random``: ``numpy.random.default_rng(seed)`` draws a ``(size, n_parameters)`` array of
  uniforms in row-major order, each mapped through its distribution's inverse CDF (scipy.stats
  ``norm``, ``truncnorm``, ``lognorm``, ``uniform``). Member ``i`` therefore depends only on the
  seed and the parameter list, not on ``size``: the first 64 members of a cohort of 1000 are the
  cohort of 64.
- ``latin-hypercube``: ``scipy.stats.qmc.LatinHypercube`` seeded with ``default_rng(seed)``, mapped
  through the inverse CDFs: each of the ``size`` equal-probability strata of every parameter
  holds exactly one member. Members depend on ``size``.
- ``grid``: full factorial of the levels; entries are ``{values: [...]}`` or ``{low, high,
  levels}`` (``levels`` evenly spaced points, both ends included). The first parameter varies
  slowest, the last fastest (``itertools.product`` order).
- ``table``: a ``.csv`` file (by its real path; at most ``MAX_TABLE_BYTES``) whose header names
  ``instance.parameter`` columns and optionally a ``member`` column (labels); numbers are read
  as float, members keep the file's order. Messages quote its cells only when the file lies in
  the scenario's folder or its header is valid: a file from elsewhere is never echoed.

Distributions (allowed keys): ``normal`` (mean, sd; optional low/high truncate it),
``lognormal`` (median, sigma: the log of the value is normal with mean ln(median), sd sigma),
``uniform`` (low, high).

``check_cohort`` reports every problem found (never stops at the first) into the one collector
of a scenario's problems (``cosim.errors.Problems``), each at its key under ``cohort``;
``sample_cohort`` raises them all as one ``ScenarioError``. Sampling is a pure function of the
mapping (and of the CSV file for ``table``).
"""

from __future__ import annotations

import csv
import difflib
import itertools
import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosim.errors import Problems

METHODS = ("random", "latin-hypercube", "grid", "table")
KEYS = ("size", "seed", "method", "parameters", "table")
# distribution -> (required keys, optional keys)
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "normal": (("mean", "sd"), ("low", "high")),
    "lognormal": (("median", "sigma"), ()),
    "uniform": (("low", "high"), ()),
}
MAX_MEMBERS = 1_000_000
MAX_TRUNCATION_SD = 5.0  # a truncation interval may lie at most this many sd from the mean
MAX_TABLE_PROBLEMS = 10  # bad cells reported per table before a summary line
MAX_TABLE_BYTES = 256 * 1024**2
# instance name (an identifier) "." FMI variable name (identifiers, dots, array indices)
NAME_PATTERN = re.compile(r"^[A-Za-z_]\w*\.[A-Za-z_][\w.\[\],]*(?<!\.)$", re.ASCII)
NAME_HINT = 'write "instance.parameter", e.g. "organ.E_es_lvf"'
MEMBER_COLUMN = "member"

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True, eq=False)
class Cohort:
    """The member table: one row per virtual patient (or sweep point), one column per parameter."""

    names: tuple[str, ...]
    values: np.ndarray
    method: str
    seed: int | None
    labels: tuple[str, ...] = field(default=())  # the table's "member" column; () otherwise

    def __post_init__(self) -> None:
        values = np.array(self.values, dtype=np.float64)  # a private copy, made read-only
        if values.ndim != 2 or values.shape[1] != len(self.names):
            raise ValueError(f"values must have shape (n, {len(self.names)}), not {values.shape}")
        if self.labels and len(self.labels) != values.shape[0]:
            raise ValueError(f"{len(self.labels)} labels for {values.shape[0]} members")
        values.flags.writeable = False
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return self.values.shape[0]

    def member(self, i: int) -> dict[str, float]:
        """Parameter values of member ``i`` (0-based) as ``{"instance.parameter": value}``."""
        if not 0 <= i < len(self):
            raise IndexError(f"member {i} out of range: the cohort has {len(self)} members")
        return {name: float(v) for name, v in zip(self.names, self.values[i], strict=True)}

    def label(self, i: int) -> str:
        """The member's label: the table's ``member`` cell, else its index."""
        return self.labels[i] if self.labels else str(i)

    def write_csv(self, path: Path) -> None:
        """Write the table (``member`` column + one per parameter) so ``method: table`` reads it
        back exactly (floats are written with ``repr``)."""
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow([MEMBER_COLUMN, *self.names])
            for i, row in enumerate(self.values):
                writer.writerow([self.label(i), *(repr(float(v)) for v in row)])


@dataclass
class _Plan:
    """What ``_Checker`` found valid, ready to sample."""

    method: str | None = None
    size: int | None = None
    seed: int | None = None
    names: list[str] = field(default_factory=list)
    dists: list[Any] = field(default_factory=list)  # frozen scipy distributions
    levels: list[np.ndarray] = field(default_factory=list)
    table: np.ndarray | None = None
    labels: tuple[str, ...] = ()


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _suggest(word: object, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), choices, n=1)
    did = f"did you mean '{close[0]}'? " if close else ""
    return f"{did}choose one of: {', '.join(choices)}"


class _Checker:
    """Walks a cohort mapping, collecting problems and building a ``_Plan``."""

    def __init__(self, base_dir: Path, problems: Problems):
        self.base_dir = Path(base_dir)
        self.problems = problems
        self.found = 0  # problems this cohort had
        self.plan = _Plan()

    def add(self, path: KeyPath, message: str, hint: str = "") -> None:
        self.found += 1
        self.problems.report(("cohort", *path), message, hint)

    def real(self, value: object, path: KeyPath) -> float | None:
        """``value`` as a finite float, or None after recording a problem."""
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            self.add(path, f"must be a number, not {value!r}", "write a plain number, no quotes")
            return None
        if not math.isfinite(float(value)):
            self.add(path, f"must be finite, not {value!r}")
            return None
        return float(value)

    # -- top level ---------------------------------------------------------------------------

    def check(self, spec: object) -> None:
        if not isinstance(spec, Mapping):
            self.add((), f"must be a mapping, not {type(spec).__name__}",
                     "cohort: {method: random, size: 64, seed: 1, parameters: {...}}")
            return
        for key in spec:
            if key not in KEYS:
                self.add((str(key),), f"unknown key '{key}'", _suggest(key, KEYS))
        method = spec.get("method")
        if "method" not in spec:
            self.add((), "needs a 'method'", f"choose one of: {', '.join(METHODS)}")
        elif not isinstance(method, str) or method not in METHODS:
            self.add(("method",), f"unknown method {method!r}", _suggest(method, METHODS))
        else:
            self.plan.method = method
        self.check_size_seed(spec, self.plan.method)
        if self.plan.method == "table":
            self.check_table(spec)
            if "parameters" in spec:
                self.add(("parameters",), "method 'table' takes its parameters from the table",
                         "remove 'parameters' or use another method")
            return
        if "table" in spec and self.plan.method is not None:
            self.add(("table",), "'table' is only used by method 'table'",
                     "remove it or set 'method: table'")
        self.check_parameters(spec)

    def check_size_seed(self, spec: Mapping, method: str | None) -> None:
        drawn = method in ("random", "latin-hypercube")
        fixed = method in ("grid", "table")
        if "size" in spec:
            size = spec["size"]
            if fixed:
                self.add(("size",), f"method '{method}' sets the number of members itself",
                         "remove 'size' (grid: product of the levels; table: its rows)")
            elif not _is_int(size):
                self.add(("size",), f"must be a whole number, not {size!r}", "e.g. size: 64")
            elif not 1 <= size <= MAX_MEMBERS:
                self.add(("size",), f"must be between 1 and {MAX_MEMBERS}, not {size}")
            else:
                self.plan.size = int(size)
        elif drawn:
            self.add((), f"method '{method}' needs 'size' (the number of members)",
                     "e.g. size: 64")
        if "seed" in spec:
            seed = spec["seed"]
            if fixed:
                self.add(("seed",), f"method '{method}' draws nothing at random",
                         "remove 'seed'")
            elif not _is_int(seed) or seed < 0:
                self.add(("seed",), f"must be a whole number >= 0, not {seed!r}",
                         "e.g. seed: 2026")
            else:
                self.plan.seed = int(seed)
        elif drawn:
            self.add((), f"method '{method}' needs a 'seed' so the members can be drawn again",
                     "e.g. seed: 2026")

    # -- parameters --------------------------------------------------------------------------

    def check_parameters(self, spec: Mapping) -> None:
        params = spec.get("parameters")
        if "parameters" not in spec:
            self.add((), "needs 'parameters'",
                     'e.g. parameters: {"organ.E_es_lvf": '
                     '{distribution: normal, mean: 2.9, sd: 0.3}}')
            return
        if not isinstance(params, Mapping) or not params:
            self.add(("parameters",), "must be a non-empty mapping of \"instance.parameter\" to "
                     "a distribution or grid levels")
            return
        method = self.plan.method
        for name, entry in params.items():
            path: KeyPath = ("parameters", str(name))
            if not isinstance(name, str) or not NAME_PATTERN.match(name):
                self.add(path, f"{name!r} is not of the form instance.parameter", NAME_HINT)
            else:
                self.plan.names.append(name)
            if not isinstance(entry, Mapping):
                self.add(path, f"must be a mapping, not {entry!r}",
                         "e.g. {distribution: normal, mean: 2.5, sd: 0.3} or {values: [1, 2]}")
                continue
            is_grid = "distribution" not in entry and bool({"values", "levels"} & set(entry))
            if method == "grid" or (method is None and is_grid):
                self.plan.levels.append(self.check_grid_entry(path, entry))
            elif is_grid:
                self.add(path, f"grid levels given but method is '{method}'",
                         "use 'method: grid', or give a distribution")
            else:
                self.plan.dists.append(self.check_distribution(path, entry))
        if method == "grid" and all(lv is not None for lv in self.plan.levels):
            total = math.prod(len(lv) for lv in self.plan.levels)
            if total > MAX_MEMBERS:
                self.add(("parameters",), f"the grid has {total} members, more than "
                         f"{MAX_MEMBERS}", "use fewer levels or method latin-hypercube")

    def check_distribution(self, path: KeyPath, entry: Mapping) -> Any | None:
        kind = entry.get("distribution")
        choices = tuple(DISTRIBUTIONS)
        if "distribution" not in entry:
            self.add(path, "needs a 'distribution'", f"one of: {', '.join(choices)}")
            return None
        if not isinstance(kind, str) or kind not in DISTRIBUTIONS:
            self.add((*path, "distribution"), f"unknown distribution {kind!r}",
                     _suggest(kind, choices))
            return None
        required, optional = DISTRIBUTIONS[kind]
        allowed = ("distribution", *required, *optional)
        hint = f"a {kind} distribution takes: {', '.join(allowed)}"
        if kind == "normal":
            hint += " (low/high truncate it)"
        ok = True
        for key in entry:
            if key not in allowed:
                self.add((*path, str(key)), f"'{key}' is not a key of a {kind} distribution",
                         hint)
                ok = False
        for key in required:
            if key not in entry:
                self.add(path, f"a {kind} distribution needs '{key}'", hint)
                ok = False
        p = {k: self.real(entry[k], (*path, k)) for k in allowed[1:] if k in entry}
        valid = {k: v for k, v in p.items() if v is not None}
        ok = ok and len(valid) == len(p)
        for key in ("sd", "sigma", "median"):
            if key in valid and valid[key] <= 0:
                self.add((*path, key), f"must be > 0, not {valid[key]:g}")
                ok = False
        if "low" in valid and "high" in valid and valid["low"] >= valid["high"]:
            self.add((*path, "high"), f"high ({valid['high']:g}) must be greater than low "
                     f"({valid['low']:g})")
            ok = False
        if kind == "normal" and ok:
            return self.normal(path, valid)
        from scipy import stats  # here: a process handed a drawn cohort does not load scipy

        if kind == "lognormal" and ok:
            return stats.lognorm(s=valid["sigma"], scale=valid["median"])
        if kind == "uniform" and ok:
            return stats.uniform(loc=valid["low"], scale=valid["high"] - valid["low"])
        return None

    def normal(self, path: KeyPath, p: Mapping[str, float]) -> Any | None:
        """A normal distribution, truncated when ``low`` or ``high`` is given (values checked)."""
        from scipy import stats

        mean, sd = p["mean"], p["sd"]
        if "low" not in p and "high" not in p:
            return stats.norm(loc=mean, scale=sd)
        low, high = p.get("low", -math.inf), p.get("high", math.inf)
        a, b = (low - mean) / sd, (high - mean) / sd
        for key, z in (("low", a), ("high", -b)):
            if z > MAX_TRUNCATION_SD:
                self.add((*path, key), f"the truncation interval [{low:g}, {high:g}] lies "
                         f"{z:.3g} sd from the mean {mean:g} (more than {MAX_TRUNCATION_SD:g})",
                         "check the bounds, the mean and the sd: almost no mass is left")
                return None
        return stats.truncnorm(a, b, loc=mean, scale=sd)

    def check_grid_entry(self, path: KeyPath, entry: Mapping) -> np.ndarray | None:
        hint = "a grid entry is {values: [a, b, ...]} or {low: a, high: b, levels: n}"
        if "distribution" in entry:
            self.add(path, "method 'grid' takes levels, not a distribution",
                     hint + "; or use method random / latin-hypercube")
            return None
        if "values" in entry:
            extra = [k for k in entry if k != "values"]
        elif {"low", "high", "levels"} & set(entry):
            extra = [k for k in entry if k not in ("low", "high", "levels")]
        else:
            self.add(path, "a grid entry needs 'values' or 'low', 'high' and 'levels'", hint)
            return None
        for key in extra:
            self.add((*path, str(key)), f"'{key}' is not a key of a grid entry", hint)
        if "values" in entry:
            values = entry["values"]
            if isinstance(values, str | bytes | Mapping) or not isinstance(values, Sequence) \
                    or not values:
                self.add((*path, "values"), f"must be a non-empty list, not {values!r}", hint)
                return None
            levels = [self.real(v, (*path, "values", i)) for i, v in enumerate(values)]
            if extra or any(v is None for v in levels):
                return None
            if len(set(levels)) != len(levels):
                self.add((*path, "values"), "has repeated levels (identical members)",
                         "list every level once")
                return None
            return np.array(levels, dtype=np.float64)
        missing = [k for k in ("low", "high", "levels") if k not in entry]
        for key in missing:
            self.add(path, f"a grid entry with low/high/levels needs '{key}'", hint)
        low, high = (self.real(entry[k], (*path, k)) if k in entry else None
                     for k in ("low", "high"))
        ok = not missing and not extra and low is not None and high is not None
        if low is not None and high is not None and low >= high:
            self.add((*path, "high"), f"high ({high:g}) must be greater than low ({low:g})")
            ok = False
        n = entry.get("levels")
        if "levels" in entry and not (_is_int(n) and n >= 2):
            self.add((*path, "levels"), f"must be a whole number >= 2, not {n!r}",
                     "for one level write {values: [x]}")
            ok = False
        return np.linspace(low, high, int(n)) if ok else None

    # -- table -------------------------------------------------------------------------------

    def check_table(self, spec: Mapping) -> None:
        table = spec.get("table")
        if "table" not in spec:
            self.add((), "method 'table' needs 'table' (a CSV file)", "e.g. table: members.csv")
            return
        if not isinstance(table, str) or not table.strip():
            self.add(("table",), f"must be a file name, not {table!r}", "e.g. table: members.csv")
            return
        path = self.base_dir / table
        if not path.is_file():
            what = ("is a folder" if path.is_dir() else "is not a regular file"
                    if path.exists() else "does not exist")
            self.add(("table",), f"{path} {what}", "the path is relative to the scenario file")
            return
        real = path.resolve()
        if real.suffix.lower() != ".csv":
            self.add(("table",), f"{path} is not a .csv file" + (
                f" (it links to {real})" if real.name != path.name else ""),
                "a cohort table is a CSV file: a header of instance.parameter columns, then "
                "one row per member")
            return
        size = real.stat().st_size
        if size > MAX_TABLE_BYTES:
            self.add(("table",), f"{path} holds {size:,} bytes, more than the limit of "
                     f"{MAX_TABLE_BYTES:,}", "split the cohort into several tables")
            return
        try:
            with open(real, newline="", encoding="utf-8-sig") as f:
                rows = [(line, row) for row, line in _numbered(csv.reader(f)) if any(
                    c.strip() for c in row)]
        except UnicodeDecodeError:
            self.add(("table",), f"cannot read {path}: it is not UTF-8 text",
                     "save it as UTF-8 CSV")
            return
        except (OSError, csv.Error) as exc:
            self.add(("table",), f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}",
                     "save it as UTF-8 CSV")
            return
        if not rows:
            self.add(("table",), f"{path} is empty", "first line: column names, then one row "
                     "per member")
            return
        inside = self.base_dir.resolve() in real.parents
        self.read_table(path, rows, quote=inside)

    def read_table(self, path: Path, rows: list[tuple[int, list[str]]], quote: bool) -> None:
        """Check and keep the table. Cells are quoted in messages only when ``quote`` (the file
        lies in the scenario's folder) or the header is one of instance.parameter columns: a
        file from elsewhere is never echoed."""
        header = [c.strip() for c in rows[0][1]]
        valid = [name == MEMBER_COLUMN or bool(NAME_PATTERN.match(name)) for name in header]
        if not quote and not all(valid):
            self.add(("table",), f"{path}: the first line is not a header of "
                     "instance.parameter columns (its content is not shown: the file lies "
                     "outside the scenario's folder)", NAME_HINT + ", one per column")
            return
        bad = 0
        columns: list[int] = []
        member_col: int | None = None
        for j, name in enumerate(header):
            if name == MEMBER_COLUMN and member_col is None:
                member_col = j
            elif name in header[:j]:
                self.add(("table",), f"{path}: column '{name}' appears twice")
            elif not NAME_PATTERN.match(name):
                hint = NAME_HINT + (
                    "; the file looks ';'-separated: use commas" if ";" in name else "")
                self.add(("table",), f"{path}: column {j + 1} '{name}' is not of the form "
                         "instance.parameter", hint)
            else:
                columns.append(j)
        if not columns:
            self.add(("table",), f"{path} has no instance.parameter column")
        body = rows[1:]
        if not body:
            self.add(("table",), f"{path} has a header but no rows", "one row per member")
        values = np.empty((len(body), len(columns)))
        labels: list[str] = []
        for r, (line, row) in enumerate(body, 1):
            if len(row) != len(header):
                bad += 1
                if bad <= MAX_TABLE_PROBLEMS:
                    self.add(("table",), f"{path}: row {r} (line {line}) has {len(row)} cells, "
                             f"the header has {len(header)}")
                continue
            if member_col is not None:
                labels.append(row[member_col].strip())
            for k, j in enumerate(columns):
                cell = row[j].strip()
                try:
                    x = float(cell)
                except ValueError:
                    x = math.nan
                values[r - 1, k] = x
                ok = math.isfinite(x)
                if not ok:
                    bad += 1
                    if bad <= MAX_TABLE_PROBLEMS:
                        self.add(("table",), f"{path}: row {r} (line {line}), column "
                                 f"'{header[j]}': {cell!r} is not a finite number")
        if bad > MAX_TABLE_PROBLEMS:
            self.add(("table",), f"{path}: {bad - MAX_TABLE_PROBLEMS} more bad rows or cells")
        if member_col is not None and not bad:
            empty = [r for r, lab in enumerate(labels, 1) if not lab]
            if empty:
                self.add(("table",), f"{path}: the member column is empty in row(s) "
                         f"{', '.join(map(str, empty[:10]))}", "label every member or drop "
                         "the column")
            dup = sorted({lab for lab in labels if lab and labels.count(lab) > 1})
            if dup:
                self.add(("table",), f"{path}: member labels repeat: {', '.join(dup[:10])}",
                         "give every member its own label")
        if len(body) > MAX_MEMBERS:
            self.add(("table",), f"{path} has {len(body)} rows, more than {MAX_MEMBERS}")
        self.plan.names = [header[j] for j in columns]
        self.plan.table = values
        self.plan.labels = tuple(labels)


def _numbered(reader: Any) -> Any:
    """Yield ``(row, line)`` with the line number where each CSV row ends (1-based)."""
    for row in reader:
        yield row, reader.line_num


def _open_unit(u: np.ndarray) -> np.ndarray:
    """Keep uniforms inside (0, 1) so no inverse CDF returns an infinity."""
    return np.clip(u, 2.0**-53, 1.0 - 2.0**-53)


def _latin_hypercube(d: int, n: int, seed: int) -> np.ndarray:
    from scipy.stats import qmc

    rng = np.random.default_rng(seed)
    try:
        engine = qmc.LatinHypercube(d=d, rng=rng)
    except TypeError:  # scipy < 1.15 names the argument ``seed``
        engine = qmc.LatinHypercube(d=d, seed=rng)
    return engine.random(n)


def check_cohort(spec: Mapping, base_dir: Path, problems: Problems | None = None) -> Problems:
    """Every problem in the ``cohort`` mapping ``spec``, reported into ``problems`` (a new
    collector if None) at its key under ``cohort``; returns the collector.

    ``base_dir`` is the folder that a relative ``table`` path starts from (the scenario's).
    """
    problems = Problems() if problems is None else problems
    _Checker(base_dir, problems).check(spec)
    return problems


def sample_cohort(spec: Mapping, base_dir: Path) -> Cohort:
    """The member table the ``cohort`` mapping declares; a ``ScenarioError`` if it is wrong."""
    checker = _Checker(base_dir, Problems())
    checker.check(spec)
    checker.problems.raise_any()
    plan = checker.plan
    names = tuple(plan.names)
    if plan.method == "table":
        return Cohort(names, plan.table, "table", None, plan.labels)
    if plan.method == "grid":
        rows = list(itertools.product(*plan.levels))  # first parameter slowest
        return Cohort(names, np.array(rows, dtype=np.float64), "grid", None)
    if plan.method == "random":
        u = np.random.default_rng(plan.seed).random((plan.size, len(names)))
    else:
        u = _latin_hypercube(len(names), plan.size, plan.seed)
    u = _open_unit(u)
    values = np.column_stack([dist.ppf(u[:, j]) for j, dist in enumerate(plan.dists)])
    return Cohort(names, values, plan.method, plan.seed)
