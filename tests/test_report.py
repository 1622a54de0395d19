"""`cosim report`: one self-contained HTML file with the verdict, the plots with the criteria
drawn, the coupling graph, V&V 40's sections, the models' test evidence and the provenance;
written automatically after a run. Checked as parsed HTML, and in headless Chromium when the
machine has it (Debian's `chromium` package)."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml

from cosim.cli import main
from cosim.errors import ScenarioError
from cosim.results.reader import open_results
from cosim.results.report import write_report
from cosim.running.pipeline import run_scenario
from cosim.scenario.credibility import model_risk, write_evidence
from cosim.scenario.scenario import load_scenario

REPO = Path(__file__).resolve().parent.parent
CREDIBILITY = {"question": "Does VVI pacing restore cardiac output in complete AV block?",
               "context_of_use": "Bench-to-virtual comparison of the lower-rate behaviour.",
               "model_influence": "medium", "decision_consequence": "high"}


class Page(HTMLParser):
    """What a report holds: headings, table cells, SVG text, every src/href, tags used."""

    def __init__(self, text: str):
        super().__init__()
        self.headings, self.cells, self.links, self.tags, self.text = [], [], [], set(), []
        self._in: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self._in.append(tag)
        self.links += [v for k, v in attrs if k in ("src", "href", "xlink:href")]
        if tag in ("td", "h2", "h3"):
            self._text = []

    def handle_endtag(self, tag):
        while self._in and self._in.pop() != tag:
            pass
        if tag in ("td", "h2", "h3"):
            text = "".join(self._text).strip()
            (self.cells if tag == "td" else self.headings).append(text)

    def handle_data(self, data):
        self.text.append(data)
        if hasattr(self, "_text"):
            self._text.append(data)


@pytest.fixture(scope="module")
def flagship(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("report")
    data = yaml.safe_load((REPO / "scenarios" / "vvi_complete_av_block.yaml").read_text())
    data["credibility"] = CREDIBILITY
    scenario = folder / "flagship.yaml"
    scenario.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    report = run_scenario(scenario, folder / "flagship.h5")
    assert report.html == folder / "flagship.html" and report.plot.exists()
    assert "report:  " in report.text()
    return report.results, report.html


def test_a_run_writes_a_report_structured_as_vv40_evidence(flagship):
    results, html = flagship
    page = Page(html.read_text(encoding="utf-8"))
    assert [h for h in page.headings if h[:1].isdigit()] == [
        "1 Question of interest and context of use", "2 Model risk", "3 Computational model",
        "4 Verification and validation evidence", "5 Results of this run", "6 Provenance"]
    text = "".join(page.text)
    assert CREDIBILITY["question"] in text and CREDIBILITY["context_of_use"] in text
    assert model_risk("medium", "high") == 4 and "4 of 5" in text
    assert (model_risk("low", "low"), model_risk("high", "high")) == (1, 5)
    with open_results(results) as res:
        criteria, fmus = res.verdict["criteria"], res.attrs["fmus"]
    for c in criteria:  # the verdict table: figure, limit and window of every criterion
        row = page.cells[page.cells.index(c["name"]) - 1:][:7]
        assert row[0] == "PASS" and row[3] == f"{c['value']:.4g}"
        assert row[5] == f"{c['window_start']:g}–{c['window_stop']:g} s"
    assert "≥ 58 and ≤ 62" in page.cells
    for info in fmus.values():  # provenance: every FMU's hash
        assert info["sha256"] in page.cells
    assert "cosim_commit" in text and "scenario_sha256" in text


def test_plots_draw_criteria_and_explain_marker_codes_and_the_graph_is_a_picture(flagship):
    text = flagship[1].read_text(encoding="utf-8")
    assert text.count("<svg") >= 2  # the coupling graph and the signals
    assert "3 VP (ventricular pace) (19)" in text  # the pacing marker's legend, with counts
    assert "≥ 55: diastolic aortic pressure" in text  # a limit drawn in its window
    assert "V_pace_v→V_pace_v" in text and "myocardium" in text  # graph edges and nodes


def test_the_report_loads_nothing_from_anywhere(flagship):
    page = Page(flagship[1].read_text(encoding="utf-8"))
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
    assert all(link.startswith(("#", "data:")) for link in page.links), page.links
    assert "url(http" not in flagship[1].read_text(encoding="utf-8")


def test_evidence_is_shown_for_the_fmu_bytes_the_tests_ran_against(flagship, tmp_path):
    results, _ = flagship
    with open_results(results) as res:
        generator = res.attrs["fmus"]["pacemaker"]
    write_evidence(tmp_path, "generator", Path(generator["file"]), generator["sha256"],
                   [{"test": "tests/models/test_generator.py::test_vvi", "doc": "VVI paces",
                     "outcome": "passed"},
                    {"test": "tests/models/test_generator.py::test_ddd", "doc": "DDD tracks",
                     "outcome": "failed"}], "abc123")
    write_evidence(tmp_path, "lead", Path("Lead.fmu"), "0" * 64,  # other bytes: not shown
                   [{"test": "t", "doc": "", "outcome": "passed"}], "abc123")
    page = Page(write_report(results, tmp_path / "r.html", tmp_path).read_text())
    assert "Generator: 1 failed, 1 passed" in page.headings
    assert "VVI paces" in page.cells and "DDD tracks" in page.cells
    text = "".join(page.text)
    assert text.count("No recorded test evidence for this FMU") == 4  # the other four


def test_cohort_report_shows_distributions_and_failing_members(tmp_path):
    report = run_scenario(REPO / "scenarios" / "exit_block.yaml", tmp_path / "exit.h5")
    page = Page(report.html.read_text(encoding="utf-8"))
    assert "5 Results over the cohort (2 members)" in page.headings
    assert "Failing members" in page.headings
    member = page.cells.index("000000")  # 3.5 V: capture lost
    assert "capture ratio after the threshold rise" in page.cells[member + 2]
    assert "000001" not in page.cells  # 7.5 V passed
    assert report.html.read_text().count("<svg") >= 2
    assert "1 of 2 members passed" in "".join(page.text)


def test_cosim_report_command_and_its_errors(flagship, tmp_path, capsys):
    out = tmp_path / "again.html"
    assert main(["report", str(flagship[0]), "-o", str(out)]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert main(["report", str(tmp_path / "none.h5")]) == 1
    assert "no such results file" in capsys.readouterr().err
    bad = tmp_path / "bad.h5"
    bad.write_text("not HDF5")
    assert main(["report", str(bad)]) == 1
    assert capsys.readouterr().err.count("\n") == 1  # one line, no traceback


def test_credibility_levels_are_checked_with_their_line(tmp_path):
    data = yaml.safe_load((REPO / "scenarios" / "sinus_rhythm.yaml").read_text())
    data["credibility"] = {"model_influence": "huge", "questoin": "x"}
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(scenario)
    text = str(caught.value)
    assert "credibility.model_influence: must be low, medium or high, got 'huge'" in text
    assert "credibility.questoin: unknown key 'questoin'" in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install "
                    "chromium); the parsed-HTML tests above still ran")
def test_the_report_renders_in_a_real_browser(flagship, tmp_path):
    from PIL import Image

    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    url = flagship[1].resolve().as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    page = Page(dom)
    assert "5 Results of this run" in page.headings and "PASS" in page.cells
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,3000", url],
                   capture_output=True, timeout=120, check=True)
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.shape == (3000, 1200)
    rows = pixels.std(axis=1) > 1.0  # rows with something drawn on them
    assert rows.mean() > 0.5  # the page is laid out top to bottom: text, tables, figures
