"""``cosim run`` outlives its FMUs: crashes, hangs, signals and memory exhaustion inside an FMU
end with one message naming instance, call, time and cause; the file keeps every computed row
and says why it ended; a cohort goes on after a member crashed.

The FMU is ``Saboteur`` (tests/fmu_kit.py): y = t until t reaches ``at``, then it segfaults
(action 1), aborts (2), calls exit(3) (3), never returns (4) or allocates without end (5).
"""

from __future__ import annotations

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
from cosim.results.output import parts_folder
from cosim.results.reader import open_results

SCENARIO = """\
version: 1
name: misbehaving
fmus: {{bad: Saboteur.fmu}}
instances:
  pump: {{fmu: bad, parameters: {{action: {action}, at: {at}}}}}
simulation: {{stop: {stop}, step: 0.001, call_timeout: {timeout}}}
record: {{variables: [pump.y]}}
criteria:
  - {{name: y stays small, signal: pump.y, measure: max, max: 1000}}
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("supervise")
    kit.build_saboteur(folder)
    return folder


def scenario(folder: Path, name: str, action: int, at: float = 0.25, stop: float = 0.5,
             timeout: float = 60) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(SCENARIO.format(action=action, at=at, stop=stop, timeout=timeout),
                    encoding="utf-8")
    return path


def cosim(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cosim.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def run(args: list[str], **kwargs) -> tuple[int, str, str]:
    process = cosim(args, **kwargs)
    out, err = process.communicate(timeout=120)
    return process.returncode, out, err


def partial_of(output: Path) -> Path:
    """The one partial file a run to ``output`` that did not complete left beside it (the
    target itself is never written by such a run)."""
    assert not output.exists()
    [partial] = output.parent.glob(f"{output.stem}.partial-*{output.suffix}")
    return partial


def assert_rows_kept(output: Path, until: float, status: str) -> str:
    """Every row up to ``until`` is in the file (y = t, as computed), and the status."""
    with open_results(output) as res:
        assert res.status == status
        steps = round(until / 0.001)
        assert len(res.time) == steps + 1
        assert np.allclose(res.time, np.arange(steps + 1) * 0.001, rtol=0, atol=1e-12)
        assert np.allclose(res["pump.y"][1:], res.time[1:], rtol=0, atol=1e-12)
        return res.attrs["error"]


@pytest.mark.parametrize("action, cause", [
    (1, "the FMU crashed (segmentation fault, SIGSEGV)"),
    (2, "the FMU aborted (SIGABRT)"),
    (3, "the FMU exited with code 3 without finishing (exit() called in an FMU?)"),
])
def test_a_crash_inside_an_fmu_is_one_message_and_every_row_is_kept(folder, action, cause):
    output = folder / f"crash{action}.h5"
    code, out, err = run(["run", str(scenario(folder, f"crash{action}", action)), "-o", str(output),
                          "--no-plot"])
    message = f"instance 'pump' in fmi2DoStep at t = 0.25 s: {cause}"
    assert code == 1 and "VERDICT" not in out
    kept = partial_of(output)
    assert err == f"error: {message}; rows up to t = 0.25 s kept in {kept}\n"
    assert assert_rows_kept(kept, 0.25, "failed") == message


def test_a_call_that_never_returns_is_stopped_by_the_watchdog(folder):
    output = folder / "hang.h5"
    code, _, err = run(["run", str(scenario(folder, "hang", 4, timeout=1)), "-o", str(output),
                        "--no-plot"])
    assert code == 1
    assert err.startswith("error: instance 'pump' in fmi2DoStep at t = 0.25 s: the FMU did not "
                          "return within 1 s (the watchdog stopped it; simulation.call_timeout")
    assert "did not return within 1 s" in assert_rows_kept(partial_of(output), 0.25, "failed")


def test_memory_exhaustion_names_the_limit(folder):
    output = folder / "memory.h5"
    code, _, err = run(["run", str(scenario(folder, "memory", 5)), "-o", str(output),
                        "--no-plot", "--memory-limit", "1"])
    assert code == 1
    assert err.startswith("error: instance 'pump', t = 0.25 s: fmi2DoStep failed")
    assert "the run reached its memory limit (1.0 GB, --memory-limit)" in err
    assert_rows_kept(partial_of(output), 0.25, "failed")


def wait_until_stepping(temporary: Path, process: subprocess.Popen, after: float = 0.0) -> None:
    """Until the worker's journal says it is stepping past ``after`` seconds."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        for journal in temporary.glob("cosim-run-*/journal"):
            position = JournalReader(journal).position()
            if position is not None and position.phase == "stepping" and position.time > after:
                return
        time.sleep(0.05)
    raise AssertionError("the run never started stepping")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_the_run_and_keep_its_rows(folder, sig, tmp_path):
    output = folder / f"stopped-{sig.name}.h5"
    process = cosim(["run", str(scenario(folder, f"long-{sig.name}", 0, stop=600)), "-o",
                     str(output), "--no-plot"], env=dict(os.environ, TMPDIR=str(tmp_path)))
    wait_until_stepping(tmp_path, process, after=0.1)
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert err.startswith(f"interrupted ({sig.name}) at t = ")
    kept = partial_of(output)
    assert err.endswith(f"; results written so far are kept in {kept}\n")
    stopped_at = float(err.split("at t = ")[1].split(" s;")[0])
    with open_results(kept) as res:
        assert res.status == "interrupted"
        assert res.time[-1] == pytest.approx(stopped_at, abs=1e-9)
        assert np.allclose(res["pump.y"][1:], res.time[1:], rtol=0, atol=1e-12)


def test_a_signal_while_an_fmu_hangs_kills_it_after_a_grace_period(folder, tmp_path):
    output = folder / "stuck.h5"
    code = ("import sys; from pathlib import Path; from cosim.running.supervise import Options, "
            "run_supervised; done = run_supervised(Path(sys.argv[1]), Path(sys.argv[2]), "
            "plot=False, options=Options(grace=1)); print(done.message, file=sys.stderr); "
            "sys.exit(done.exit)")
    process = subprocess.Popen([sys.executable, "-c", code, str(scenario(folder, "stuck", 4)),
                                str(output)], stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, TMPDIR=str(tmp_path)))
    wait_until_stepping(tmp_path, process, after=0.2499)  # then stuck in its step at 0.25 s
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.startswith("interrupted (SIGTERM); instance 'pump' in fmi2DoStep at "
                          "t = 0.25 s did not return within 1 s, so the run was killed")
    assert assert_rows_kept(partial_of(output), 0.25, "interrupted").startswith(
        "interrupted (SIGTERM)")


@pytest.mark.slow
def test_a_cohort_goes_on_after_members_crash_or_hang(folder, tmp_path):
    (folder / "members.csv").write_text("pump.action,pump.at\n0,1\n1,0.5\n0,1\n4,0.7\n3,0.2\n0,1\n",
                                        encoding="utf-8")
    cohort = folder / "cohort.yaml"
    cohort.write_text(SCENARIO.format(action=0, at=1, stop=1.0, timeout=1).replace(
        "parameters: {action: 0, at: 1}", "") + "cohort: {method: table, table: members.csv}\n",
        encoding="utf-8")
    output = folder / "cohort.h5"
    code, out, err = run(["run", str(cohort), "-o", str(output), "--no-plot"],
                         env=dict(os.environ, TMPDIR=str(tmp_path)))
    assert f"results: {output}\n" in out
    lines = err.splitlines()
    assert lines == [
        "member 000001 failed: instance 'pump' in fmi2DoStep at t = 0.5 s: the FMU crashed "
        "(segmentation fault, SIGSEGV); the cohort goes on",
        "member 000003 failed: instance 'pump' in fmi2DoStep at t = 0.7 s: the FMU did not "
        "return within 1 s (the watchdog stopped it; simulation.call_timeout sets the limit); the "
        "cohort goes on",
        "member 000004 failed: instance 'pump' in fmi2DoStep at t = 0.2 s: the FMU exited "
        "with code 3 without finishing (exit() called in an FMU?); the cohort goes on"]
    with h5py.File(output, "r") as file:
        assert file.attrs["status"] == "completed"
        statuses = [file["members"][f"{i:06d}"].attrs["status"] for i in range(6)]
        assert statuses == ["completed", "failed", "completed", "failed", "failed", "completed"]
        assert [len(file["members"][f"{i:06d}"]["time"]) for i in range(6)] == [
            1001, 501, 1001, 701, 201, 1001]
        assert list(file["summary"]["status"]) == [s.encode() for s in statuses]
    assert list(tmp_path.iterdir()) == [], "worker folders and FMU extractions are removed"


def test_a_full_disk_is_one_message_and_a_readable_file(folder, tmp_path):
    """On a real 300 kB file system (tmpfs, in a mount namespace of the test's own)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    output = disk / "full.h5"
    run = (f"mount -t tmpfs -o size=300k tmpfs {disk} || exit 77; "
           f"{sys.executable} -m cosim.cli run {scenario(folder, 'full', 0, stop=600)} "
           f"-o {output} --no-plot; code=$?; cp {disk}/full.partial-*.h5 {tmp_path}/full.h5; "
           "exit $code")
    try:
        done = subprocess.run(["unshare", "--mount", "sh", "-c", run], capture_output=True,
                              text=True, timeout=300, check=False)
    except FileNotFoundError:
        pytest.skip("unshare is not installed")
    if done.returncode == 77 or "unshare failed" in done.stderr:
        pytest.skip(f"cannot mount a small file system here: {done.stderr.strip()}")
    assert done.returncode == 1, done.stderr
    error, kept = done.stderr.splitlines()
    assert error.startswith(f"error: the disk holding the results file {disk}/full.partial-")
    assert kept.startswith(f"results written so far are kept in {disk}/full.partial-")
    assert "Traceback" not in done.stderr
    with open_results(tmp_path / "full.h5") as res:
        assert res.status == "failed" and res.attrs["error"] == error[7:]
        assert len(res.time) > 1000 and np.all(np.diff(res.time) > 0)
        np.testing.assert_allclose(res["pump.y"][1:], res.time[1:], atol=1e-9)


DISTRIBUTED = """\
version: 1
name: distributed misbehaving
fmus: {{bad: Saboteur.fmu, osc: c_oscillator.fmu}}
instances:
  pump: {{fmu: bad, parameters: {{action: {action}, at: 0.5}}}}
  left: {{fmu: osc}}
  right: {{fmu: osc, parameters: {{x0: 0.0}}}}
connections:
  - left.x -> right.x_other
  - right.x -> left.x_other
simulation: {{stop: {stop}, step: 0.001}}
record: {{variables: [pump.y, left.x, right.x]}}
"""


def mpi_run(folder: Path, name: str, action: int, stop: float, ranks: int
            ) -> tuple[subprocess.Popen, Path]:
    kit.build_c_oscillator(folder)
    path = folder / f"{name}.yaml"
    path.write_text(DISTRIBUTED.format(action=action, stop=stop), encoding="utf-8")
    output = folder / f"{name}.h5"
    bin_folder = Path(sys.executable).parent
    process = subprocess.Popen([str(bin_folder / "mpiexec"), "-n", str(ranks), sys.executable,
                                "-m", "cosim.cli", "run", str(path), "-o", str(output),
                                "--no-plot"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=dict(os.environ, PATH=f"{bin_folder}:"
                                                   f"{os.environ.get('PATH', '')}"))
    return process, output


def assert_one_consistent_file(output: Path, status: str, rows: int | None = None) -> str:
    """The partial main file (linking to its parts), every dataset read cut to the same
    length; the target untouched."""
    kept = partial_of(output)
    assert parts_folder(kept).exists() and not Path(f"{output}.ranks").exists()
    with open_results(kept) as res:
        assert res.status == status
        lengths = {len(res[name]) for name in res.variables} | {len(res.time)}
        assert len(lengths) == 1, lengths
        if rows is not None:
            assert lengths == {rows}
        return res.attrs["error"]


@pytest.mark.slow
@pytest.mark.mpi
@pytest.mark.parametrize("ranks", [2, 3])
def test_a_crash_on_one_rank_leaves_one_failed_file(folder, ranks):
    process, output = mpi_run(folder, f"distributed-{ranks}", 1, 1.0, ranks)
    _, err = process.communicate(timeout=180)
    assert process.returncode != 0
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert "instance 'pump' in fmi2DoStep at t = 0.5 s: the FMU crashed (segmentation " \
           "fault, SIGSEGV); rows up to t = 0.5 s kept in" in errors[0]
    message = assert_one_consistent_file(output, "failed", rows=501)
    assert errors[0].startswith(f"error: {message}; ")


@pytest.mark.mpi
def test_sigterm_under_mpiexec_leaves_one_interrupted_file(folder, tmp_path):
    process, output = mpi_run(folder, "distributed-long", 0, 600.0, 2)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(folder.glob(
            "distributed-long.data-*")):
        time.sleep(0.1)
    time.sleep(3)  # the ranks are stepping
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0
    said = [line for line in err.splitlines() if "interrupted (SIGTERM)" in line]
    assert len(said) == 1 and not said[0].startswith("error:"), err  # said once, by rank 0
    assert assert_one_consistent_file(output, "interrupted").endswith("interrupted (SIGTERM)")
