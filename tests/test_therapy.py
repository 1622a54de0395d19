"""Therapy comparison (``cosim.twins.therapy``): two programmings of the flagship's VVI
pacemaker (3.5 V and 0.7 V at 0.4 ms; the model's threshold there is 0.84 V) run as one
labelled cohort and compared side by side, each figure with its verdict."""

from __future__ import annotations

from pathlib import Path

import h5py
import pytest

from cosim.api import compare_therapies  # the API, as a user calls it (cosim.twins.therapy)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    folder = tmp_path_factory.mktemp("therapy")
    text = (REPO / "scenarios" / "vvi_complete_av_block.yaml").read_text()
    (folder / "twin.yaml").write_text(text.replace("stop: 20.0", "stop: 10.0"))
    return compare_therapies(folder / "twin.yaml",
                             {"3.5 V": {"pacemaker.v_amplitude": 3.5},
                              "0.7 V": {"pacemaker.v_amplitude": 0.7}},
                             folder / "therapy.h5", threshold=0.84, window=(4.0, 10.0))


def test_a_safe_programming_passes_and_one_below_threshold_fails(comparison):
    figures = {f.name: f for f in comparison.figures}
    assert comparison.passed("3.5 V") and not comparison.passed("0.7 V")
    assert figures["capture margin"].values == pytest.approx({"3.5 V": 3.5 / 0.84,
                                                              "0.7 V": 0.7 / 0.84})
    assert figures["capture"].values["3.5 V"] == 1.0 and figures["capture"].values["0.7 V"] < 0.5
    assert figures["cardiac output"].passed("3.5 V") and not figures["cardiac output"].passed(
        "0.7 V")
    assert figures["pacing"].values["3.5 V"] == pytest.approx(100.0)
    # a smaller pulse draws less charge: the battery lasts longer
    assert figures["battery longevity"].values["0.7 V"] > figures["battery longevity"].values[
        "3.5 V"]
    text = comparison.text()
    assert "3.5 V" in text.splitlines()[0] and "FAIL" in text.splitlines()[-1]


def test_the_programmings_are_the_labelled_members_of_one_cohort(comparison):
    with h5py.File(comparison.results) as f:
        assert list(f["summary"]["pacemaker.v_amplitude"]) == [3.5, 0.7]
        assert list(f["summary"]["passed"]) == [True, False]  # the scenario's own criteria
