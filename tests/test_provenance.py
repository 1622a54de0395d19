"""What was run is what was meant: SHA-256 pins of FMUs, and the provenance of a results file
(cosim's version and commit, host, command line, scenario and cohort table hashes)."""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import fmu_kit as kit  # tests/fmu_kit.py
import pytest

import cosim
from cosim import cli
from cosim.errors import FMUError, ScenarioError
from cosim.fmi.fmu import Instance, read_fmu
from cosim.fmi.isolation import Isolation, ProcessInstance
from cosim.results.reader import open_results
from cosim.running.pipeline import run_scenario
from cosim.running.provenance import CHECKOUT, command_line, source_commit
from cosim.scenario.scenario import build, load_scenario


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The C oscillator and a variant of it (another file, another hash)."""
    folder = tmp_path_factory.mktemp("pins")
    c_fmu = kit.build_c_oscillator(folder)
    kit.unit_variant(c_fmu, folder / "variant.fmu")
    return folder


def pinned_scenario(folder: Path, pin: str) -> Path:
    path = folder / "pinned.yaml"
    path.write_text(f"""\
version: 1
fmus:
  osc:
    file: c_oscillator.fmu
    sha256: {pin}
instances:
  a: osc
simulation: {{stop: 0.1, step: 0.01}}
""", encoding="utf-8")
    return path


def test_a_matching_pin_runs(folder, capsys):
    path = pinned_scenario(folder, sha256(folder / "c_oscillator.fmu").upper())
    scenario = load_scenario(path)
    assert {key: fmu.sha256 for key, fmu in scenario.fmus.items()} == {
        "osc": sha256(folder / "c_oscillator.fmu")}
    build(scenario)
    assert cli.main(["check", str(path)]) == 0


def test_a_mismatching_pin_refuses_the_run_with_both_hashes(folder, capsys):
    pin = sha256(folder / "variant.fmu")
    path = pinned_scenario(folder, pin)
    with pytest.raises(ScenarioError) as caught:
        build(load_scenario(path))
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.key) == (str(path), 5, "fmus.osc.sha256")
    assert pin in problem.message and sha256(folder / "c_oscillator.fmu") in problem.message
    assert problem.hint
    assert cli.main(["run", str(path), "-o", str(folder / "refused.h5")]) == 1
    assert capsys.readouterr().err.startswith(f"error: {path}:5: fmus.osc.sha256: SHA-256 "
                                              "mismatch")
    assert not (folder / "refused.h5").exists()


@pytest.mark.parametrize("text, line, key, message", [
    ("  osc: {file: c_oscillator.fmu, sha256: abc}\n", 3, "fmus.osc.sha256",
     "sha256 must be 64 hexadecimal digits, got 'abc'"),
    ("  osc: {sha256: " + "a" * 64 + "}\n", 3, "fmus.osc.file",
     "must be a file path or model name, got None"),
    ("  osc: {file: c_oscillator.fmu, md5: x}\n", 3, "fmus.osc.md5", "unknown key 'md5'"),
])
def test_wrong_pins_are_located(folder, text, line, key, message):
    path = folder / "wrong_pin.yaml"
    path.write_text("version: 1\nfmus:\n" + text + "instances: {a: osc}\n"
                    "simulation: {stop: 0.1, step: 0.01}\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    problems = [p for p in caught.value.problems if p.key != "instances.a.fmu"]
    assert [(p.line, p.key) for p in problems] == [(line, key)]
    assert message in problems[0].message


@pytest.mark.parametrize("isolation", [None, Isolation("process")])
def test_an_fmu_replaced_after_its_check_is_not_run(folder, tmp_path, isolation):
    """The bytes extracted are the bytes hashed (and pinned): a swap in between is refused."""
    path = tmp_path / "swapped.fmu"
    shutil.copy(folder / "c_oscillator.fmu", path)
    fmu = read_fmu(path)
    shutil.copy(folder / "variant.fmu", path)
    instance = Instance(fmu, "a") if isolation is None else ProcessInstance(fmu, "a", isolation)
    try:
        with pytest.raises(FMUError, match="the FMU file changed after it was checked"):
            instance.instantiate()
    finally:
        instance.close()


def test_source_commit_of_this_checkout_and_of_no_checkout(tmp_path):
    head = subprocess.run(["git", "-C", str(CHECKOUT), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()
    commit, modified = source_commit()
    assert commit == head and modified in (True, False)
    assert source_commit(tmp_path) == ("none", None)


def test_command_line_shows_the_program_name_and_quotes_arguments():
    assert command_line(["/opt/venv/bin/cosim", "run", "my scenario.yaml", "-o", "x.h5"]) == \
        "cosim run 'my scenario.yaml' -o x.h5"


def test_results_file_records_what_produced_it(folder, tmp_path, monkeypatch):
    scenario = folder / "table.yaml"
    table = folder / "members.csv"
    table.write_text("a.k\n1.0\n2.0\n", encoding="utf-8")
    scenario.write_text("version: 1\nfmus: {osc: c_oscillator.fmu}\ninstances: {a: osc}\n"
                        "simulation: {stop: 0.1, step: 0.01}\n"
                        "cohort: {method: table, table: members.csv}\n", encoding="utf-8")
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/cosim", "run", "table.yaml"])
    run_scenario(Path("table.yaml"), tmp_path / "out.h5", plot=False)
    with open_results(tmp_path / "out.h5") as results:
        attrs = results.attrs
    assert attrs["cosim_version"] == cosim.__version__
    assert attrs["cosim_commit"] == source_commit()[0]
    assert attrs["cosim_modified"] in ("yes", "no")
    assert attrs["host"] == socket.gethostname()
    assert attrs["command_line"] == "cosim run table.yaml"
    assert attrs["scenario_file"] == str(scenario.resolve())  # absolute, though run relative
    assert attrs["scenario_sha256"] == sha256(scenario)
    assert attrs["cohort_table"] == {"file": str(table.resolve()), "sha256": sha256(table)}
    assert attrs["isolation"] == {"a": "none"}


def test_a_supervised_run_records_the_users_command_not_the_workers(tmp_path):
    """``cosim run`` runs the scenario in a worker process (``python -m cosim.running.worker
    <folder>``): the results name the command the user typed."""
    kit.build_c_oscillator(tmp_path)
    scenario = tmp_path / "one.yaml"
    scenario.write_text("version: 1\nfmus: {osc: c_oscillator.fmu}\ninstances: {a: osc}\n"
                        "simulation: {stop: 0.1, step: 0.01}\n", encoding="utf-8")
    cosim_command = Path(sys.executable).parent / "cosim"
    done = subprocess.run([str(cosim_command), "run", "one.yaml", "-o", "out.h5", "--no-plot"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with open_results(tmp_path / "out.h5") as results:
        assert results.attrs["command_line"] == "cosim run one.yaml -o out.h5 --no-plot"
