"""Results files: HDF5 layout, provenance, compression, the reader, verdicts, failed runs."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import fmu_kit as kit  # tests/fmu_kit.py: FMUs and broken archives for tests
import h5py
import numpy as np
import pytest

from cosim.coupling.graph import CouplingGraph
from cosim.errors import CosimError
from cosim.master.description import Settings
from cosim.master.execution import Execution
from cosim.results.reader import open_results
from cosim.results.recorder import Recorder, create_results_file
from cosim.running.pipeline import prepare, run_into, run_scenario

SCENARIO = """\
version: 1
name: results layout
fmus:
  osc: c_oscillator.fmu
instances:
  left:
    fmu: osc
    scale: organ
    parameters: {m: 1.0, x0: 1.0}
  right: {fmu: osc, parameters: {m: 2.0, x0: 0.0}}
connections:
  - left.x -> right.x_other
  - right.x -> left.x_other
simulation: {start: 0.0, stop: 2.0, step: 0.01, algorithm: gauss-seidel}
record: [left.*, right.x, right.x_other]
criteria:
  - {name: bounded, signal: left.x, measure: max, max: 1.0}
  - {name: right moves far, signal: right.x, measure: max, min: 5.0}
"""





@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("results")
    kit.build_c_oscillator(folder)
    return folder


@pytest.fixture(scope="module")
def run(folder) -> tuple[Path, Path]:
    scenario = folder / "layout.yaml"
    scenario.write_text(SCENARIO, encoding="utf-8")
    report = run_scenario(scenario, folder / "layout.h5", plot=False)
    assert report.passed is False and [o.passed for o in report.outcomes] == [True, False]
    return scenario, report.results


def test_layout_and_variable_attributes(run):
    with h5py.File(run[1], "r") as file:
        assert set(file) == {"time", "instances", "verdict", "log", "master"}
        assert file["master"].attrs["steps"] == len(file["time"]) - 1
        assert set(file["instances"]) == {"left", "right"}
        assert set(file["instances/left"]) == {"x", "v", "time"}
        assert set(file["instances/right"]) == {"x", "x_other", "time"}
        assert file["instances/left/time"] == file["time"]  # a hard link: xarray's coordinate
        x = file["instances/left/x"]
        assert (x.attrs["units"], x.attrs["causality"], x.attrs["type"]) == ("m", "output", "Real")
        assert x.attrs["long_name"] == "Position"
        assert file["instances/right/x_other"].attrs["causality"] == "input"
        assert x.dims[0][0] == file["time"]  # time is the dimension scale
        for dataset in (file["time"], x):
            assert dataset.chunks is not None and dataset.compression == "gzip"
            assert dataset.shuffle and dataset.shape == (201,)
        group = file["instances/left"].attrs
        assert (group["model_name"], group["scale"]) == ("COscillator", "organ")
        assert json.loads(group["parameters"]) == {"m": 1.0, "x0": 1.0}


def test_root_provenance(run, folder):
    scenario, results = run
    sha256 = hashlib.sha256((folder / "c_oscillator.fmu").read_bytes()).hexdigest()
    with h5py.File(results, "r") as file:
        attrs = file.attrs
        assert (attrs["format"], attrs["format_version"]) == ("cosim-results", 2)
        assert attrs["status"] == "completed" and attrs["error"] == ""
        assert attrs["scenario_text"] == scenario.read_text()
        assert attrs["scenario_file"] == str(scenario)
        fmus = json.loads(attrs["fmus"])
        assert fmus["left"] == {"file": "c_oscillator.fmu", "sha256": sha256,
                                "model_name": "COscillator", "generation_tool": "hand-written C"}
        versions = json.loads(attrs["versions"])
        assert versions["numpy"] == np.__version__ and versions["h5py"] == h5py.__version__
        assert {"python", "fmpy", "cosim", "scipy"} <= set(versions)
        assert (attrs["algorithm"], attrs["step"], attrs["stop"]) == ("gauss-seidel", 0.01, 2.0)


def test_reader_api(run):
    with open_results(run[1]) as results:
        assert results.status == "completed"
        assert sorted(results.variables) == ["left.v", "left.x", "right.x", "right.x_other"]
        assert "left.x" in results and "left.nope" not in results
        np.testing.assert_allclose(results.time, np.linspace(0.0, 2.0, 201), atol=1e-12)
        assert results.unit("left.v") == "m/s" and results.description("left.v") == "Velocity"
        left, right_input = results["left.x"], results["right.x_other"]
        assert left[0] == 1.0 and results["right.x"][0] == 0.0
        # Gauss-Seidel, left steps first: right's input over step n is left.x at point n + 1
        np.testing.assert_array_equal(right_input[1:], left[1:])
        with pytest.raises(KeyError, match="'left.nope' was not recorded in .*; did you mean "
                           "'left.x' or 'left.v'"):
            results["left.nope"]
        with pytest.raises(KeyError, match="'zz.q' was not recorded in .*; recorded: left.v, "):
            results["zz.q"]
        assert results.attrs["fmus"]["right"]["model_name"] == "COscillator"


def test_verdict_is_stored(run):
    with open_results(run[1]) as results:
        verdict, right = results.verdict, results["right.x"]
    assert verdict["passed"] is False
    assert verdict["summary"].startswith("VERDICT: FAIL (1 of 2 criteria met)")
    bounded, far = verdict["criteria"]
    assert (bounded["name"], bounded["passed"], bounded["value"]) == ("bounded", True, 1.0)
    assert (far["name"], far["passed"]) == ("right moves far", False)
    assert far["value"] == pytest.approx(right.max()) and far["min"] == 5.0


def test_record_interval_thins_the_rows(folder, tmp_path):
    graph = CouplingGraph()
    graph.add_instance("osc", folder / "c_oscillator.fmu")
    settings = Settings(0.0, 1.0, 0.01, record={"osc": ("x",)}, record_interval=0.05)
    with create_results_file(tmp_path / "thin.h5", {"step": 0.01}) as file:
        Execution(graph, settings).run([Recorder(file, block_rows=7)])
    with open_results(tmp_path / "thin.h5") as results:
        np.testing.assert_allclose(results.time, np.arange(21) * 0.05, atol=1e-12)
        np.testing.assert_allclose(results["osc.x"], np.cos(np.sqrt(1.5) * results.time),
                                   atol=1e-12)


def test_not_a_results_file(tmp_path):
    (tmp_path / "junk.h5").write_text("junk")
    with pytest.raises(CosimError, match="cannot open the results file"):
        open_results(tmp_path / "junk.h5")


def kept_file(stderr: str) -> Path:
    """The partial file a run that did not complete names on stderr."""
    return Path(re.search(r"kept in (\S+\.h5)", stderr).group(1))


@pytest.fixture(scope="module")
def failing_fmu(folder) -> Path:
    return kit.build_failing_model(folder)


FAILING_RUN = """\
import json, sys
from cosim.errors import SimulationError
from cosim.master.description import Settings
from cosim.master.execution import Execution
from cosim.coupling.graph import CouplingGraph
from cosim.results.recorder import Recorder, create_results_file

graph = CouplingGraph()
graph.add_instance("osc", sys.argv[1])
graph.add_instance("pump", sys.argv[2])
graph.connect("osc.x", "pump.u")
settings = Settings(0.0, 1.0, 0.01, record={"osc": ("x",), "pump": ("y",)})
with create_results_file(sys.argv[3], {"step": 0.01}) as file:
    try:
        Execution(graph, settings).run([Recorder(file, block_rows=16)])
    except SimulationError as error:
        print(json.dumps([error.instance, error.function, error.time, str(error)]))
"""


def test_fmu_failing_mid_run_keeps_the_data_up_to_the_failure(folder, failing_fmu, tmp_path):
    # In a subprocess: after a pythonfmu FMU fails with fmi2Fatal, a later garbage collection
    # in the same process may crash (seen with pythonfmu 0.7.0), which would end the session.
    output = tmp_path / "failed.h5"
    done = subprocess.run([sys.executable, "-c", FAILING_RUN, str(folder / "c_oscillator.fmu"),
                           str(failing_fmu), str(output)], capture_output=True, text=True,
                          timeout=60, check=False)
    instance, function, time, text = json.loads(done.stdout.strip().splitlines()[-1])
    assert (instance, function, time) == ("pump", "fmi2DoStep", 0.5)
    assert "the failing model broke on purpose" in text
    # the status is the run's to write (cosim.running.pipeline)
    with open_results(output) as results:
        np.testing.assert_allclose(results.time, np.arange(51) * 0.01, atol=1e-12)
        np.testing.assert_allclose(results["pump.y"], results.time, atol=1e-12)


def test_cli_run_of_a_failing_fmu(folder, failing_fmu, tmp_path):
    scenario = folder / "failing.yaml"
    scenario.write_text(textwrap.dedent(f"""\
        version: 1
        fmus: {{pump: {failing_fmu.name}}}
        instances: {{pump: {{fmu: pump, parameters: {{fail_after: 0.25}}}}}}
        simulation: {{stop: 1.0, step: 0.05}}
        """), encoding="utf-8")
    output = tmp_path / "failing.h5"
    done = subprocess.run([sys.executable, "-m", "cosim.cli", "run", str(scenario), "-o",
                           str(output), "--no-plot"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: instance 'pump', t = 0.25 s: fmi2DoStep failed")
    assert done.stderr.count("error: ") == 1 and "Traceback" not in done.stderr
    assert not output.exists(), "the target only ever holds a completed run"
    kept = kept_file(done.stderr)
    assert kept.parent == tmp_path and kept.name.startswith("failing.partial-")
    with open_results(kept) as results:
        assert results.status == "failed"
        assert results.attrs["error"].startswith("instance 'pump', t = 0.25 s: fmi2DoStep")
        np.testing.assert_allclose(results["pump.y"], np.arange(6) * 0.05, atol=1e-12)


KILLED_RUN = """\
import os, sys
from cosim.master.description import Settings
from cosim.master.execution import Execution
from cosim.coupling.graph import CouplingGraph
from cosim.results.recorder import Recorder, create_results_file

graph = CouplingGraph()
graph.add_instance("osc", sys.argv[1])
file = create_results_file(sys.argv[2], {"step": 0.01})


class Kill:
    def started(self, run): pass
    def stepped(self, time):
        if time >= 0.5:
            os._exit(3)  # as if killed: no finished(), no close()
    def finished(self, error): pass


Execution(graph, Settings(0.0, 1.0, 0.01, record={"osc": ("x",)})).run(
    [Recorder(file, block_rows=20), Kill()])
"""


def test_killed_run_keeps_the_flushed_blocks(folder, tmp_path):
    output = tmp_path / "killed.h5"
    done = subprocess.run([sys.executable, "-c", KILLED_RUN, str(folder / "c_oscillator.fmu"),
                           str(output)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 3, done.stderr
    with open_results(output) as results:
        assert results.status == "running"
        np.testing.assert_allclose(results.time, np.arange(40) * 0.01, atol=1e-12)
        np.testing.assert_allclose(results["osc.x"], np.cos(np.sqrt(1.5) * results.time),
                                   atol=1e-12)


def test_a_nearly_full_disk_stops_the_run_with_a_readable_file(folder, tmp_path, monkeypatch):
    """Below the margin of free space, the recorder writes its block, stops the run, and
    the run still has room for the status: the file is readable and says why it ended."""
    import cosim.results.recorder as recorder

    free = iter([1 << 40, recorder.MARGIN_BYTES])  # the second flush finds it full
    monkeypatch.setattr(recorder, "_free_bytes", lambda path: next(free))
    scenario = tmp_path / "long.yaml"
    scenario.write_text(f"""\
version: 1
fmus: {{osc: {folder / "c_oscillator.fmu"}}}
instances: {{osc: {{fmu: osc}}}}
simulation: {{stop: 25.0, step: 0.01}}
record: [osc.x]
""")
    output = tmp_path / "full.h5"
    with pytest.raises(CosimError) as caught:
        run_into(prepare(scenario), output)
    assert str(caught.value) == (f"the disk holding the results file {output} is full (1.0 MB "
                                 "left): the run stopped at t = 20.47 s; every row up to there "
                                 "is in the file")
    with open_results(output) as results:
        assert results.status == "failed" and results.attrs["error"] == str(caught.value)
        np.testing.assert_allclose(results.time, np.arange(2048) * 0.01, atol=1e-12)
