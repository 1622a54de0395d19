"""The worked example of docs/twins.md, step by step (scenarios/twin/): the record's figures
are the ones the twin uses, the fit finds the lead's resistance, the personalised twin
captures at the record's threshold and not below, and the therapy table's verdicts are the
documented ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from cosim.twins.personalise import fit_scenario
from cosim.twins.therapy import compare_therapies

EXAMPLE = Path(__file__).resolve().parent.parent / "scenarios" / "twin"


@pytest.mark.slow
def test_the_worked_example(tmp_path):
    record = yaml.safe_load((EXAMPLE / "interrogation.yaml").read_text())
    twin = yaml.safe_load((EXAMPLE / "twin.yaml").read_text())
    impedance = np.loadtxt(EXAMPLE / record["measurements"]["impedance_history"],
                           delimiter=",", comments="#", skiprows=2)[-1, 1]
    assert twin["fit"]["targets"][0]["value"] == impedance  # the last interrogation's
    assert twin["patient"]["id"] == record["patient"]

    done = fit_scenario(EXAMPLE / "twin.yaml", tmp_path / "twin.h5",
                        personalised=tmp_path / "twin.personalised.yaml", plot=False)
    assert done.result.values[0] == pytest.approx(impedance - 50.0, abs=0.5)  # R_conductor 50
    assert done.result.sd[0] == pytest.approx(10.0, rel=0.01)  # the measurement's 10 ohm
    assert done.report.passed

    threshold = record["measurements"]["capture_threshold"]["value"]
    amplitudes = {"3.5 V (now)": 3.5, "2.5 V": 2.5, "1.5 V": 1.5, "at threshold": threshold,
                  "below": threshold - 0.01}
    comparison = compare_therapies(
        tmp_path / "twin.personalised.yaml",
        {k: {"pacemaker.v_amplitude": v} for k, v in amplitudes.items()},
        tmp_path / "therapy.h5", threshold=threshold, window=(2.0, 10.0))
    capture = {f.name: f for f in comparison.figures}["capture"].values
    assert capture["at threshold"] == 1.0 and capture["below"] == 0.0
    assert [comparison.passed(p) for p in ("3.5 V (now)", "2.5 V", "1.5 V")] == [True, True,
                                                                                False]
