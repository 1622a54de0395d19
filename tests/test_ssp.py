"""SSP 1.0 in and out (cosim.scenario.ssp), against real peers.

- Out: the flagship exported as .ssp is valid against the SSP 1.0 schema, fmpy's SSP reader
  reads it, and libcosim (libcosimpy, `CosimExecution.from_ssp_file`, a C++ engine) runs it:
  at 5, 10, 15 and 20 s its pace and beat counts equal cosim's (Jacobi, the same scheme) and
  its aortic pressure agrees within 1e-9 (relative); measured: 6e-15.
- In: an SSD written by hand to the standard (tests/fixtures/ssp/oscillators: a parameter
  file, an inline parameter set, a LinearTransformation, suppressUnitConversion), which fmpy's
  reader also reads, runs in cosim exactly as the same system written as a scenario does.
- Round trip: export then import gives a scenario with the same results, bit for bit.
- What cosim cannot represent is refused with its line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import fmu_kit as kit
import numpy as np
import pytest
import yaml

from cosim.cli import main
from cosim.errors import ScenarioError
from cosim.results.reader import open_results
from cosim.running.pipeline import run_scenario
from cosim.scenario.ssp import export_ssp, import_ssp, schema_problems

REPO = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "ssp" / "oscillators"
CHECKPOINTS = (5.0, 10.0, 15.0, 20.0)
LIBCOSIM = """
import json, sys
from libcosimpy.CosimExecution import CosimExecution
from libcosimpy.CosimLogging import CosimLogLevel, log_output_level
from libcosimpy.CosimObserver import CosimObserver
log_output_level(CosimLogLevel.ERROR)
execution = CosimExecution.from_ssp_file(sys.argv[1])
observer = CosimObserver.create_last_value()
execution.add_observer(observer)
index = {info.name.decode(): info.index for info in execution.slave_infos()}
refs = {n: {v.name.decode(): v.reference for v in execution.slave_variables(i)}
        for n, i in index.items()}
rows = []
for t in json.loads(sys.argv[2]):
    assert execution.simulate_until(target_time=round(t * 1e9))
    integers = lambda name, var: observer.last_integer_values(index[name], [refs[name][var]])[0]
    reals = lambda name, var: observer.last_real_values(index[name], [refs[name][var]])[0]
    rows.append([t, integers("pacemaker", "vp_count"), integers("myocyte", "beat_count"),
                 reals("heart", "P_ao")])
print(json.dumps(rows))
"""


@pytest.fixture(scope="module")
def flagship(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The flagship with the Jacobi scheme (libcosim's): scenario, its .ssp, cosim's results."""
    folder = tmp_path_factory.mktemp("ssp")
    text = (REPO / "scenarios" / "vvi_complete_av_block.yaml").read_text()
    scenario = folder / "flagship.yaml"
    scenario.write_text(text.replace("algorithm: gauss-seidel", "algorithm: jacobi"))
    archive = export_ssp(scenario, folder / "flagship.ssp")
    results = run_scenario(scenario, folder / "flagship.h5", plot=False).results
    return scenario, archive, results


def at_checkpoints(results: Path) -> list[list[float]]:
    with open_results(results) as res:
        time = res.time
        rows = []
        for t in CHECKPOINTS:
            i = int(np.argmin(abs(time - t)))
            rows.append([t, res["pacemaker.vp_count"][i], res["myocyte.beat_count"][i],
                         res["heart.P_ao"][i]])
    return rows


def test_the_exported_ssp_is_standard_and_fmpy_reads_it(flagship):
    _, archive, _ = flagship
    with zipfile.ZipFile(archive) as files:
        names = set(files.namelist())
        ssd = files.read("SystemStructure.ssd")
    assert names == {"SystemStructure.ssd", *(f"resources/{m}.fmu" for m in
                                              ("Generator", "Lead", "Cell", "Tissue", "Organ"))}
    assert schema_problems(ssd, "SystemStructureDescription.xsd", "x") == []
    from fmpy.ssp.ssd import read_ssd

    read = read_ssd(str(archive), validate=True)
    assert [e.name for e in read.system.elements] == ["pacemaker", "lead", "myocyte",
                                                     "myocardium", "heart"]
    assert len(read.system.connections) == 10


def test_libcosim_runs_the_exported_ssp_and_agrees_with_cosim(flagship):
    _, archive, results = flagship
    done = subprocess.run([sys.executable, "-c", LIBCOSIM, str(archive),
                           json.dumps(CHECKPOINTS)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    theirs, ours = json.loads(done.stdout), at_checkpoints(results)
    for (t, paces, beats, pressure), (_, our_paces, our_beats, our_pressure) in zip(
            theirs, ours, strict=True):
        assert (paces, beats) == (our_paces, our_beats), t
        assert pressure == pytest.approx(our_pressure, rel=1e-9), t
    assert theirs[-1][1] >= 18  # it paced (VVI 60/min, tissue parameters bound)


def test_export_then_import_gives_the_same_run(flagship, tmp_path):
    scenario, archive, results = flagship
    imported = import_ssp(archive, tmp_path / "imported")
    data = yaml.safe_load(imported.read_text())
    assert data["simulation"] == {"start": 0.0, "stop": 20.0, "step": 0.001}
    assert data["instances"]["myocardium"]["parameters"] == {
        "intrinsic_rate": 35.0, "intrinsic_delay": 0.3, "intrinsic_reset": 1}
    data["simulation"]["algorithm"] = "jacobi"
    data["record"] = ["heart.P_ao", "pacemaker.vp_count"]
    imported.write_text(yaml.safe_dump(data))
    again = run_scenario(imported, tmp_path / "again.h5", plot=False).results
    with open_results(again) as mine, open_results(results) as original:
        np.testing.assert_array_equal(mine["heart.P_ao"], original["heart.P_ao"])
        np.testing.assert_array_equal(mine["pacemaker.vp_count"],
                                      original["pacemaker.vp_count"])


@pytest.fixture(scope="module")
def hand_written(tmp_path_factory, build_model) -> Path:
    """The hand-written SSD with its FMUs, as an .ssp archive."""
    folder = tmp_path_factory.mktemp("hand")
    c_oscillator = kit.build_c_oscillator(folder)
    archive = folder / "oscillators.ssp"
    with zipfile.ZipFile(archive, "w") as files:
        files.write(FIXTURE / "SystemStructure.ssd", "SystemStructure.ssd")
        files.write(FIXTURE / "resources" / "left.ssv", "resources/left.ssv")
        files.write(build_model("oscillator"), "resources/Oscillator.fmu")
        files.write(c_oscillator, "resources/c_oscillator.fmu")
    return archive


SAME_SYSTEM = """\
version: 1
fmus: {python: Oscillator.fmu, c: c_oscillator.fmu}
instances:
  left: {fmu: python, parameters: {m: 1.0, k: 1.0, c: 0.1, k_c: 0.5, x0: 1.0}}
  right: {fmu: c, parameters: {m: 2.0, k: 1.5, k_c: 0.5, v0: 0.3}}
connections:
  - {from: left.x, to: right.x_other, factor: 0.5, offset: 0.1}
  - right.x -> left.x_other
simulation: {stop: 4.0, step: 0.01}
record: [left.x, right.x, right.x_other]
"""


def test_a_hand_written_standard_ssd_runs_as_the_same_system_written_as_a_scenario(
        hand_written, tmp_path):
    from fmpy.ssp.ssd import read_ssd

    assert [e.name for e in read_ssd(str(hand_written), validate=True).system.elements] == [
        "left", "right"]  # fmpy, an independent reader, takes it as standard
    scenario = import_ssp(hand_written, tmp_path / "imported", step=0.01)
    data = yaml.safe_load(scenario.read_text())
    assert data["connections"] == [
        {"from": "left.x", "to": "right.x_other", "factor": 0.5, "offset": 0.1},
        {"from": "right.x", "to": "left.x_other", "convert_units": False}]
    data["record"] = ["left.x", "right.x", "right.x_other"]
    scenario.write_text(yaml.safe_dump(data))
    imported = run_scenario(scenario, tmp_path / "imported.h5", plot=False).results
    with zipfile.ZipFile(hand_written) as files:
        for name in ("Oscillator.fmu", "c_oscillator.fmu"):
            (tmp_path / name).write_bytes(files.read(f"resources/{name}"))
    (tmp_path / "same.yaml").write_text(SAME_SYSTEM)
    written = run_scenario(tmp_path / "same.yaml", tmp_path / "same.h5", plot=False).results
    with open_results(imported) as a, open_results(written) as b:
        for name in ("left.x", "right.x", "right.x_other"):
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
        left, fed = a["left.x"], a["right.x_other"]
    # Jacobi: over the step from point n, right's input is 0.5 · left.x(n) + 0.1
    np.testing.assert_allclose(fed[1:], 0.5 * left[:-1] + 0.1, rtol=0, atol=1e-15)


def edit(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize("change, message", [
    (("<ssd:Elements>", "<ssd:Elements><ssd:System name=\"inner\"/>"),
     "'inner': nested systems"),
    (("<ssc:LinearTransformation factor=\"0.5\" offset=\"0.1\"/>",
      "<ssc:IntegerMappingTransformation><ssc:MapEntry source=\"1\" target=\"2\"/>"
      "</ssc:IntegerMappingTransformation>"), "IntegerMappingTransformation is not supported"),
    (("startElement=\"right\" startConnector", "startConnector"),
     "a connection to the system's own connectors is not supported"),
    (("<ssd:Connections>", "<ssd:Connectionz>"), "not well-formed XML: Opening and ending tag "
     "mismatch"),
    (('suppressUnitConversion="true"', 'suppressUnitConversion="yes"'),
     "'yes' is not a valid value of the atomic type 'xs:boolean'"),
    (("<ssd:DefaultExperiment startTime=\"0\" stopTime=\"4\"/>", ""),
     "the SSD's DefaultExperiment has no stopTime"),
])
def test_what_cosim_cannot_represent_is_refused_with_its_line(hand_written, tmp_path, change,
                                                              message):
    folder = tmp_path / "edited"
    with zipfile.ZipFile(hand_written) as files:
        files.extractall(folder)
    ssd = folder / "SystemStructure.ssd"
    ssd.write_text(edit(ssd.read_text(), *change))
    with pytest.raises(ScenarioError) as caught:
        import_ssp(folder, tmp_path / "out", step=0.01)
    text = str(caught.value)
    assert message in text and str(folder) in text
    if "stopTime" not in message:
        assert f"{folder}:" in text and text.split(f"{folder}:")[1].split(":")[0].isdigit()


def test_no_step_anywhere_asks_for_one(hand_written, tmp_path, capsys):
    assert main(["import-ssp", str(hand_written), "-o", str(tmp_path / "x")]) == 1
    assert "give one: cosim import-ssp --step 0.001" in capsys.readouterr().err
    assert main(["import-ssp", str(hand_written), "-o", str(tmp_path / "x"), "--step",
                 "0.01"]) == 0
    assert (tmp_path / "x" / "oscillators.yaml").is_file()
    assert (tmp_path / "x" / "resources" / "Oscillator.fmu").is_file()


def test_export_command_and_a_transform_survive_the_round_trip(hand_written, tmp_path, capsys):
    with zipfile.ZipFile(hand_written) as files:
        for name in ("Oscillator.fmu", "c_oscillator.fmu"):
            (tmp_path / name).write_bytes(files.read(f"resources/{name}"))
    (tmp_path / "same.yaml").write_text(SAME_SYSTEM)
    assert main(["export-ssp", str(tmp_path / "same.yaml")]) == 0
    assert capsys.readouterr().out == f"ssp: {tmp_path / 'same.ssp'}\n"
    back = yaml.safe_load(import_ssp(tmp_path / "same.ssp", tmp_path / "back").read_text())
    assert back["connections"][0] == {"from": "left.x", "to": "right.x_other", "factor": 0.5,
                                      "offset": 0.1}
    shutil.rmtree(tmp_path / "back")
