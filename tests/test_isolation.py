"""``isolation: process``: an FMU in a child process, with the results of one process, and its
crashes, hangs, memory blow-ups and tampering kept away from the master, the file and the
other instances.

The hostile FMU is ``Saboteur`` (tests/fmu_kit.py): from time ``at`` its step does ``action``.
Every isolated run checks afterwards that no child process and no temporary folder is left.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import fmu_kit as kit  # tests/fmu_kit.py
import numpy as np
import pytest

from cosim import cli
from cosim.coupling.graph import CouplingGraph
from cosim.errors import ScenarioError, SimulationError
from cosim.fmi.fmu import Instance
from cosim.fmi.isolation import Isolation, ProcessInstance
from cosim.fmi.isolation_child import CALL, STEP
from cosim.master.description import Event, Settings
from cosim.master.execution import Execution
from cosim.results.reader import open_results
from cosim.running.pipeline import run_scenario
from cosim.scenario.scenario import build, load_scenario

PROCESS = Isolation("process")
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def fmus(tmp_path_factory) -> Path:
    """A folder with the C oscillator, its once-per-process variant and the Saboteur."""
    folder = tmp_path_factory.mktemp("isolation_fmus")
    c_fmu = kit.build_c_oscillator(folder)
    kit.once_per_process_variant(c_fmu, folder / "once.fmu")
    kit.build_saboteur(folder)
    return folder


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """Temporary folders of this test go to their own place, so leftovers can be counted."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def leftovers(tmp: Path) -> tuple[list[str], list[int]]:
    """Child folders still on disk, and child processes of this process still present."""
    folders = [p.name for p in tmp.glob("cosim_isolated_*")]
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(status.split("PPid:")[1].split()[0])
        if parent == os.getpid() and b"cosim.fmi.isolation_child" in command:
            children.append(int(entry.name))
    return folders, children


def oscillators(python_fmu: Path, c_fmu: Path, isolation: Isolation | None) -> CouplingGraph:
    graph = CouplingGraph()
    graph.add_instance("left", python_fmu, parameters={"k": 2.0, "c": 0.1}, isolation=isolation)
    graph.add_instance("right", c_fmu, parameters={"m": 2.0, "x0": 0.0, "v0": 0.3},
                       isolation=isolation)
    graph.connect("left.x", "right.x_other")
    graph.connect("right.x", "left.x_other")
    graph.validate()
    return graph


def recorded(execution_factory) -> dict[str, np.ndarray]:
    """Run an execution with an in-memory recorder; the recorded rows by signal."""
    rows: list[np.ndarray] = []

    class Rows:
        def started(self, run):
            self.run = run

        def stepped(self, time):
            rows.append(self.run.system.signals.copy())

        def finished(self, error):
            if error is not None:
                raise error

    execution = execution_factory()
    execution.run([Rows()])
    return execution, np.array(rows)


@pytest.mark.parametrize("algorithm", ["jacobi", "gauss-seidel"])
def test_isolated_instances_give_the_results_of_one_process(build_model, fmus, private_tmp,
                                                            algorithm):
    python_fmu, c_fmu = build_model("oscillator"), fmus / "c_oscillator.fmu"
    settings = Settings(0.0, 0.5, 0.01, algorithm, record={"left": ("x", "v")})
    runs = {}
    for label, isolation in (("one process", None), ("isolated", PROCESS)):
        execution, rows = recorded(lambda i=isolation: Execution(
            oscillators(python_fmu, c_fmu, i), settings))
        runs[label] = rows
        kinds = {type(instance) for instance in execution.system.instances.values()}
        assert kinds == ({ProcessInstance} if isolation else {Instance})
    assert runs["isolated"].shape == (51, 3)
    assert np.array_equal(runs["isolated"], runs["one process"])  # bit for bit
    assert leftovers(private_tmp) == ([], [])


def test_events_state_and_values_by_name_cross_the_process_boundary(fmus, private_tmp):
    """``set``/``get`` by name, an event, and get_state → step → set_state → step."""
    c_fmu = fmus / "c_oscillator.fmu"
    graph = CouplingGraph()
    graph.add_instance("osc", c_fmu, parameters={"x0": 0.5}, isolation=PROCESS)
    execution = Execution(graph, Settings(0.0, 0.1, 0.01, events=(
        Event(0.05, "osc", {"x_other": 2.0}),), record={"osc": ("x",)}))
    execution.run()
    after_event = execution.system.signals.copy()
    reference = Execution(_single(c_fmu, None), execution.settings)
    reference.run()
    assert np.array_equal(after_event, reference.system.signals)
    assert after_event[0] != 0.5 * np.cos(0.1)  # the event changed the course

    instance = ProcessInstance(graph.fmu("osc"), "probe", PROCESS)
    try:
        instance.instantiate()
        instance.set({"x0": 0.25, "k": 4.0})
        instance.setup_experiment(0.0)
        instance.enter_initialization_mode()
        instance.exit_initialization_mode()
        outputs = np.zeros(2)
        instance.bind(["x_other"], ["x", "v"], outputs)
        assert instance.get(["x0", "k"]) == {"x0": 0.25, "k": 4.0}
        state = instance.get_state()
        instance.do_step(0.0, 0.1)
        instance.get_outputs()
        first = outputs.copy()
        instance.set_state(state)
        instance.do_step(0.0, 0.1)
        instance.get_outputs()
        assert np.array_equal(outputs, first) and first[0] != 0.25
        instance.free_state(state)
        assert instance.phase == "stepping" and instance.time == pytest.approx(0.1)
    finally:
        instance.close()
    assert instance.phase == "freed"
    assert leftovers(private_tmp) == ([], [])


def _single(c_fmu: Path, isolation: Isolation | None) -> CouplingGraph:
    graph = CouplingGraph()
    graph.add_instance("osc", c_fmu, parameters={"x0": 0.5}, isolation=isolation)
    return graph


def test_a_step_is_one_round_trip_per_isolated_instance(fmus, monkeypatch):
    """Inputs go with the step's request and outputs come back with its reply: after
    initialisation, requests to children = steps × instances, whatever get_outputs does."""
    requests: list[tuple[str, int]] = []
    counting = ProcessInstance._request

    def counted(self, operation, *args, **kwargs):
        requests.append((self.name, operation))
        return counting(self, operation, *args, **kwargs)

    class Mark:
        def started(self, run):
            requests.clear()

        def stepped(self, time):
            pass

        def finished(self, error):
            pass

    monkeypatch.setattr(ProcessInstance, "_request", counted)
    c_fmu = fmus / "c_oscillator.fmu"
    for algorithm in ("jacobi", "gauss-seidel"):
        graph = oscillators(c_fmu, c_fmu, PROCESS)
        Execution(graph, Settings(0.0, 0.5, 0.01, algorithm)).run([Mark()])
        # 50 steps of two instances, then terminate + free: one "close" request each
        assert sorted(requests) == sorted([("left", STEP)] * 50 + [("right", STEP)] * 50
                                          + [("left", CALL), ("right", CALL)])


def test_process_instance_offers_every_public_method_of_instance():
    public = {name for name in dir(Instance) if not name.startswith("_")}
    assert public <= set(dir(ProcessInstance))


def saboteur_scenario(folder: Path, action: int, isolation: str = "process",
                      limits: str = "memory: 400", call_timeout: float = 30) -> Path:
    path = folder / f"saboteur_{action}_{isolation}.yaml"
    path.write_text(f"""\
version: 1
fmus: {{bad: {folder.parent / 'fmus' / 'Saboteur.fmu'}, osc: {folder.parent / 'fmus' /
    'c_oscillator.fmu'}}}
isolation: {{default: {isolation}, {limits}}}
instances:
  osc: {{fmu: osc, isolation: none}}
  bad: {{fmu: bad, parameters: {{action: {action}, at: 0.1}}}}
connections: [osc.x -> bad.u]
simulation: {{stop: 0.2, step: 0.01, call_timeout: {call_timeout}}}
criteria:
  - {{name: y stays negative, signal: bad.y, measure: max, max: -1}}
""", encoding="utf-8")
    return path


@pytest.fixture
def workspace(tmp_path, fmus) -> Path:
    """A folder whose parent holds ``fmus`` (scenarios refer to ../fmus/…)."""
    (tmp_path / "fmus").symlink_to(fmus)
    folder = tmp_path / "scenarios"
    folder.mkdir()
    return folder


CRASHES = {
    "segmentation fault": (1, "fmi2DoStep did not return: the FMU's process was killed by "
                              "SIGSEGV (Segmentation fault)"),
    "abort": (2, "fmi2DoStep did not return: the FMU's process was killed by SIGABRT"),
    "exit(3)": (3, "fmi2DoStep did not return: the FMU's process exited with code 3"),
    "hang": (4, "fmi2DoStep did not return within 1 s (simulation.call_timeout); its process was "
                "stopped"),
    "memory blow-up": (5, "MB limit (isolation memory): it probably ran out of memory"),
    "forged reply": (7, "fmi2DoStep: the FMU's process sent a malformed reply; it was stopped"),
}


@pytest.mark.parametrize("case", CRASHES)
def test_a_crash_ends_the_run_with_one_message_and_keeps_every_row(workspace, private_tmp,
                                                                   case):
    action, cause = CRASHES[case]
    output = workspace / "out.h5"
    with pytest.raises(SimulationError) as caught:
        run_scenario(saboteur_scenario(workspace, action, call_timeout=1 if action == 4 else 30),
                     output, plot=False)
    error = caught.value
    assert (error.instance, error.time) == ("bad", pytest.approx(0.1))
    assert str(error).startswith("instance 'bad', t = 0.1 s: ") and cause in str(error)
    assert not output.exists()  # a run that did not complete keeps its partial file aside
    [kept] = workspace.glob("out.partial-*.h5")
    assert error.__notes__ == [f"results written so far are kept in {kept} (the previous "
                               "results, if any, are untouched)"]
    with open_results(kept) as results:
        assert results.status == "failed"
        assert results.attrs["error"] == str(error)
        assert np.allclose(results.time, np.arange(11) * 0.01)  # every point up to t = 0.1
        assert len(results["osc.x"]) == 11 and np.isfinite(results["osc.x"]).all()
    assert leftovers(private_tmp) == ([], [])


def test_the_cli_prints_a_crash_as_one_message(workspace):
    result = subprocess.run([str(BIN / "cosim"), "run", str(saboteur_scenario(workspace, 1)),
                             "-o", str(workspace / "out.h5"), "--no-plot"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("error: instance 'bad', t = 0.1 s: fmi2DoStep did not "
                                    "return: the FMU's process was killed by SIGSEGV")
    lines = result.stderr.splitlines()
    assert sum(line.startswith("error:") for line in lines) == 1
    assert "Traceback" not in result.stderr and "Segmentation fault" in lines[0]


@pytest.mark.parametrize("isolation, exit_code, verdict", [
    ("none", 0, "VERDICT: PASS"),  # in cosim's process the FMU rewrote the verdict: it lies
    ("process", 2, "VERDICT: FAIL"),  # in its own process it cannot
])
def test_an_fmu_forging_the_verdict_succeeds_only_in_cosims_process(workspace, isolation,
                                                                    exit_code, verdict):
    scenario = saboteur_scenario(workspace, 6, isolation)
    result = subprocess.run([str(BIN / "cosim"), "run", str(scenario), "-o",
                             str(workspace / f"{isolation}.h5"), "--no-plot"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == exit_code, result.stderr
    assert verdict in result.stdout
    with open_results(workspace / f"{isolation}.h5") as results:
        assert results["bad.y"].max() == pytest.approx(0.2)  # the data say FAIL either way
        assert results.attrs["isolation"]["bad"] == isolation


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_an_isolated_fmu_holds_no_handle_on_the_results_file(workspace, isolation):
    scenario = saboteur_scenario(workspace, 8, isolation)
    run_scenario(scenario, workspace / "out.h5", plot=False)
    with open_results(workspace / "out.h5") as results:
        open_in_fmu_process = results["bad.y"][-1]  # files named *.h5* open there
    assert (open_in_fmu_process >= 1) if isolation == "none" else (open_in_fmu_process == 0)


def test_a_crashing_cohort_member_fails_alone(workspace, private_tmp):
    scenario = saboteur_scenario(workspace, 0)
    (workspace / "members.csv").write_text("bad.action\n0\n1\n0\n", encoding="utf-8")
    with open(scenario, "a", encoding="utf-8") as stream:
        stream.write("cohort: {method: table, table: members.csv}\n")
    run_scenario(scenario, workspace / "cohort.h5", plot=False)
    with open_results(workspace / "cohort.h5") as results:
        status = [str(s) for s in results.summary()["status"]]
        assert status == ["completed", "failed", "completed"]
        with results.member(results.members[1]) as member:
            assert "killed by SIGSEGV" in member.attrs["error"]
            assert len(member.time) == 11
    assert leftovers(private_tmp) == ([], [])


def test_an_error_status_reads_as_in_one_process(tmp_path, private_tmp):
    """fmi2Error with the FMU's log: the same message whether the FMU is isolated or not."""
    failing = kit.build_failing_model(tmp_path)
    messages = []
    for isolation in (None, PROCESS):
        graph = CouplingGraph()
        graph.add_instance("pump", failing, isolation=isolation)
        with pytest.raises(SimulationError) as caught:
            Execution(graph, Settings(0.0, 1.0, 0.1)).run()
        messages.append((str(caught.value), caught.value.function))
    assert messages[0] == messages[1]
    assert "fmi2DoStep failed (fatal)" in messages[0][0]
    assert "the failing model broke on purpose" in messages[0][0]
    assert leftovers(private_tmp) == ([], [])


def test_once_per_process_fmu_runs_its_second_instance_in_a_child(fmus, workspace, capsys):
    lines = ["version: 1", f"fmus: {{once: {fmus / 'once.fmu'}, plain: "
             f"{fmus / 'c_oscillator.fmu'}}}", "instances:"]
    runs = {}
    for key in ("once", "plain"):
        text = "\n".join(lines + [f"  a: {{fmu: {key}, parameters: {{x0: 1.0}}}}",
                                  f"  b: {{fmu: {key}, parameters: {{x0: -0.5}}}}",
                                  "connections: [a.x -> b.x_other, b.x -> a.x_other]",
                                  "simulation: {stop: 0.5, step: 0.01}"]) + "\n"
        path = workspace / f"{key}.yaml"
        path.write_text(text, encoding="utf-8")
        graph, settings = build(load_scenario(path))
        execution = Execution(graph, settings)
        kinds = {name: type(i).__name__ for name, i in execution.system.instances.items()}
        execution.system.close()
        assert kinds == ({"a": "Instance", "b": "ProcessInstance"} if key == "once" else
                         {"a": "Instance", "b": "Instance"})
        run_scenario(path, workspace / f"{key}.h5", plot=False)
        with open_results(workspace / f"{key}.h5") as results:
            runs[key] = (results["a.x"], results["b.x"])
            isolation = results.attrs["isolation"]
        assert isolation == {"a": "none", "b": "process" if key == "once" else "none"}
        assert cli.main(["check", str(path)]) == 0
        assert ("each in its own process (isolation: process): b" in capsys.readouterr().out) \
            == (key == "once")
    assert np.array_equal(runs["once"][0], runs["plain"][0])
    assert np.array_equal(runs["once"][1], runs["plain"][1])


SCENARIO_HEAD = "version: 1\nfmus: {{osc: {}}}\n"
SCENARIO_TAIL = "simulation: {stop: 0.1, step: 0.01}\n"


@pytest.mark.parametrize("isolation_text, instance_text, expected", [
    ("isolation: process\n", "  a: osc\n  b: {fmu: osc, isolation: none}\n",
     {"a": Isolation("process"), "b": Isolation("none")}),
    ("isolation: {default: none, memory: 900}\n",
     "  a: osc\n  b: {fmu: osc, isolation: process}\n",
     {"a": Isolation("none", 60.0, 900.0), "b": Isolation("process", 60.0, 900.0)}),
    ("", "  a: osc\n  b: {fmu: osc, isolation: process}\n",
     {"a": Isolation("none"), "b": Isolation("process")}),
])
def test_scenario_isolation_keys(tmp_path, fmus, isolation_text, instance_text, expected):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO_HEAD.format(fmus / "c_oscillator.fmu") + isolation_text
                    + "instances:\n" + instance_text + SCENARIO_TAIL, encoding="utf-8")
    scenario = load_scenario(path)
    assert {name: spec.isolation for name, spec in scenario.instances.items()} == expected


@pytest.mark.parametrize("isolation_text, instance_text, line, key, message", [
    ("isolation: sandbox\n", "  a: osc\n", 3, "isolation", "unknown isolation 'sandbox'"),
    ("isolation: {default: process, timeout: 5}\n", "  a: osc\n", 3, "isolation.timeout",
     "unknown key 'timeout'"),
    ("isolation: {default: process, memory: lots}\n", "  a: osc\n", 3, "isolation.memory",
     "memory must be a positive number, got 'lots'"),
    ("isolation: {default: process, cpu: 1}\n", "  a: osc\n", 3, "isolation.cpu",
     "unknown key 'cpu'"),
    ("isolation:\n  default: docker\n", "  a: osc\n", 4, "isolation.default",
     "unknown isolation 'docker'"),
    ("", "  a: {fmu: osc, isolation: thread}\n", 4, "instances.a.isolation",
     "unknown isolation 'thread'"),
])
def test_wrong_isolation_keys_are_located(tmp_path, fmus, isolation_text, instance_text, line,
                                          key, message):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO_HEAD.format(fmus / "c_oscillator.fmu") + isolation_text
                    + "instances:\n" + instance_text + SCENARIO_TAIL, encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.key) == (str(path), line, key)
    assert message in problem.message and problem.hint


@pytest.mark.mpi
def test_isolated_instances_under_mpiexec_give_the_results_of_one_process(tmp_path, fmus):
    lines = ["version: 1", f"fmus: {{osc: {fmus / 'c_oscillator.fmu'}}}", "isolation: process",
             "instances:"]
    lines += [f"  o{i}: {{fmu: osc, parameters: {{x0: {0.2 * i}, k: {1 + 0.1 * i}}}}}"
              for i in range(4)]
    lines += ["connections: [" + ", ".join(f"o{(i - 1) % 4}.x -> o{i}.x_other"
                                           for i in range(4)) + "]",
              "simulation: {stop: 0.5, step: 0.01, algorithm: gauss-seidel}"]
    scenario = tmp_path / "ring.yaml"
    scenario.write_text("\n".join(lines) + "\n", encoding="utf-8")
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    datasets = []
    for ranks in (None, 2):
        output = tmp_path / f"ranks_{ranks}.h5"
        command = [sys.executable, "-m", "cosim.cli", "run", str(scenario), "-o", str(output),
                   "--no-plot"]
        if ranks:
            command = [str(BIN / "mpiexec"), "-n", str(ranks), *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
        assert result.returncode == 0, result.stderr
        with open_results(output) as results:
            assert results.status == "completed"
            datasets.append({name: results[name] for name in results.variables})
            if ranks:
                assert sorted(set(results.attrs["partition"].values())) == [0, 1]
    assert datasets[0].keys() == datasets[1].keys()
    for name in datasets[0]:
        assert np.array_equal(datasets[0][name], datasets[1][name]), name
