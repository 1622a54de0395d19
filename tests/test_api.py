"""The Python API (``cosim.api``): a scenario built in Python runs as its file does, bit for bit;
in memory equals the file; the verdict objects say what ``cosim run`` prints and exits with; a
cohort's summary; errors at the file (or script) line; ``cosim run`` of an SSP archive; a
crashing FMU under ``supervised=True`` leaves the caller alive."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import fmu_kit as kit
import numpy as np
import pytest

from cosim.api import edit, fit, load, run, scenario, summary
from cosim.errors import EXIT_OK, EXIT_VERDICT_FAIL, CosimError, ScenarioError
from cosim.results.reader import open_results

REPO = Path(__file__).resolve().parent.parent
FLAGSHIP = REPO / "scenarios" / "vvi_complete_av_block.yaml"


def flagship_in_python():
    """scenarios/vvi_complete_av_block.yaml, written in Python."""
    s = scenario("VVI 60/min in complete AV block: pacing restores cardiac output",
                 stop=20.0, step=0.001, algorithm="gauss-seidel")
    s.instance("pacemaker", "generator", scale="device",
               parameters={"mode": 2, "lower_rate": 60.0})
    s.instance("lead", "lead", scale="device")
    s.instance("myocyte", "cell", scale="cell")
    s.instance("myocardium", "tissue", scale="tissue", cost=10,
               parameters={"intrinsic_rate": 35.0, "intrinsic_delay": 0.3,
                           "intrinsic_reset": 1})
    s.instance("heart", "organ", scale="organ")
    for line in ("pacemaker.V_pace_v -> lead.V_pace_v",
                 "pacemaker.pulse_width_v -> lead.pulse_width_v",
                 "lead.I_stim -> myocyte.I_stim", "lead.stim_width -> myocyte.stim_width",
                 "myocyte.V -> myocardium.V_source", "myocardium.V_electrode -> myocyte.V_tissue",
                 "myocardium.activation -> heart.activation", "myocardium.egm -> lead.egm",
                 "lead.V_sense -> pacemaker.V_sense_v",
                 "lead.impedance -> pacemaker.lead_impedance"):
        s.connect(*line.split(" -> "))
    s.record("pacemaker.*", "lead.*", "myocyte.V", "myocyte.beat_count", "myocardium.egm",
             "myocardium.activation", "heart.*", interval=0.001)
    s.criterion("paced at the lower rate", "pacemaker.vp_count", "rate", window=(5, 20),
                min=58, max=62)
    s.criterion("capture ratio", "myocyte.beat_count", "response_ratio",
                per="pacemaker.vp_count", within=0.1, window=(2, 20), min=0.95)
    s.criterion("no pause longer than 1.2 s", "myocyte.beat_count", "longest_gap",
                window=(2, 20), max=1.2)
    s.criterion("cardiac output restored", "heart.cardiac_output", "mean", window=(10, 20),
                min=4.0)
    s.criterion("diastolic aortic pressure", "heart.P_ao", "min", window=(10, 20), min=55)
    s.criterion("pacing impedance in the normal range", "lead.impedance", "max",
                window=(2, 20), min=200, max=1200)
    return s


def same_signals(one, other) -> None:
    assert list(one) == list(other) and len(one) > 30
    assert np.array_equal(one.time, other.time)
    for name in one:
        assert np.array_equal(one[name].values, other[name].values), name
        assert one[name].unit == other[name].unit


@pytest.fixture(scope="module")
def flagship_file(tmp_path_factory):
    """The flagship from its YAML file, into a results file, as ``cosim run`` writes it."""
    output = tmp_path_factory.mktemp("api") / "flagship.h5"
    return run(FLAGSHIP, output, plot=False)


def test_built_in_python_equals_the_scenario_file_bit_for_bit(flagship_file):
    built = flagship_in_python().run()  # in memory
    same_signals(built.signals, flagship_file.signals)
    assert built.verdict.text() == flagship_file.verdict.text() and built.passed
    assert built.signals.attrs["scenario_text"].startswith(
        f"# built in Python by {__file__}:")  # the script is the scenario's provenance


def test_in_memory_equals_the_file_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import cosim.api

    monkeypatch.setattr(cosim.api, "MEMORY", tmp_path / "ram")
    (tmp_path / "ram").mkdir()
    short = edit(FLAGSHIP).simulation(stop=2.0).section("criteria", []).build()
    memory = run(short)
    assert memory.results is None and memory.text == "results: in memory"
    assert list(tmp_path.rglob("*")) == [tmp_path / "ram"]  # nothing left anywhere
    file = run(short, tmp_path / "short.h5", plot=False)
    same_signals(memory.signals, file.signals)
    with open_results(file.results) as results:  # what the file holds, read by the reader
        assert np.array_equal(results["heart.P_ao"], memory["heart.P_ao"].values)
        assert results.unit("heart.P_ao") == memory["heart.P_ao"].unit == "mmHg"
    pytest.importorskip("xarray")
    pressure = memory.signals.to_xarray()["heart.P_ao"]
    assert pressure.attrs["units"] == "mmHg" and pressure.attrs["long_name"] == "aortic pressure"
    assert float(pressure.sel(time=1.0)) == memory["heart.P_ao"].values[1000]
    with pytest.raises(KeyError, match="was not recorded; did you mean .*'heart.P_ao'"):
        memory["heart.P_a0"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosim.cli", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def test_the_verdict_is_what_cosim_run_prints_and_exits_with(flagship_file, tmp_path):
    done = cli("run", str(FLAGSHIP), "-o", str(tmp_path / "cli.h5"), "--no-plot")
    assert done.returncode == flagship_file.exit_code == EXIT_OK
    assert done.stdout == flagship_file.text.replace(str(flagship_file.results),
                                                     str(tmp_path / "cli.h5")) + "\n"
    assert flagship_file.verdict.text() in done.stdout
    assert flagship_file.verdict["cardiac output restored"].value > 4.0

    failing = edit(FLAGSHIP).parameters("pacemaker", lower_rate=70.0)  # paced at 70/min
    (tmp_path / "failing.yaml").write_text(failing.yaml(), encoding="utf-8")
    done = cli("run", str(tmp_path / "failing.yaml"), "-o", str(tmp_path / "f.h5"), "--no-plot")
    memory = failing.run()
    assert done.returncode == memory.exit_code == EXIT_VERDICT_FAIL
    assert not memory.passed and memory.verdict.passed is False
    outcome = memory.verdict["paced at the lower rate"]
    assert not outcome.passed and outcome.value == pytest.approx(70, abs=1)
    assert memory.verdict.text() in done.stdout
    assert memory.text == done.stdout.replace(f"results: {tmp_path / 'f.h5'}",
                                              "results: in memory").rstrip("\n")


COHORT = {"method": "latin-hypercube", "size": 3, "seed": 7,
          "parameters": {"heart.E_es_lvf": {"distribution": "uniform", "low": 1.0,
                                            "high": 3.2}}}


def test_a_cohort_returns_its_summary(tmp_path):
    s = flagship_in_python().simulation(stop=6.0).section("cohort", COHORT)
    s.record("heart.cardiac_output", interval=0.01)
    s.data["criteria"] = []
    s.criterion("cardiac output", "heart.cardiac_output", "mean", window=(3, 6), min=4.0)
    done = s.run(tmp_path / "cohort.h5", plot=False)
    cohort = done.cohort
    assert cohort.verdict.members == 3 and len(cohort.members) == 3
    assert list(cohort.table["member"]) == [0, 1, 2]
    figures = [cohort.verdicts[m]["cardiac output"].value for m in sorted(cohort.members)]
    assert np.array_equal(cohort.table["cardiac output"], figures)
    assert cohort.verdict.passed == int(np.sum(cohort.table["passed"]))
    assert 0 < cohort.verdict.passed < 3  # the low contractility fails, the high passes
    assert done.exit_code == EXIT_VERDICT_FAIL and cohort.verdict.text() in done.text
    with open_results(done.results) as file:
        assert file.verdict["summary"] == cohort.verdict.text()
        member = file.member("000001")
        assert np.array_equal(member["heart.cardiac_output"],
                              cohort.members["000001"]["heart.cardiac_output"].values)


def test_a_bad_scenario_raises_at_its_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(FLAGSHIP.read_text().replace("step: 0.001", "step: -1"), encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        run(bad)
    problem = caught.value.problems[0]
    assert (problem.file, problem.line, problem.key) == (str(bad), 35, "simulation.step")
    assert str(caught.value) == cli("run", str(bad)).stderr.removeprefix("error: ").rstrip()

    s = flagship_in_python()
    line = inspect.currentframe().f_lineno + 1
    s.connect("lead.V_sense", "heart.no_such_input")
    with pytest.raises(ScenarioError) as caught:
        s.run()
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.key) == (__file__, line, "connections.10")
    assert "has no variable 'no_such_input'" in problem.message
    with pytest.raises(CosimError) as supervised:  # the worker's message, word for word
        s.run(tmp_path / "bad.h5", supervised=True)
    assert str(supervised.value) == str(caught.value)


def test_cosim_run_and_load_take_an_ssp_archive(tmp_path):
    from cosim.scenario.ssp import export_ssp

    short = tmp_path / "short.yaml"
    short.write_text(edit(FLAGSHIP).simulation(stop=2.0).section("criteria", []).yaml())
    archive = export_ssp(short, tmp_path / "flagship.ssp")
    done = cli("run", str(archive), "-o", str(tmp_path / "ssp.h5"), "--no-plot")
    assert done.returncode == 0, done.stderr
    done = cli("check", str(archive))
    assert done.returncode == 0 and ": OK — 5 instances, 10 connections" in done.stdout, done.stderr
    loaded = load(archive)
    assert set(loaded.instances) == {"pacemaker", "lead", "myocyte", "myocardium", "heart"}
    memory = run(archive)
    with open_results(tmp_path / "ssp.h5") as file:
        assert file.variables == list(memory.signals) and len(file.time) == 2001
        for name in file.variables:
            assert np.array_equal(file[name], memory[name].values), name


def test_a_crashing_fmu_under_supervision_leaves_the_caller_alive(tmp_path):
    kit.build_saboteur(tmp_path)
    s = scenario("crash", stop=0.5, step=0.001)
    s.instance("pump", tmp_path / "Saboteur.fmu", parameters={"action": 1, "at": 0.25})
    with pytest.raises(CosimError) as caught:
        s.run(tmp_path / "crash.h5", supervised=True)
    assert str(caught.value).startswith("instance 'pump' in fmi2DoStep at t = 0.25 s: the FMU "
                                        "crashed (segmentation fault, SIGSEGV); rows up to "
                                        "t = 0.25 s kept in ")
    with pytest.raises(CosimError) as caught:  # in memory: the rows on the exception
        s.run(supervised=True)
    assert str(caught.value).endswith("; rows up to t = 0.25 s kept in memory: the "
                                      "exception's .partial")
    assert caught.value.partial.time[-1] == pytest.approx(0.25)
    assert caught.value.partial.status == "failed"


def test_cosim_run_through_the_api_stays_light():
    """``cosim run`` (a supervisor that must outlive its worker and start fast) imports the API
    and the supervisor without numpy, HDF5, YAML or an FMU library."""
    code = ("import sys, cosim.cli, cosim.api, cosim.running.supervise; "
            "print(sorted(m for m in ('numpy', 'h5py', 'yaml', 'networkx', 'fmpy') "
            "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


def test_a_run_failing_in_memory_gives_its_rows_on_the_exception(tmp_path, monkeypatch):
    import cosim.api
    from cosim.errors import SimulationError

    kit.build_failing_model(tmp_path)
    monkeypatch.setattr(cosim.api, "MEMORY", tmp_path / "ram")
    (tmp_path / "ram").mkdir()
    s = scenario("failing", stop=1.0, step=0.1)
    s.instance("model", tmp_path / "FailingModel.fmu")
    with pytest.raises(SimulationError) as caught:
        s.run()
    assert caught.value.instance == "model" and caught.value.time == pytest.approx(0.5)
    assert caught.value.__notes__ == ["the rows computed until then are in memory: the "
                                      "exception's .partial"]
    partial = caught.value.partial
    assert partial.status == "failed" and partial.time[-1] == pytest.approx(0.5)
    assert np.allclose(partial["model.y"].values, partial.time)
    assert list((tmp_path / "ram").iterdir()) == []


def test_a_twin_is_fitted_and_summarised_from_python(tmp_path):
    """``fit`` and ``summary`` are ``cosim fit`` and ``cosim summary`` for a script: the fitted
    parameters hold the synthetic patient's truth, and the summary keeps them (no series)."""
    from test_fit import TRUTH, synthetic_patient

    done = fit(synthetic_patient(tmp_path), tmp_path / "fitted.h5", plot=False)
    for name, value in zip(done.result.names, done.result.values, strict=True):
        assert abs(value - TRUTH[name]) < 0.01 * TRUTH[name]
    assert done.personalised.is_file() and done.report.passed
    kept = summary(tmp_path / "fitted.h5")
    assert kept["fit"]["parameters"]["a.k"]["value"] == pytest.approx(done.result.values[0])
    assert "instances" not in kept and "time" not in kept
