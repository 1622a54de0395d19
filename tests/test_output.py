"""A results file is never destroyed (cosim.results.output): claim → run → commit, the lock, partial
files kept aside, targets that are not ours, readers during and after a run (SWMR), signals.

Runs that may fail inside a pythonfmu FMU, or that must be killed, run as real ``cosim``
processes; the others call the library in this process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import fmu_kit as kit  # tests/fmu_kit.py: FMUs and broken archives for tests
import h5py
import numpy as np
import pytest

from cosim import cli
from cosim.errors import CosimError, OutputError
from cosim.results import output
from cosim.results.reader import open_results

GOOD = """\
version: 1
name: good
fmus: {osc: c_oscillator.fmu}
instances: {left: {fmu: osc}, right: {fmu: osc, parameters: {x0: 0.0}}}
connections: [left.x -> right.x_other, right.x -> left.x_other]
simulation: {stop: STOP, step: 0.01}
criteria:
  - {name: bounded, signal: left.x, measure: max, max: 1.0}
"""
FAILING = """\
version: 1
fmus: {pump: FailingModel.fmu}
instances: {pump: {fmu: pump, parameters: {fail_after: 0.25}}}
simulation: {stop: 1.0, step: 0.05}
"""
SLOW = """\
version: 1
name: slow
fmus: {slow: FMU}
instances: {s: {fmu: slow, parameters: {delay: DELAY, kill_at: KILL}}}
simulation: {stop: STOP, step: 0.001}
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("output")
    kit.build_c_oscillator(folder)
    kit.build_failing_model(folder)
    kit.build_slow_model(folder)
    (folder / "good.yaml").write_text(GOOD.replace("STOP", "1.0"))
    (folder / "longer.yaml").write_text(GOOD.replace("STOP", "2.0"))
    (folder / "failing.yaml").write_text(FAILING)
    return folder


def cosim(*args: str, **options) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cosim.cli", *args, "--no-plot"],
                          capture_output=True, text=True, timeout=120, **options)


def start_cosim(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cosim.cli", *args, "--no-plot"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kept_file(stderr: str) -> Path:
    """The partial file a run that did not complete names on stderr."""
    return Path(re.search(r"kept in (\S+\.h5)", stderr).group(1))


def partials(folder: Path, stem: str) -> list[Path]:
    return sorted(folder.glob(f"{stem}.partial-*.h5"))


def slow_scenario(folder: Path, where: Path, name: str, stop: float, delay: float,
                  kill_at: float = 0.0) -> Path:
    """A run of the SlowModel (``delay`` s of sleep per 1 ms step; SIGKILL at ``kill_at``)."""
    path = where / f"{name}.yaml"
    path.write_text(SLOW.replace("FMU", str(folder / "SlowModel.fmu")).replace(
        "STOP", str(stop)).replace("DELAY", str(delay)).replace("KILL", str(kill_at)))
    return path


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# -- a failed run never replaces anything -----------------------------------------------------

def test_a_failed_rerun_leaves_the_previous_results_untouched(folder, tmp_path):
    target = tmp_path / "run.h5"
    assert cli.main(["run", str(folder / "good.yaml"), "-o", str(target), "--no-plot"]) == 0
    before = digest(target)
    kept = []
    for _ in range(2):  # each failed run keeps its own partial file; none deletes another
        done = cosim("run", str(folder / "failing.yaml"), "-o", str(target))
        assert done.returncode == cli.EXIT_ERROR, done.stderr
        assert done.stderr.startswith("error: instance 'pump', t = 0.25 s: fmi2DoStep failed")
        kept.append(kept_file(done.stderr))
        assert digest(target) == before, "the good results are untouched"
    assert kept[0] != kept[1] and partials(tmp_path, "run") == sorted(kept)
    for path in kept:
        assert path.name.startswith("run.partial-") and path.parent == tmp_path
        with open_results(path) as res:
            assert res.status == "failed" and res["pump.y"][-1] == pytest.approx(0.25)
    with open_results(target) as res:
        assert res.status == "completed" and res.verdict["passed"]
    assert not (tmp_path / "run.h5.lock").exists(), "the lock file goes with its run"


def test_a_completed_rerun_replaces_the_target(folder, tmp_path, capsys):
    target = tmp_path / "run.h5"
    for scenario, rows in (("good.yaml", 101), ("longer.yaml", 201)):
        assert cli.main(["run", str(folder / scenario), "-o", str(target), "--no-plot"]) == 0
        with open_results(target) as res:
            assert res.status == "completed" and res.rows == rows
    assert partials(tmp_path, "run") == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "run.h5"]
    capsys.readouterr()


# -- targets cosim must not write -------------------------------------------------------------

def test_a_target_that_is_not_a_results_file_is_refused(folder, tmp_path, capsys):
    scenario = tmp_path / "good.yaml"
    scenario.write_text((folder / "good.yaml").read_text().replace(
        "c_oscillator.fmu", str(folder / "c_oscillator.fmu")))
    fmu = tmp_path / "copy.fmu"
    fmu.write_bytes((folder / "c_oscillator.fmu").read_bytes())
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as file:
        file["data"] = [1.0, 2.0]
    for target in (scenario, fmu, foreign):
        before = digest(target)
        assert cli.main(["run", str(scenario), "-o", str(target), "--no-plot"]) == 1
        err = capsys.readouterr().err
        assert err == (f"error: {target}: exists and is not a cosim results file; cosim only "
                       "replaces its own results: choose another -o or move that file\n")
        assert digest(target) == before
    assert cli.main(["run", str(scenario), "-o", str(tmp_path), "--no-plot"]) == 1
    assert capsys.readouterr().err == (f"error: cannot create the results file {tmp_path}: Is a "
                                       "directory; choose another path with -o\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.fmu", "foreign.h5", "good.yaml"]


def unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes anywhere it has a permission bit: not in sysfs
        return Path("/sys")
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_an_unwritable_output_folder_is_one_line(folder, tmp_path, capsys):
    """(The folder checks are cosim.results.output_path's; claim makes them before it locks.)"""
    locked = unwritable_folder(tmp_path)
    with pytest.raises(CosimError, match="cannot create the results file"):
        output.claim(locked / "run.h5")
    assert cli.main(["run", str(folder / "good.yaml"), "-o", str(locked / "run.h5"),
                     "--no-plot"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot create the results file {locked / 'run.h5'}: ")
    assert err.count("\n") == 1 and err.endswith("; choose another path with -o\n")
    not_a_folder = tmp_path / "plain.txt"
    not_a_folder.write_text("text")
    assert cli.main(["run", str(folder / "good.yaml"), "-o", str(not_a_folder / "run.h5"),
                     "--no-plot"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot create the results file {not_a_folder / 'run.h5'}: ")
    assert err.count("\n") == 1 and not_a_folder.read_text() == "text"


# -- one writer per path ----------------------------------------------------------------------

def test_claim_commit_and_the_lock_in_one_process(tmp_path):
    target = tmp_path / "out.h5"
    first = output.claim(target)
    assert first.partial.parent == tmp_path and first.partial.suffix == ".h5"
    assert first.partial.name.startswith("out.partial-")
    assert first.partial.stem.endswith(f"-{os.getpid()}")
    assert first.parts == first.partial.with_name(
        first.partial.stem.replace(".partial-", ".data-"))
    holder = (tmp_path / "out.h5.lock").read_text()
    assert holder.startswith(f"pid {os.getpid()} on ")
    with pytest.raises(OutputError, match=r"another cosim run is writing it \(pid \d+ on "):
        output.claim(target)  # flock on a second open file: refused even in one process
    assert output.commit(first) is None, "nothing written, nothing kept"
    assert not (tmp_path / "out.h5.lock").exists()
    second = output.claim(target)  # the lock is free again
    second.partial.write_bytes(b"")  # a writer that died before writing anything readable
    assert output.commit(second) == second.partial and second.partial.exists()
    third = output.claim(target)
    assert third.partial != second.partial, "a partial name is never reused"
    output.release(third)


HOLD = """\
import sys, time
from cosim.results import output
claim = output.claim(sys.argv[1])
print(claim.partial, flush=True)
time.sleep(60)
"""


def test_two_runs_to_one_path_the_second_refuses_the_first_finishes(folder, tmp_path, capsys):
    """The first run is a real ``cosim run`` process; the second, this process, refuses at once
    (its claim comes before anything is loaded) and names the first one's pid."""
    target = tmp_path / "run.h5"
    slow = slow_scenario(folder, tmp_path, "slow", stop=3.0, delay=0.0004)
    first = start_cosim("run", str(slow), "-o", str(target))
    wait_for(lambda: partials(tmp_path, "run"))
    assert cli.main(["run", str(folder / "good.yaml"), "-o", str(target), "--no-plot"]) == 1
    assert capsys.readouterr().err == (
        f"error: {target}: another cosim run is writing it (pid {first.pid} on "
        f"{os.uname().nodename}); wait for it to finish or choose another -o\n")
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    with open_results(target) as res:
        assert res.status == "completed" and res.rows == 3001
        np.testing.assert_allclose(res["s.y"][1:], res.time[1:], atol=1e-9)
    assert partials(tmp_path, "run") == []


def test_a_killed_holder_frees_the_path(folder, tmp_path, capsys):
    """The lock dies with its process: no stale lock to remove by hand."""
    target = tmp_path / "run.h5"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE,
                              text=True)
    holder.stdout.readline()
    run = ["run", str(folder / "good.yaml"), "-o", str(target), "--no-plot"]
    assert cli.main(run) == cli.EXIT_ERROR
    assert f"(pid {holder.pid} on " in capsys.readouterr().err
    holder.kill()
    holder.wait()
    assert (tmp_path / "run.h5.lock").exists(), "left behind by the killed holder"
    assert cli.main(run) == cli.EXIT_OK
    assert not (tmp_path / "run.h5.lock").exists()


# -- readers ----------------------------------------------------------------------------------

READ_AND_WAIT = """\
import sys, h5py
with h5py.File(sys.argv[1], "r") as file:  # a plain reader, as HDFView or a notebook
    before = file["instances/left/x"][()]
    print(len(before), flush=True)
    sys.stdin.readline()
    after = file["instances/left/x"][()]
    print(len(after), bool((before == after).all()), file.attrs["stop"], flush=True)
"""


def test_a_file_open_for_reading_elsewhere_is_never_truncated(folder, tmp_path):
    target = tmp_path / "run.h5"
    assert cosim("run", str(folder / "good.yaml"), "-o", str(target)).returncode == 0
    reader = subprocess.Popen([sys.executable, "-c", READ_AND_WAIT, str(target)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert reader.stdout.readline().strip() == "101"
    done = cosim("run", str(folder / "longer.yaml"), "-o", str(target))
    assert done.returncode == 0, done.stderr
    out, _ = reader.communicate("go\n", timeout=60)
    assert out.split() == ["101", "True", "1.0"], "the reader still sees its (old) file"
    with open_results(target) as res:
        assert res.rows == 201 and res.attrs["stop"] == 2.0


POLL = """\
import json, sys, time
from pathlib import Path
import numpy as np
from cosim.results.reader import open_results
folder, target = Path(sys.argv[1]), Path(sys.argv[2])
seen, errors, reads = [], [], 0
while not target.exists():
    found = sorted(folder.glob("slow.partial-*.h5"))
    if not found:
        time.sleep(0.005)
        continue
    try:
        with open_results(found[0]) as res:
            # while the run sets up nothing is recorded yet: as if no row
            t, y = (res.time, res["s.y"]) if "s.y" in res else (np.empty(0), np.empty(0))
        reads += 1
        if len(t) != len(y) or not np.allclose(y[1:], t[1:], atol=1e-9):
            errors.append(f"mixed: {len(t)} times, {len(y)} values")
        seen.append(len(t))
    except Exception as error:
        if target.exists():  # renamed between the glob and the open
            break
        errors.append(f"{type(error).__name__}: {error}")
    time.sleep(0.01)
print(json.dumps({"reads": reads, "errors": errors[:5], "lengths": sorted(set(seen))}))
"""


def test_a_reader_polling_a_file_being_written_sees_consistent_rows(folder, tmp_path):
    """SWMR: the reader opens the partial file while the writer appends blocks of rows; it
    never fails to open and always sees time and values of one length (y = t here)."""
    scenario = slow_scenario(folder, tmp_path, "slow", stop=4.0, delay=0.0003)
    target = tmp_path / "slow.h5"
    poller = subprocess.Popen([sys.executable, "-c", POLL, str(tmp_path), str(target)],
                              stdout=subprocess.PIPE, text=True)
    done = cosim("run", str(scenario), "-o", str(target))
    assert done.returncode == 0, done.stderr
    report = json.loads(poller.communicate(timeout=60)[0])
    assert report["errors"] == []
    growing = [n for n in report["lengths"] if 0 < n < 4001]
    assert growing, report  # it read the file while rows were being appended
    assert all(n % 1024 == 0 for n in growing), "whole blocks only"


def test_the_reader_cuts_every_dataset_to_the_common_length(tmp_path):
    path = tmp_path / "uneven.h5"
    with h5py.File(path, "w") as file:  # as a writer killed between two datasets leaves it
        file.attrs["status"] = "running"
        file["time"] = np.arange(10.0)
        file["instances/a/x"] = np.arange(8.0)
        file["instances/b/y"] = np.arange(9.0)
    with open_results(path) as res:
        assert res.rows == 8 and len(res.time) == len(res["a.x"]) == len(res["b.y"]) == 8


# -- killed runs ------------------------------------------------------------------------------

KILLED_COHORT = """\
version: 1
name: killed cohort
fmus: {slow: SlowModel.fmu}
instances: {s: {fmu: slow, parameters: {delay: 0.0002}}}
simulation: {stop: 1.2, step: 0.001}
criteria:
  - {name: reaches the end, signal: s.y, measure: final, min: 1.199}
cohort: {method: table, table: members.csv}
"""


def completed_members(path: Path) -> list[str]:
    try:
        with open_results(path, wait=0.0) as res:
            return [m for m in res.members if res.group["members"][m].attrs["status"]
                    == "completed"]
    except (CosimError, KeyError, OSError):
        # between two members the writer holds it outside SWMR mode: a read racing the next
        # member's groups may see half-written metadata (HDF5: "addr overflow")
        return []


@pytest.mark.slow
def test_a_rerun_of_a_killed_cohort_keeps_the_finished_members(folder, tmp_path):
    """``cosim run`` and its worker are killed outright (SIGKILL: a node lost, ``scancel
    -s KILL``) once two members finished. The partial file keeps them; a rerun to the same
    target never touches it; settling it (what ``commit`` does for a run it claimed) gives it
    a status and consistent lengths."""
    scenario = tmp_path / "cohort.yaml"
    scenario.write_text(KILLED_COHORT.replace("SlowModel.fmu", str(folder / "SlowModel.fmu")))
    (tmp_path / "members.csv").write_text("s.kill_at\n" + "0\n" * 8)
    target = tmp_path / "cohort.h5"
    run = subprocess.Popen([sys.executable, "-m", "cosim.cli", "run", str(scenario), "-o",
                            str(target), "--no-plot"], start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: partials(tmp_path, "cohort") and
             len(completed_members(partials(tmp_path, "cohort")[0])) >= 2)
    os.killpg(run.pid, signal.SIGKILL)  # the supervisor; its worker dies with it
    run.wait()
    wait_for(lambda: not (tmp_path / "cohort.h5.lock").exists() or _unlocked(tmp_path))
    [partial] = partials(tmp_path, "cohort")
    snapshot = digest(partial)
    finished = completed_members(partial)
    with open_results(partial) as res:
        assert res.status == "running" and len(finished) >= 2
        for member in finished:
            with res.member(member) as m:
                assert m.rows == 1201 and m.verdict["passed"]
    rerun = cosim("run", str(scenario), "-o", str(target))
    assert rerun.returncode == 0, rerun.stderr
    assert "COHORT VERDICT: PASS (8 of 8 members passed" in rerun.stdout
    assert partials(tmp_path, "cohort") == [partial] and digest(partial) == snapshot
    output.settle(partial, "failed", "killed by SIGKILL")
    with h5py.File(partial, "r") as file:  # settled: any HDF5 reader opens it
        assert file.attrs["status"] == "failed" and file.attrs["error"] == "killed by SIGKILL"
        for member in file["members"].values():
            assert member.attrs["status"] in ("completed", "failed")
            if "time" in member:
                assert len(member["time"]) == len(member["instances/s/y"])
        assert [file["members"][m].attrs["status"] for m in finished] == ["completed"] * len(
            finished)


def _unlocked(folder: Path) -> bool:
    """The lock beside the target is free (its holder died)."""
    import fcntl

    with open(folder / "cohort.h5.lock", "a") as stream:
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(stream, fcntl.LOCK_UN)
        return True


LEFT_OUTSIDE_SWMR = """\
import os, sys
import numpy as np
from cosim.results.recorder import create_results_file
file = create_results_file(sys.argv[1], {"step": 0.1})
file.create_dataset("time", data=np.arange(5.0), maxshape=(None,))
file.flush()
os._exit(9)  # killed while creating its datasets, before SWMR mode: HDF5's mark is set
"""


def test_a_file_whose_writer_died_outside_swmr_mode_is_read_then_settled(tmp_path):
    path = tmp_path / "left.h5"
    subprocess.run([sys.executable, "-c", LEFT_OUTSIDE_SWMR, str(path)], check=False,
                   timeout=60)
    before = digest(path)
    with pytest.raises(OSError, match="open for"):
        h5py.File(path, "r", swmr=True)
    with open_results(path, wait=0.2) as res:  # no writer comes back: read what is on disk
        assert res.status == "running" and res.rows == 5
    assert digest(path) == before, "reading changes nothing"
    assert output.file_status(path) == "running"
    output.settle(path, "failed", "killed")
    with h5py.File(path, "r") as file:
        assert file.attrs["status"] == "failed" and len(file["time"]) == 5


def test_sigterm_interrupts_the_run_keeps_its_rows_and_the_previous_results(folder, tmp_path):
    """SIGTERM (a scheduler's time limit) lands in the FMU's own Python code most of the time:
    pythonfmu reports it as fmi2Fatal, and the run still ends interrupted, exit 130."""
    target = tmp_path / "slow.h5"
    quick = slow_scenario(folder, tmp_path, "quick", stop=0.1, delay=0.0)
    assert cli.main(["run", str(quick), "-o", str(target), "--no-plot"]) == cli.EXIT_OK
    before = digest(target)
    slow = slow_scenario(folder, tmp_path, "slow", stop=100.0, delay=0.0003)
    run = start_cosim("run", str(slow), "-o", str(target))

    def has_rows() -> bool:
        found = partials(tmp_path, "slow")
        if not found:
            return False
        with open_results(found[0]) as res:
            return res.rows > 0
    wait_for(has_rows)
    run.send_signal(signal.SIGTERM)
    out, err = run.communicate(timeout=60)
    assert run.returncode == cli.EXIT_INTERRUPTED, err
    assert err.startswith("interrupted (SIGTERM) at t = ")
    assert digest(target) == before
    with open_results(kept_file(err)) as res:
        assert res.status == "interrupted" and res.attrs["error"].startswith("interrupted")
        assert res.rows > 1024 and res.time[-1] < 100.0
        np.testing.assert_allclose(res["s.y"][1:], res.time[1:], atol=1e-9)


def test_a_killed_writer_is_settled_by_commit(folder, tmp_path):
    """The seam: a claim held in one process, ``run_into`` in another that is killed; commit
    (status=failed) settles the partial file it left 'running' (the HDF5 writer's mark set),
    keeps it aside and releases the lock."""
    scenario = slow_scenario(folder, tmp_path, "dies", stop=2.0, delay=0.0, kill_at=1.5)
    claim = output.claim(tmp_path / "dies.h5")
    code = textwrap.dedent("""\
        import sys
        from pathlib import Path
        from cosim.running.pipeline import prepare, run_into
        run_into(prepare(sys.argv[1]), Path(sys.argv[2]))
        """)
    worker = subprocess.run([sys.executable, "-c", code, str(scenario), str(claim.partial)],
                            capture_output=True, text=True, timeout=120)
    assert worker.returncode == -signal.SIGKILL
    kept = output.commit(claim, status="failed", error="the worker was killed (SIGKILL)")
    assert kept == claim.partial and not (tmp_path / "dies.h5").exists()
    assert not (tmp_path / "dies.h5.lock").exists()
    with h5py.File(kept, "r") as file:
        assert file.attrs["status"] == "failed"
        assert file.attrs["error"] == "the worker was killed (SIGKILL)"
        assert len(file["time"]) == len(file["instances/s/y"]) >= 1024


def test_discarding_a_results_file_removes_the_parts_it_links_to(tmp_path):
    """Under MPI a results file links to its parts folder, named after the partial file it
    was renamed from; ``discard`` removes both, and leaves the folder of a partial file that
    is still there (a run kept aside) alone."""
    from cosim.results.output import discard

    target = tmp_path / "batch.h5"
    target.write_bytes(b"")
    linked = tmp_path / "batch.data-20260101-000000-1"
    kept = tmp_path / "batch.data-20260101-000001-2"
    for folder in (linked, kept):
        folder.mkdir()
        (folder / "rank-0000.h5").write_bytes(b"")
    (tmp_path / "batch.partial-20260101-000001-2.h5").write_bytes(b"")
    discard(target)
    assert not target.exists() and not linked.exists() and kept.is_dir()
