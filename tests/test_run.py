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
