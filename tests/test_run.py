"""The pipeline (``cosim.running.pipeline``): one sequence for every run, where the work happens a
strategy."""

from __future__ import annotations

import h5py

from cosim.running.pipeline import prepare, run_into
from cosim.running.strategies import InProcess

SCENARIO = """\
version: 1
fmus: {oscillator: oscillator}
instances:
  left: {fmu: oscillator, parameters: {k_c: 0.5, x0: 1.0}}
  right: {fmu: oscillator, parameters: {k_c: 0.5}}
connections: [left.x -> right.x_other, right.x -> left.x_other]
simulation: {start: 0, stop: 0.5, step: 0.01}
record: [left.x]
criteria:
  - {name: bounded, signal: left.x, measure: max, max: 1.01}
"""


class Traced(InProcess):
    """The in-process strategy, saying what the pipeline asked of it and when."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list = []

    def begin(self, prepared, results, resume, checkpoint):
        self.calls.append("begin")
        return super().begin(prepared, results, resume, checkpoint)

    def run(self, prepared, results, todo, journal, checkpoint):
        self.calls.append("run")
        return super().run(prepared, results, todo, journal, checkpoint)

    def end(self, main, timing):
        self.calls.append(("end", main.attrs["status"], "verdict" in main))
        super().end(main, timing)
        return "how the work was shared"


def test_the_pipeline_asks_the_strategy_and_concludes_once(tmp_path):
    """begin → run → end (the strategy's part, the file still running and unjudged) → the
    verdict and the status, written by the pipeline whatever the strategy."""
    scenario = tmp_path / "pair.yaml"
    scenario.write_text(SCENARIO)
    strategy = Traced()
    report = run_into(prepare(scenario), tmp_path / "pair.h5", strategy=strategy)
    assert strategy.calls == ["begin", "run", ("end", "running", False)]
    assert report.balance == "how the work was shared" and report.passed is True
    with h5py.File(tmp_path / "pair.h5") as file:
        assert file.attrs["status"] == "completed"
        assert bool(file["verdict"].attrs["passed"])
        assert "left" in file.attrs["instance_busy_seconds"]


COHORT = SCENARIO + """\
cohort:
  method: grid
  parameters:
    left.m: {values: [1.0, 2.0]}
"""


def test_a_cohort_summary_is_made_from_the_members_ends_it_is_handed(tmp_path):
    """``conclude`` makes the summary and the cohort's verdict from how each member ended,
    judged where it ran (under MPI gathered from the ranks), and reads no member from the file:
    here the file holds none."""
    from cosim.results.recorder import create_results_file, open_for_writing, writing
    from cosim.running.pipeline import conclude
    from cosim.running.strategies import MemberEnd
    from cosim.scenario.criteria import Outcome

    scenario = tmp_path / "cohort.yaml"
    scenario.write_text(COHORT)
    prepared = prepare(scenario)
    results = tmp_path / "cohort.h5"
    create_results_file(results, {}).close()
    met = Outcome("bounded", "left.x", "max", 1.0, float("nan"), 1.01, True, float("nan"),
                  0.0, 0.5)
    ends = {0: MemberEnd(0, "completed", "", [met]), 1: MemberEnd(1, "failed", "it crashed")}
    with writing(open_for_writing(results)) as main:
        report = conclude(main, prepared, results, ends)
        assert "members" not in main
        summary = main["summary"][()]
    assert [s.decode() for s in summary["status"]] == ["completed", "failed"]
    assert list(summary["passed"]) == [True, False] and list(summary["bounded"])[0] == 1.0
    assert report.cohort.passed == 1 and report.cohort.errors == (("000001", "it crashed"),)
