"""Checkpoint and restart: a run killed (SIGKILL), interrupted (SIGTERM) or crashed, resumed with
``cosim run --resume``, equals an uninterrupted run bit for bit — the flagship's compiled
library, pythonfmu FMUs, isolated instances, and cohorts (finished members kept)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fmu_kit as kit
import h5py
import numpy as np
import pytest

from cosim.master.journal import JournalReader
from cosim.results.reader import open_results, read_now
from cosim.running.checkpoint import checkpoint_path, read_checkpoint

REPO = Path(__file__).resolve().parent.parent
FLAGSHIP = REPO / "scenarios" / "vvi_complete_av_block.yaml"


def cosim(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cosim.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosim.cli", *args], capture_output=True,
                          text=True, timeout=300, check=False)


def flagship(folder: Path, extra: str = "", stop: float = 20.0) -> Path:
    text = FLAGSHIP.read_text(encoding="utf-8").replace("stop: 20.0", f"stop: {stop}")
    path = folder / "flagship.yaml"
    path.write_text(text + "checkpoint: {every: 2}\n" + extra, encoding="utf-8")
    return path


def same_results(a: Path, b: Path, member: str | None = None) -> None:
    with open_results(a, member) as one, open_results(b, member) as other:
        assert one.status == other.status == "completed"
        assert np.array_equal(one.time, other.time)
        assert one.variables == other.variables
        for name in one.variables:
            assert np.array_equal(one[name], other[name]), name


def partial_checkpoints(output: Path) -> list[Path]:
    """The checkpoints beside the partial files of ``output`` (a run writes into one)."""
    return sorted(output.parent.glob(f"{output.stem}.partial-*{output.suffix}.checkpoint"))


def kill_after_a_checkpoint(args: list[str], output: Path, how: int = signal.SIGKILL) -> Path:
    """Start ``cosim run``, wait for its first checkpoint and a little more, then kill it and
    its worker (SIGKILL: as a node failure) or ask it to stop (SIGTERM); returns the partial
    file it left."""
    process = cosim(args, start_new_session=True)
    deadline = time.monotonic() + 120
    while not partial_checkpoints(output):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.02)
    time.sleep(0.3)
    os.killpg(process.pid, how)
    process.communicate(timeout=60)
    assert process.returncode != 0, "the run ended before it could be stopped"
    [checkpoint] = partial_checkpoints(output)
    return checkpoint.with_suffix("")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("checkpoint")
    scenario = flagship(folder)
    output = folder / "reference.h5"
    done = run(["run", str(scenario), "-o", str(output), "--no-plot"])
    assert done.returncode == 0, done.stderr
    assert not checkpoint_path(output).exists(), "a complete run leaves no checkpoint"
    with h5py.File(output) as file:
        assert file.attrs["checkpoints"] == 9  # at 2, 4, … 18 s
    return scenario, output


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_a_stopped_flagship_resumes_bit_for_bit(reference, tmp_path, how):
    scenario, expected = reference
    output = tmp_path / "resumed.h5"
    partial = kill_after_a_checkpoint(["run", str(scenario), "-o", str(output), "--no-plot"],
                                      output, how)
    assert not output.exists(), "a run that did not complete never writes the target"
    saved = read_checkpoint(checkpoint_path(partial))
    assert saved.step % 2000 == 0 and 0 < saved.step < 20000
    done = run(["run", str(scenario), "-o", str(output), "--no-plot", "--resume"])
    assert done.returncode == 0, done.stderr
    assert "VERDICT: PASS (6 of 6 criteria met)" in done.stdout
    same_results(expected, output)
    with h5py.File(output) as file:
        assert file.attrs["resumed"] == 1
    assert not partial.exists() and not partial_checkpoints(output)


@pytest.mark.slow
def test_isolated_instances_resume_bit_for_bit(reference, tmp_path):
    _, expected = reference
    scenario = flagship(tmp_path, "isolation: process\n")
    output = tmp_path / "isolated.h5"
    kill_after_a_checkpoint(["run", str(scenario), "-o", str(output), "--no-plot"], output)
    done = run(["run", str(scenario), "-o", str(output), "--no-plot", "--resume"])
    assert done.returncode == 0, done.stderr
    same_results(expected, output)


def test_resume_refuses_a_changed_scenario_and_a_missing_checkpoint(reference, tmp_path):
    scenario, _ = reference
    output = tmp_path / "changed.h5"
    kill_after_a_checkpoint(["run", str(scenario), "-o", str(output), "--no-plot"], output)
    changed = tmp_path / "flagship.yaml"
    changed.write_text(scenario.read_text().replace("lower_rate: 60.0", "lower_rate: 61.0"))
    done = run(["run", str(changed), "-o", str(output), "--no-plot", "--resume"])
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"error: {changed}: the scenario file changed since the checkpoint was saved\n    -> "
        "resume with the scenario as it was, or run it again without --resume\n")
    done = run(["run", str(scenario), "-o", str(tmp_path / "none.h5"), "--no-plot", "--resume"])
    assert done.returncode == 1
    assert "no unfinished run of it to resume" in done.stderr


def test_fmus_that_cannot_serialise_their_state_are_named(tmp_path):
    kit.build_c_oscillator(tmp_path)
    scenario = tmp_path / "plain.yaml"
    scenario.write_text("version: 1\nfmus: {osc: c_oscillator.fmu}\ninstances:\n"
                        "  a: {fmu: osc}\n  b: {fmu: osc}\nsimulation: {stop: 1, step: 0.1}\n"
                        "checkpoint: {every: 0.5}\n")
    done = run(["check", str(scenario)])
    assert done.returncode == 1
    assert done.stderr.startswith(
        f"error: {scenario}:7: checkpoint: these instances' FMUs cannot save their state, so "
        "no checkpoint can hold them: a, b (canSerializeFMUstate is false)")


COHORT = """\
cohort:
  method: latin-hypercube
  size: 5
  seed: 3
  parameters:
    heart.E_es_lvf: {distribution: uniform, low: 2.4, high: 3.2}
"""


@pytest.mark.slow
def test_a_killed_cohort_keeps_its_finished_members_and_runs_the_others(tmp_path):
    scenario = flagship(tmp_path, COHORT, stop=8.0)
    expected, output = tmp_path / "cohort-reference.h5", tmp_path / "cohort.h5"
    done = run(["run", str(scenario), "-o", str(expected), "--no-plot"])
    # completed; the flagship's criteria windows reach past the 8 s stop: not evaluable, FAIL
    assert done.returncode == 2, done.stderr
    workspace = tmp_path / "tmp"
    workspace.mkdir()
    process = cosim(["run", str(scenario), "-o", str(output), "--no-plot"],
                    start_new_session=True, env=dict(os.environ, TMPDIR=str(workspace)))
    deadline = time.monotonic() + 120
    while True:  # until the worker runs member 2: members 0 and 1 are done
        assert time.monotonic() < deadline and process.poll() is None, "finished too early"
        tasks = [JournalReader(j).task() for j in workspace.glob("cosim-run-*/journal")]
        if any(task and task[1] == "/members/000002" for task in tasks):
            break
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=60)
    [partial] = output.parent.glob("cohort.partial-*.h5")
    with read_now(partial) as file:
        kept = {name: file["members"][name]["time"][()] for name in file["members"]
                if file["members"][name].attrs["status"] == "completed"}
    assert sorted(kept) == ["000000", "000001"]
    resumed = run(["run", str(scenario), "-o", str(output), "--no-plot", "--resume"])
    assert resumed.returncode == done.returncode, resumed.stderr
    for i in range(5):
        same_results(expected, output, f"{i:06d}")
    with h5py.File(output, "r") as file:
        assert file.attrs["status"] == "completed" and len(file["summary"]) == 5
        for name, times in kept.items():  # the finished members were not run again
            assert np.array_equal(file["members"][name]["time"][()], times)


@pytest.mark.mpi
def test_a_distributed_run_killed_at_2_ranks_resumes_at_3_bit_for_bit(reference, tmp_path):
    """The checkpoint holds every instance and the whole signal array (rank 0 gathers them),
    so the run goes on at another rank count; the rows after it are appended at the merge."""
    scenario, expected = reference
    output = tmp_path / "distributed.h5"
    bin_folder = Path(sys.executable).parent
    command = [str(bin_folder / "mpiexec"), "-n", "2", sys.executable, "-m", "cosim.cli", "run",
               str(scenario), "-o", str(output), "--no-plot"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + 180
    while not partial_checkpoints(output):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint was written"
        time.sleep(0.05)
    time.sleep(0.3)
    subprocess.run(["pkill", "-KILL", "-s", str(process.pid)], check=False)  # every process
    process.communicate(timeout=60)
    assert not output.exists()
    resumed = subprocess.run(command[:2] + ["3"] + command[3:] + ["--resume"],
                             capture_output=True, text=True, timeout=300, check=False)
    assert resumed.returncode == 0, resumed.stderr
    assert "VERDICT: PASS (6 of 6 criteria met)" in resumed.stdout
    same_results(expected, output)


def test_checkpoints_fall_on_recorded_points(reference, tmp_path):
    """every: 0.3 s with rows every 0.2 s: checkpoints every 0.6 s, so a reduced interval
    (record.reduce) is never cut by one; resuming still equals an uninterrupted run."""
    scenario, _ = reference
    text = scenario.read_text().replace("checkpoint: {every: 2}", "checkpoint: {every: 0.3}")
    text = text.replace("interval: 0.001", "interval: 0.2")
    coarse = tmp_path / "coarse.yaml"
    coarse.write_text(text)
    expected, output = tmp_path / "expected.h5", tmp_path / "coarse.h5"
    assert run(["run", str(coarse), "-o", str(expected), "--no-plot"]).returncode == 0
    with h5py.File(expected) as file:
        assert file.attrs["checkpoints"] == 33  # at 0.6, 1.2, … 19.8 s
    partial = kill_after_a_checkpoint(["run", str(coarse), "-o", str(output), "--no-plot"],
                                      output)
    assert read_checkpoint(checkpoint_path(partial)).step % 600 == 0
    done = run(["run", str(coarse), "-o", str(output), "--no-plot", "--resume"])
    assert done.returncode == 0, done.stderr
    same_results(expected, output)


def test_fmi3_instances_resume_bit_for_bit(tmp_path):
    """The flagship on the FMI 3.0 editions of the library (``Instance3``'s state as bytes):
    killed after a checkpoint and resumed, it equals the uninterrupted run."""
    editions = "\n".join(f"  {key}: {{file: {REPO / 'build' / 'fmus' / 'fmi3' / name}}}"
                         for key, name in (("generator", "Generator.fmu"), ("lead", "Lead.fmu"),
                                           ("cell", "Cell.fmu"), ("tissue", "Tissue.fmu"),
                                           ("organ", "Organ.fmu")))
    text = flagship(tmp_path).read_text(encoding="utf-8")
    start, end = text.index("fmus:\n") + len("fmus:\n"), text.index("instances:")
    scenario = tmp_path / "fmi3.yaml"
    scenario.write_text(text[:start] + editions + "\n" + text[end:], encoding="utf-8")
    expected, output = tmp_path / "fmi3-reference.h5", tmp_path / "fmi3.h5"
    done = run(["run", str(scenario), "-o", str(expected), "--no-plot"])
    assert done.returncode == 0, done.stderr
    with h5py.File(expected) as file:
        assert file.attrs["checkpoints"] == 9  # at 2, 4, … 18 s
        assert "FMI 3.0" in json.loads(file.attrs["fmus"])["myocyte"]["generation_tool"]
    kill_after_a_checkpoint(["run", str(scenario), "-o", str(output), "--no-plot"], output)
    done = run(["run", str(scenario), "-o", str(output), "--no-plot", "--resume"])
    assert done.returncode == 0, done.stderr
    same_results(expected, output)
    with h5py.File(output) as file:
        assert file.attrs["resumed"] == 1


def test_a_killed_adaptive_run_resumes_bit_for_bit(tmp_path):
    """The adaptive flagship over 300 s, killed after its first checkpoint (every 20 s) and
    resumed: the controller goes on from its saved step, history and log (the checkpoint's
    ``master`` attribute), so the results and /master equal an uninterrupted run's."""
    text = (REPO / "scenarios" / "vvi_complete_av_block_adaptive.yaml").read_text()
    scenario = tmp_path / "adaptive.yaml"
    scenario.write_text(text + "checkpoint: {every: 20}\n", encoding="utf-8")
    expected = tmp_path / "reference.h5"
    assert run(["run", str(scenario), "-o", str(expected), "--no-plot"]).returncode == 0
    output = tmp_path / "resumed.h5"
    partial = kill_after_a_checkpoint(["run", str(scenario), "-o", str(output), "--no-plot"],
                                      output)
    saved = read_checkpoint(checkpoint_path(partial))
    assert saved.master is not None and saved.master["common"]["log"]["times"]
    assert 0 < saved.time < 300
    done = run(["run", str(scenario), "-o", str(output), "--no-plot", "--resume"])
    assert done.returncode == 0, done.stderr
    same_results(expected, output)
    with h5py.File(expected) as one, h5py.File(output) as other:
        for name in ("time", "step", "error", "reason", "rejected_time"):
            assert np.array_equal(one["master"][name][:], other["master"][name][:]), name
        assert one["master"].attrs["instance_steps"] == other["master"].attrs["instance_steps"]
