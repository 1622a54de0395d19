"""The verdict and the exit code tell the truth: criteria that cannot be evaluated, the DDD case
of issue 14, the pacing rate, and a cohort's verdict (one process; under MPI: test_parallel.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import fmu_kit as kit  # tests/fmu_kit.py: FMUs and broken archives for tests
import h5py
import pytest

from cosim import cli
from cosim.results.reader import open_results
from cosim.running.pipeline import run_scenario

DDD = """\
version: 1
name: DDD, AV delay 250 ms
fmus: {generator: GENERATOR}
instances:
  pacemaker: {fmu: generator, parameters: {mode_name: DDD, av_delay: 250.0, lower_rate: 60.0}}
simulation: {stop: 6.0, step: 0.001}
criteria:
  - {name: AV conduction within 210 ms, signal: pacemaker.vp_count, measure: response_ratio,
     per: pacemaker.ap_count, within: 0.21, window: [1, 6], min: 0.9}
"""


@pytest.fixture(scope="module")
def generator(build_model) -> Path:
    return build_model("generator")


def test_ddd_with_an_av_delay_longer_than_within_is_a_fail_not_a_traceback(generator, tmp_path,
                                                                          capsys):
    """Issue 14: ``IndexError: index -1 is out of bounds`` in criteria.py, status completed and
    no verdict. Every atrial pace is answered 250 ms later, never within 210 ms: ratio 0."""
    scenario = tmp_path / "ddd.yaml"
    scenario.write_text(DDD.replace("GENERATOR", str(generator)))
    output = tmp_path / "ddd.h5"
    assert cli.main(["run", str(scenario), "-o", str(output), "--no-plot"]) == 2
    out = capsys.readouterr().out
    assert ("FAIL  AV conduction within 210 ms: response_ratio(pacemaker.vp_count) = 0 "
            "(limit >= 0.9; window 1-6 s); broke at t = 3.750 s") in out
    with open_results(output) as res:
        assert res.status == "completed" and res.verdict["passed"] is False
        assert res.verdict["criteria"][0]["value"] == 0.0


def test_vvi_70_per_minute_reads_70_over_a_15_s_window(generator, tmp_path):
    """The rate from intervals between paces (counting whole paces read 68)."""
    scenario = tmp_path / "vvi70.yaml"
    scenario.write_text(textwrap.dedent(f"""\
        version: 1
        fmus: {{generator: {generator}}}
        instances: {{pacemaker: {{fmu: generator, parameters: {{mode: 2, lower_rate: 70.0}}}}}}
        simulation: {{stop: 20.0, step: 0.001}}
        criteria:
          - {{name: rate, signal: pacemaker.vp_count, measure: rate, window: [5, 20],
              min: 69.9, max: 70.1}}
        """))
    report = run_scenario(scenario, tmp_path / "vvi70.h5", plot=False)
    assert report.passed, report.text()
    with open_results(report.results) as res:
        programmed = res["pacemaker.pacing_rate"][-1]  # 60000 / 858 ms on the 1 ms grid
    assert report.outcomes[0].value == pytest.approx(programmed, abs=1e-9)


COHORT = """\
version: 1
name: DDD cohort
fmus: {generator: GENERATOR}
instances:
  pacemaker: {fmu: generator, parameters: {mode_name: DDD, lower_rate: 60.0}}
simulation: {stop: 4.0, step: 0.001}
criteria:
  - {name: AV conduction within 210 ms, signal: pacemaker.vp_count, measure: response_ratio,
     per: pacemaker.ap_count, within: 0.21, window: [1, 4], min: 0.9}
  - {name: atrial senses per pace, signal: pacemaker.as_count, measure: ratio,
     per: pacemaker.as_count, min: 0.5}
cohort: {method: grid, parameters: {pacemaker.av_delay: {values: [100.0, 250.0]}}}
"""


def test_a_cohort_whose_criteria_cannot_be_evaluated_is_judged_never_aborted(generator,
                                                                             tmp_path, capsys):
    """Issue 14: the DDD IndexError aborted the member and left the file ``running``. Now each
    member completes and is judged; the criterion without ``per`` events is not met, with its
    reason, in every member; the cohort fails: exit 2."""
    scenario = tmp_path / "cohort.yaml"
    scenario.write_text(COHORT.replace("GENERATOR", str(generator)))
    output = tmp_path / "cohort.h5"
    assert cli.main(["run", str(scenario), "-o", str(output), "--no-plot"]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[1:] == [
        "COHORT VERDICT: FAIL (0 of 2 members passed, 2 failed their criteria, 0 did not "
        "complete)",
        "  worst member per criterion (2 members judged):",
        "  FAIL  AV conduction within 210 ms: response_ratio(pacemaker.vp_count) = 0 in member "
        "000001 (limit >= 0.9; window 1-4 s); broke at t = 3.750 s; met by 1 of 2",
        "  FAIL  atrial senses per pace: ratio(pacemaker.as_count) cannot be evaluated in member "
        "000000: pacemaker.as_count does not change in the window: no ratio (limit >= 0.5; "
        "window 0-4 s); met by 0 of 2"]
    with open_results(output) as res:
        assert res.status == "completed" and res.attrs["summary"] == "0 of 2 members passed"
        assert res.verdict["passed"] is False and res.verdict["summary"] == "\n".join(out[1:])
        assert [c["worst_member"] for c in res.verdict["criteria"]] == ["000001", "000000"]
        summary = res.summary()
        assert list(summary["status"]) == ["completed", "completed"]
        assert list(summary["AV conduction within 210 ms"]) == [1.0, 0.0]
        for member in res.members:
            with res.member(member) as m:
                assert m.status == "completed"
                assert m.verdict["criteria"][1]["reason"].endswith("no ratio")


MIXED = """\
version: 1
name: mixed cohort
fmus: {osc: c_oscillator.fmu, pump: FailingModel.fmu}
instances:
  osc: {fmu: osc}
  pump: {fmu: pump}
connections: [osc.x -> pump.u]
simulation: {stop: 1.0, step: 0.05}
criteria:
  - {name: bounded, signal: osc.x, measure: max, max: 1.5}
cohort: {method: table, table: members.csv}
"""


def test_a_cohort_prints_its_verdict_and_exits_2_when_a_member_fails_or_errors(tmp_path):
    """Issue 14: a cohort where no member passes printed only ``results: …`` and exited 0."""
    kit.build_c_oscillator(tmp_path)
    kit.build_failing_model(tmp_path)
    (tmp_path / "cohort.yaml").write_text(MIXED)
    (tmp_path / "members.csv").write_text(
        "member,osc.x0,pump.fail_after\nok,1.0,5\nhigh,2.0,5\nbroken,1.0,0.25\n")
    output = tmp_path / "cohort.h5"
    done = subprocess.run([sys.executable, "-m", "cosim.cli", "run", str(tmp_path / "cohort.yaml"),
                           "-o", str(output)], capture_output=True, text=True, timeout=120)
    assert done.returncode == cli.EXIT_VERDICT_FAIL, done.stderr
    assert done.stdout.splitlines() == [
        f"results: {output}",
        f"report:  {output.with_suffix('.html')}",  # the HTML report, cohorts too
        "COHORT VERDICT: FAIL (1 of 3 members passed, 1 failed their criteria, 1 did not "
        "complete)",
        "  worst member per criterion (2 members judged):",
        "  FAIL  bounded: max(osc.x) = 2 in member 000001 (limit <= 1.5; window 0-1 s); broke "
        "at t = 0.000 s; met by 1 of 2",
        "  member 000002 did not complete: instance 'pump', t = 0.25 s: fmi2DoStep failed "
        "(fatal)"]
    with h5py.File(output, "r") as file:
        assert file.attrs["status"] == "completed"
        assert file["members/000002"].attrs["status"] == "failed"
        verdict = file["verdict"].attrs
        assert (verdict["members"], verdict["members_passed"], verdict["members_failed"],
                verdict["members_not_completed"]) == (3, 1, 1, 1)
