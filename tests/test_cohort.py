"""Cohort and sweep sampling: determinism, distributions, LHS strata, grid order, CSV tables and
the problems a wrong declaration reports (each with its key path)."""

from __future__ import annotations

import copy
import itertools
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from cosim.errors import Problem, ScenarioError
from cosim.scenario.cohort import Cohort, check_cohort, sample_cohort

HERE = Path(".")
PARAMS = {
    "organ.E_max": {"distribution": "normal", "mean": 2.5, "sd": 0.3},
    "organ.R_p": {"distribution": "normal", "mean": 1.0, "sd": 0.1, "low": 0.7, "high": 1.3},
    "lead.R_tissue": {"distribution": "lognormal", "median": 450, "sigma": 0.25},
    "tissue.intrinsic_rate": {"distribution": "uniform", "low": 30, "high": 45},
}
# the same distributions, written independently of the module
REFERENCE = {
    "organ.E_max": stats.norm(2.5, 0.3),
    "organ.R_p": stats.truncnorm(-3.0, 3.0, loc=1.0, scale=0.1),
    "lead.R_tissue": stats.lognorm(0.25, scale=450.0),
    "tissue.intrinsic_rate": stats.uniform(30.0, 15.0),
}


def spec(method: str = "random", size: int = 64, seed: int = 2026, **extra: Any) -> dict:
    return {"size": size, "seed": seed, "method": method,
            "parameters": copy.deepcopy(PARAMS), **extra}


def grid_spec() -> dict:
    return {"method": "grid", "parameters": {
        "generator.v_amplitude": {"values": [1.0, 2.5, 3.5]},
        "generator.lower_rate": {"low": 50, "high": 70, "levels": 5},
    }}


# -- determinism -----------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["random", "latin-hypercube"])
def test_same_seed_same_members_other_seed_other_members(method: str) -> None:
    s = spec(method)
    before = copy.deepcopy(s)
    a, b = sample_cohort(s, HERE), sample_cohort(s, HERE)
    assert s == before  # the declaration is not modified
    assert a.names == tuple(PARAMS) and a.method == method and a.seed == 2026
    assert a.values.shape == (64, 4) and a.values.dtype == np.float64
    np.testing.assert_array_equal(a.values, b.values)
    c = sample_cohort(spec(method, seed=2027), HERE)
    assert not np.any(a.values == c.values)


def test_random_member_does_not_depend_on_size() -> None:
    small = sample_cohort(spec(size=10), HERE)
    large = sample_cohort(spec(size=500), HERE)
    np.testing.assert_array_equal(small.values, large.values[:10])


def test_member_and_len() -> None:
    c = sample_cohort(spec(size=5), HERE)
    assert len(c) == 5
    m = c.member(3)
    assert list(m) == list(PARAMS)
    assert m["lead.R_tissue"] == c.values[3, 2] and isinstance(m["organ.E_max"], float)
    with pytest.raises(IndexError):
        c.member(5)
    with pytest.raises(ValueError):  # the table is read-only
        c.values[0, 0] = 1.0


# -- distributions ---------------------------------------------------------------------------

def test_random_distributions_match_their_moments() -> None:
    n = 20000
    c = sample_cohort(spec(size=n), HERE)
    col = {name: c.values[:, j] for j, name in enumerate(c.names)}
    se = 1 / math.sqrt(n)
    e = col["organ.E_max"]
    assert abs(e.mean() - 2.5) < 4 * 0.3 * se
    assert abs(e.std(ddof=1) - 0.3) < 4 * 0.3 * se / math.sqrt(2) * 1.1
    r = col["organ.R_p"]
    assert r.min() >= 0.7 and r.max() <= 1.3
    assert abs(r.std(ddof=1) - REFERENCE["organ.R_p"].std()) < 0.005  # truncation narrows it
    assert REFERENCE["organ.R_p"].std() < 0.099
    log_r = np.log(col["lead.R_tissue"])
    assert abs(np.exp(np.median(log_r)) / 450 - 1) < 4 * 1.2533 * 0.25 * se
    assert abs(log_r.std(ddof=1) - 0.25) < 4 * 0.25 * se
    u = col["tissue.intrinsic_rate"]
    assert u.min() >= 30 and u.max() <= 45 and abs(u.mean() - 37.5) < 4 * 15 / math.sqrt(12) * se
    for name, ref in REFERENCE.items():
        assert stats.kstest(col[name], ref.cdf).pvalue > 1e-3, name
    corr = np.corrcoef(c.values.T) - np.eye(4)
    assert np.abs(corr).max() < 4 * se  # columns are independent draws


def test_one_sided_truncation() -> None:
    s = {"size": 2000, "seed": 1, "method": "random", "parameters": {
        "lead.R_tissue": {"distribution": "normal", "mean": 450, "sd": 100, "low": 300}}}
    v = sample_cohort(s, HERE).values[:, 0]
    assert v.min() >= 300 and v.max() > 600
    assert stats.kstest(v, stats.truncnorm(-1.5, np.inf, loc=450, scale=100).cdf).pvalue > 1e-3


@pytest.mark.parametrize("n", [1, 7, 200])
def test_latin_hypercube_one_member_per_stratum(n: int) -> None:
    c = sample_cohort(spec("latin-hypercube", size=n), HERE)
    for j, name in enumerate(c.names):
        strata = np.floor(REFERENCE[name].cdf(c.values[:, j]) * n).astype(int)
        assert sorted(strata) == list(range(n)), name


# -- grid ------------------------------------------------------------------------------------

def test_grid_is_full_factorial_first_parameter_slowest() -> None:
    c = sample_cohort(grid_spec(), HERE)
    assert c.method == "grid" and c.seed is None
    assert len(c) == 3 * 5 and c.names == ("generator.v_amplitude", "generator.lower_rate")
    expected = [(a, r) for a in (1.0, 2.5, 3.5) for r in (50.0, 55.0, 60.0, 65.0, 70.0)]
    np.testing.assert_allclose(c.values, expected, rtol=0, atol=1e-12)


def test_grid_three_parameters() -> None:
    s = grid_spec()
    s["parameters"]["lead.R_tissue"] = {"values": [300, 600]}
    c = sample_cohort(s, HERE)
    assert len(c) == 3 * 5 * 2
    assert c.member(1) == {"generator.v_amplitude": 1.0, "generator.lower_rate": 50.0,
                           "lead.R_tissue": 600.0}
    assert len({tuple(row) for row in c.values}) == 30


# -- table -----------------------------------------------------------------------------------

def test_table_read_in_file_order(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "members.csv").write_text(
        "member, organ.E_max ,lead.R_tissue\n"
        "p07,2.5,450\n\n"
        "p02, 1e0 ,-3.25\n"
        "p11,3,  600.5\n")
    c = sample_cohort({"method": "table", "table": "sub/members.csv"}, tmp_path)
    assert c.method == "table" and c.seed is None
    assert c.names == ("organ.E_max", "lead.R_tissue")
    np.testing.assert_array_equal(c.values, [[2.5, 450], [1.0, -3.25], [3.0, 600.5]])
    assert c.labels == ("p07", "p02", "p11") and c.label(1) == "p02"


def test_written_table_reads_back_exactly(tmp_path: Path) -> None:
    drawn = sample_cohort(spec(size=20), HERE)
    drawn.write_csv(tmp_path / "drawn.csv")
    back = sample_cohort({"method": "table", "table": str(tmp_path / "drawn.csv")}, HERE)
    assert back.names == drawn.names and back.labels == tuple(map(str, range(20)))
    np.testing.assert_array_equal(back.values, drawn.values)


def test_table_without_member_column(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("organ.E_max\n2\n1\n")
    c = sample_cohort({"method": "table", "table": "t.csv"}, tmp_path)
    assert c.values[:, 0].tolist() == [2.0, 1.0] and c.labels == () and c.label(0) == "0"


# -- problems --------------------------------------------------------------------------------
def key(path: tuple) -> str:
    """The key a problem at ``path`` inside the cohort mapping is reported at."""
    return ".".join(("cohort", *map(str, path)))


def test_valid_declarations_have_no_problems() -> None:
    for s in (spec(), spec("latin-hypercube"), grid_spec()):
        assert check_cohort(s, HERE) == []


def drop(key: str):
    return lambda s: s.pop(key)


def put(*path_and_value: Any):
    *path, value = path_and_value

    def edit(s: dict) -> None:
        for key in path[:-1]:
            s = s[key]
        s[path[-1]] = value
    return edit


E = ("parameters", "organ.E_max")
U = ("parameters", "tissue.intrinsic_rate")
R = ("parameters", "organ.R_p")
L = ("parameters", "lead.R_tissue")
CASES = [
    ("unknown method", put("method", "monte-carlo"), ("method",)),
    ("missing method", drop("method"), ()),
    ("missing seed", drop("seed"), ()),
    ("negative seed", put("seed", -1), ("seed",)),
    ("float seed", put("seed", 1.5), ("seed",)),
    ("missing size", drop("size"), ()),
    ("size 0", put("size", 0), ("size",)),
    ("size as text", put("size", "64"), ("size",)),
    ("size bool", put("size", True), ("size",)),
    ("unknown key", put("sead", 1), ("sead",)),
    ("table without method table", put("table", "m.csv"), ("table",)),
    ("missing parameters", drop("parameters"), ()),
    ("empty parameters", put("parameters", {}), ("parameters",)),
    ("unknown distribution", put(*E, "distribution", "gauss"), (*E, "distribution")),
    ("missing distribution", lambda s: s["parameters"]["organ.E_max"].pop("distribution"), E),
    ("extra key", put(*E, "median", 2.0), (*E, "median")),
    ("missing key", lambda s: s["parameters"]["organ.E_max"].pop("sd"), E),
    ("sd zero", put(*E, "sd", 0), (*E, "sd")),
    ("sd negative", put(*E, "sd", -0.3), (*E, "sd")),
    ("sigma zero", put(*L, "sigma", 0.0), (*L, "sigma")),
    ("median negative", put(*L, "median", -450), (*L, "median")),
    ("mean as text", put(*E, "mean", "2.5"), (*E, "mean")),
    ("mean not finite", put(*E, "mean", math.inf), (*E, "mean")),
    ("uniform low >= high", put(*U, "high", 30), (*U, "high")),
    ("truncation low >= high", put(*R, "low", 1.3), (*R, "high")),
    ("truncation above the mean", lambda s: s["parameters"]["organ.R_p"].update(
        low=1.51, high=2.0), (*R, "low")),
    ("truncation below the mean", lambda s: s["parameters"]["organ.R_p"].update(
        low=0.0, high=0.49), (*R, "high")),
    ("name without instance", lambda s: s["parameters"].update(E_max=PARAMS["organ.E_max"]),
     ("parameters", "E_max")),
    ("name with space", lambda s: s["parameters"].update({"organ.E max": {}}),
     ("parameters", "organ.E max")),
    ("name with semicolon", lambda s: s["parameters"].update({"organ.E;max": {}}),
     ("parameters", "organ.E;max")),
    ("name ends with dot", lambda s: s["parameters"].update({"organ.": PARAMS["organ.E_max"]}),
     ("parameters", "organ.")),
    ("entry not a mapping", put(*E, 2.5), E),
    ("grid entry under random", put(*E, {"values": [1, 2]}), E),
]


@pytest.mark.parametrize(("change", "path"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_mistake_is_reported_at_its_key(change, path: tuple) -> None:
    s = spec()
    change(s)
    problems = check_cohort(s, HERE)
    assert key(path) in [p.key for p in problems], problems
    assert all(isinstance(p, Problem) and p.message for p in problems)
    with pytest.raises(ScenarioError) as info:
        sample_cohort(s, HERE)
    assert info.value.problems == list(problems)


G1, G2 = ("parameters", "generator.v_amplitude"), ("parameters", "generator.lower_rate")
GRID_CASES = [
    ("size with grid", put("size", 15), ("size",)),
    ("seed with grid", put("seed", 1), ("seed",)),
    ("distribution in grid", put(*G1, {"distribution": "uniform", "low": 1, "high": 3}), G1),
    ("neither values nor levels", put(*G1, {"mean": 1}), G1),
    ("empty values", put(*G1, "values", []), (*G1, "values")),
    ("values not a list", put(*G1, "values", "1, 2"), (*G1, "values")),
    ("text level", put(*G1, "values", [1.0, "2.5"]), (*G1, "values", 1)),
    ("repeated level", put(*G1, "values", [1.0, 1.0]), (*G1, "values")),
    ("values and levels", put(*G1, "levels", 3), (*G1, "levels")),
    ("one level", put(*G2, "levels", 1), (*G2, "levels")),
    ("fractional levels", put(*G2, "levels", 2.5), (*G2, "levels")),
    ("missing high", lambda s: s["parameters"]["generator.lower_rate"].pop("high"), G2),
    ("grid low >= high", put(*G2, "low", 70), (*G2, "high")),
    ("huge grid", put(*G2, "levels", 10**6), ("parameters",)),
]


@pytest.mark.parametrize(("change", "path"), [c[1:] for c in GRID_CASES],
                         ids=[c[0] for c in GRID_CASES])
def test_each_grid_mistake_is_reported_at_its_key(change, path: tuple) -> None:
    s = grid_spec()
    change(s)
    assert key(path) in [p.key for p in check_cohort(s, HERE)]


def test_all_problems_are_collected_with_hints() -> None:
    s = spec()
    s["method"] = "latin_hypercube"
    s["size"] = -4
    s["parameters"]["organ.E_max"]["sd"] = 0
    s["parameters"]["organ.E_max"]["median"] = 1
    s["parameters"]["lead.R_tissue"]["distribution"] = "log-normal"
    problems = check_cohort(s, HERE)
    by_path = {p.key: p for p in problems}
    assert set(by_path) == {key(p) for p in [("method",), ("size",), (*E, "sd"), (*E, "median"),
                                             (*L, "distribution")]}
    assert "latin-hypercube" in by_path[key(("method",))].hint
    assert "lognormal" in by_path[key((*L, "distribution"))].hint
    assert "mean, sd" in by_path[key((*E, "median"))].hint  # the allowed keys are named
    assert "cohort.parameters.organ.E_max.sd: " in str(by_path[key((*E, "sd"))])
    assert f"{len(problems)} problems found" in str(ScenarioError(problems))


def table_problems(tmp_path: Path, text: str | None, **extra: Any) -> list[Problem]:
    if text is not None:
        (tmp_path / "m.csv").write_text(text)
    problems = check_cohort({"method": "table", "table": "m.csv", **extra}, tmp_path)
    assert problems
    return problems


@pytest.mark.parametrize(("text", "words"), [
    (None, ["does not exist"]),
    ("", ["empty"]),
    ("member,organ.E_max\n", ["no rows"]),
    ("organ.E_max,lead.R_tissue\n2.5,450\n2.4,abc\n", ["row 2", "line 3", "lead.R_tissue",
                                                        "abc"]),
    ("organ.E_max,lead.R_tissue\n2.5,\n", ["row 1", "lead.R_tissue"]),
    ("organ.E_max,lead.R_tissue\n2.5,nan\n", ["row 1", "lead.R_tissue"]),
    ("organ.E_max,R_tissue\n2.5,450\n", ["R_tissue", "instance.parameter"]),
    ("organ.E_max;lead.R_tissue\n2.5;450\n", ["instance.parameter"]),
    ("organ.E_max,organ.E_max\n1,2\n", ["twice"]),
    ("member\np1\n", ["no instance.parameter column"]),
    ("organ.E_max,lead.R_tissue\n2.5,450,7\n", ["row 1", "3 cells"]),
    ("member,organ.E_max\np1,1\np1,2\n", ["repeat", "p1"]),
])
def test_table_problems(tmp_path: Path, text: str | None, words: list[str]) -> None:
    problems = table_problems(tmp_path, text)
    assert all(p.key == "cohort.table" for p in problems)
    joined = " ".join(p.message for p in problems)
    assert all(w in joined for w in words), joined


def test_table_semicolons_get_a_hint(tmp_path: Path) -> None:
    problems = table_problems(tmp_path, "organ.E_max;lead.R_tissue\n2.5;450\n")
    assert "';'" in problems[0].hint


def test_table_method_rejects_size_seed_parameters_and_folders(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("organ.E_max\n1\n")
    problems = table_problems(tmp_path, None, size=3, seed=1, parameters=copy.deepcopy(PARAMS))
    assert {p.key for p in problems} == {key(("size",)), key(("seed",)), key(("parameters",))}
    (tmp_path / "d").mkdir()
    folder = check_cohort({"method": "table", "table": "d"}, tmp_path)
    assert [p.key for p in folder] == ["cohort.table"] and "folder" in folder[0].message
    missing = check_cohort({"method": "table"}, tmp_path)
    assert [p.key for p in missing] == ["cohort"]


def test_many_bad_cells_are_summarised(tmp_path: Path) -> None:
    rows = "\n".join("x" for _ in range(50))
    problems = table_problems(tmp_path, f"organ.E_max\n{rows}\n")
    assert len(problems) == 11 and "40 more" in problems[-1].message


def test_not_a_mapping() -> None:
    assert [p.key for p in check_cohort([1, 2], HERE)] == ["cohort"]  # type: ignore[arg-type]


def test_cohort_checks_its_shape() -> None:
    with pytest.raises(ValueError):
        Cohort(("a.b",), np.zeros((3, 2)), "table", None)
    c = Cohort(("a.b", "a.c"), np.arange(6).reshape(3, 2), "grid", None)
    assert c.values.dtype == np.float64 and list(itertools.chain(*c.values)) == [0, 1, 2, 3, 4, 5]


def test_cohort_and_error_pickle() -> None:
    c = sample_cohort(spec(size=4), HERE)
    back = pickle.loads(pickle.dumps(c))
    assert back.names == c.names and back.seed == 2026
    np.testing.assert_array_equal(back.values, c.values)
    s = spec()
    s["seed"] = -1
    error = ScenarioError(check_cohort(s, HERE))
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error)
