"""Real ``mpiexec -n 1/2/3`` runs: same datasets whatever the rank count; a failing rank stops all.

Scenarios are written into a temporary folder; FMUs come from the library (``fmus/``) or are
built from ``tests/mpi/``.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import fmu_kit as kit  # tests/fmu_kit.py
import h5py
import numpy as np
import pytest

from cosim.library.build import build_fmu
from cosim.results.output import parts_folder
from cosim.results.reader import open_results

pytestmark = pytest.mark.mpi
BIN = Path(sys.executable).parent
MPIEXEC = BIN / "mpiexec"
HERE = Path(__file__).parent


def cosim(args: list[str], ranks: int | None, timeout: float = 240):
    """Run the cosim command, under ``mpiexec -n ranks`` unless ranks is None."""
    command = [sys.executable, "-m", "cosim.cli", *args]
    if ranks is not None:
        command = [str(MPIEXEC), "-n", str(ranks), *command]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def ring_scenario(folder: Path, count: int, algorithm: str, stop: float = 2.0,
                  closed: bool = True) -> Path:
    """``count`` oscillators in a ring, each driven by its left neighbour's position; not
    ``closed``: a chain (o0 drives o1 … drives the last), where values cross ranks one way."""
    lines = ["version: 1", "name: ring", "fmus: {osc: oscillator}", "instances:"]
    for i in range(count):
        lines.append(f"  o{i}: {{fmu: osc, cost: {1 + i % 3}, parameters: "
                     f"{{m: {1 + 0.1 * i}, k: {1 + 0.05 * i}, k_c: 0.3, x0: {0.1 * (i % 4)}}}}}")
    lines.append("connections:")
    for i in range(0 if closed else 1, count):
        lines.append(f"  - o{(i - 1) % count}.x -> o{i}.x_other")
    lines += [f"simulation: {{start: 0, stop: {stop:g}, step: 0.001, algorithm: {algorithm}}}",
              "record: {interval: 0.005, variables: ['*.*']}"]
    path = folder / f"{'ring' if closed else 'chain'}_{algorithm}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def datasets(path: Path, member: str | None = None) -> dict[str, np.ndarray]:
    with open_results(path, member) as res:
        assert res.status == "completed", res.attrs.get("error")
        out = {name: res[name] for name in res.variables}
        out["time"] = res.time
    return out


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["jacobi", "gauss-seidel"])
def test_distributed_run_is_identical_for_1_2_3_4_ranks(tmp_path, algorithm):
    scenario = ring_scenario(tmp_path, 7, algorithm)
    reference = None
    for ranks in (None, 1, 2, 3, 4):  # 4 ranks oversubscribe the 2-core CI machine: still exact
        out = tmp_path / f"r{ranks}.h5"
        done = cosim(["run", str(scenario), "-o", str(out), "--no-plot"], ranks)
        assert done.returncode == 0, done.stderr
        data = datasets(out)
        assert len(data) == 7 * 2 + 1
        parts = list(tmp_path.glob(f"{out.stem}.data-*/rank-*.h5"))
        assert len(parts) == (ranks if ranks and ranks > 1 else 0), "linked, not copied"
        if reference is None:
            reference = data
            continue
        for name, values in reference.items():
            assert np.array_equal(values, data[name]), f"{name} differs with {ranks} ranks"


@pytest.mark.slow
def test_adaptive_coupling_is_identical_for_1_2_3_ranks(tmp_path):
    """The adaptive flagship over 2 s: every rank takes the same steps (the error estimate
    and the step it proposes agreed over the ranks, the announced event times sent to every
    rank), so the datasets and /master are the same whatever the rank count."""
    import h5py
    import yaml

    data = yaml.safe_load((HERE.parent / "scenarios" /
                           "vvi_complete_av_block_adaptive.yaml").read_text())
    data["simulation"]["stop"] = 2.0
    scenario = tmp_path / "adaptive.yaml"
    scenario.write_text(yaml.safe_dump(data, sort_keys=False))
    reference = None
    for ranks in (None, 2, 3):
        out = tmp_path / f"r{ranks}.h5"
        done = cosim(["run", str(scenario), "-o", str(out), "--no-plot"], ranks)
        assert done.returncode == 2, done.stderr  # FAIL: the criteria's windows start at 2 s
        result = datasets(out)
        with h5py.File(out, "r", locking=False) as file:
            result["master steps"] = file["master/step"][:]
            result["master rejected"] = file["master/rejected_time"][:]
        assert len(result["master steps"]) < 2000 / 3, "adaptive: far fewer than 2000 steps"
        if reference is None:
            reference = result
            continue
        for name, values in reference.items():
            assert np.array_equal(values, result[name]), f"{name} differs with {ranks} ranks"


def test_a_small_coupled_system_stays_on_one_rank_when_its_exchanges_cost_more(tmp_path):
    """The adaptive flagship (five FMUs in one Gauss-Seidel loop, each step ~0.1 ms of work)
    with ``balance: measured``: the pilot times the exchanges as well as the FMUs, the split
    saves less than its exchanges cost, so the loop is kept whole on one rank (before: split
    over the ranks, 2.0-2.5x the one-process wall time). The ranks that own nothing still
    follow the steps (the announced event times reach them: before, a rank owning no
    instance of an event announcer took other steps and the run hung in the step agreement),
    and the results equal one process's at 2 and 3 ranks."""
    import yaml

    data = yaml.safe_load((HERE.parent / "scenarios" /
                           "vvi_complete_av_block_adaptive.yaml").read_text())
    data["simulation"]["stop"] = 1.0
    data["parallel"] = {"balance": "measured"}
    scenario = tmp_path / "adaptive.yaml"
    scenario.write_text(yaml.safe_dump(data, sort_keys=False))
    reference = None
    for ranks in (None, 2, 3):
        out = tmp_path / f"r{ranks}.h5"
        done = cosim(["run", str(scenario), "-o", str(out), "--no-plot"], ranks, timeout=120)
        assert done.returncode == 2, done.stderr  # FAIL: the criteria's windows start at 2 s
        result = datasets(out)
        if reference is None:
            reference = result
            continue
        with open_results(out) as res:
            owner = res.attrs["partition"]
        assert len(set(owner.values())) == 1, f"split over {ranks} ranks: {owner}"
        for name, values in reference.items():
            assert np.array_equal(values, result[name]), f"{name} differs with {ranks} ranks"


@pytest.mark.parametrize("simulation", [
    "{start: 0, stop: 0.5, step: 0.001, algorithm: jacobi}",
    "{start: 0, stop: 0.5, step: 0.001, algorithm: gauss-seidel, "
    "adaptive: {max_step: 0.05, tolerance: 0.001}}"], ids=["fixed", "adaptive"])
def test_multirate_is_identical_for_1_2_3_ranks(tmp_path, simulation):
    """A ring of four oscillators, two with steps of their own (4 and 2 ms on a 1 ms base):
    every rank keeps the same bookkeeping of the multirate steps (and, adaptive, agrees on
    the controlled step), so the datasets and the FMU steps per instance are the same
    whatever the rank count."""
    import h5py

    ring = ring_scenario(tmp_path, 4, "jacobi", stop=0.5).read_text()
    ring = ring.replace("o1: {fmu: osc,", "o1: {fmu: osc, step: 0.004,")
    ring = ring.replace("o3: {fmu: osc,", "o3: {fmu: osc, step: 0.002,")
    ring = re.sub(r"simulation: .*", f"simulation: {simulation}", ring)
    scenario = tmp_path / "multirate.yaml"
    scenario.write_text(ring)
    reference = None
    for ranks in (None, 2, 3):
        out = tmp_path / f"r{ranks}.h5"
        done = cosim(["run", str(scenario), "-o", str(out), "--no-plot"], ranks)
        assert done.returncode == 0, done.stderr
        result = datasets(out)
        with h5py.File(out, "r", locking=False) as file:
            steps = json.loads(file["master"].attrs["instance_steps"])
        assert steps["o1"] < steps["o3"] < steps["o0"] == steps["o2"], steps
        result["steps"] = np.array([steps[f"o{i}"] for i in range(4)])
        if reference is None:
            reference = result
            continue
        for name, values in reference.items():
            assert np.array_equal(values, result[name]), f"{name} differs with {ranks} ranks"


def test_a_pipeline_is_identical_for_1_2_3_ranks(tmp_path):
    """Values cross ranks one way only (upstream ranks never receive); the results file says
    how the ranks shared the work."""
    scenario = ring_scenario(tmp_path, 6, "jacobi", closed=False)
    reference = None
    for ranks in (None, 2, 3):
        out = tmp_path / f"r{ranks}.h5"
        done = cosim(["run", str(scenario), "-o", str(out), "--no-plot"], ranks)
        assert done.returncode == 0, done.stderr
        data = datasets(out)
        if reference is None:
            reference = data
            continue
        with open_results(out) as res:
            partition = res.attrs["partition"]
            assert sorted(set(partition.values())) == list(range(ranks))
            assert len(res.attrs["rank_busy_seconds"]) == ranks
            assert 0 < res.attrs["load_balance"] <= 1
        assert f"ranks:   {ranks} ranks, load balance" in done.stdout
        assert done.stdout.startswith(f"results: {out}\n") and "\n\n" not in done.stdout
        for name, values in reference.items():
            assert np.array_equal(values, data[name]), f"{name} differs with {ranks} ranks"


def feedthrough_scenario(folder: Path) -> Path:
    """The two-mass oscillator of test_master.py (Mass2's F depends directly on Mass1's x1,
    v1), with a chain of two gains fed by F: under Jacobi, F, then g1.y, then g2.y are settled
    after each step, each in its own stage; over 2 and 3 ranks each of those values crosses
    ranks."""
    fmus = {name: kit.build_c_model(name, folder) for name in ("mass1", "mass2", "gain")}
    path = folder / "feedthrough.yaml"
    path.write_text(f"""\
version: 1
fmus: {{mass1: {fmus['mass1']}, mass2: {fmus['mass2']}, gain: {fmus['gain']}}}
instances:
  m1: {{fmu: mass1, cost: 2}}
  m2: {{fmu: mass2, cost: 2}}
  g1: {{fmu: gain, parameters: {{k: 0.5}}}}
  g2: {{fmu: gain}}
connections: [m1.x1 -> m2.x1, m1.v1 -> m2.v1, m2.F -> m1.F, m2.F -> g1.u, g1.y -> g2.u]
simulation: {{start: 0, stop: 0.5, step: 0.001, algorithm: jacobi}}
record: ['*.*', m2.x2]
""")
    return path


def test_settled_feedthrough_outputs_are_identical_for_1_2_3_ranks(tmp_path):
    scenario = feedthrough_scenario(tmp_path)
    reference = None
    for ranks in (None, 2, 3):
        out = tmp_path / f"r{ranks}.h5"
        done = cosim(["run", str(scenario), "-o", str(out), "--no-plot"], ranks)
        assert done.returncode == 0, done.stderr
        data = datasets(out)
        if reference is None:
            reference = data
            assert data["m2.F"][0] == -100.0 and data["g2.y"][0] == -100.0
            continue
        with open_results(out) as res:
            owner = res.attrs["partition"]
        assert len({owner["m1"], owner["m2"], owner["g2"]}) == ranks  # values cross ranks
        for name, values in reference.items():
            assert np.array_equal(values, data[name]), f"{name} differs with {ranks} ranks"


MIXED = """\
version: 1
name: mixed costs
fmus: {osc: oscillator, tissue: tissue}
instances:
  o0: {fmu: osc}
  o1: {fmu: osc, parameters: {x0: 0.0}}
  o2: {fmu: osc}
  patch: {fmu: tissue, scale: tissue, parameters: {nx: 120, ny: 120, intrinsic_rate: 70,
                                                   intrinsic_delay: 0}}
connections: [o0.x -> o1.x_other, o1.x -> o2.x_other, o2.x -> o0.x_other]
simulation: {start: 0, stop: 0.3, step: 0.001}
record: {interval: 0.01, variables: [o0.x, o1.x, o2.x, patch.V_electrode]}
"""


def test_measured_balance_splits_the_run_on_the_pilot_measurements(tmp_path):
    """Declared costs (all 1) put o2 with the 14 400-node tissue patch. With ``balance:
    measured`` a pilot times every instance, and the run is split on those seconds: the
    partition in the file is the one the measured costs give (that costs where the patch
    outweighs the three oscillators give it a rank of its own is tested on fixed costs in
    test_graph.py). The seconds themselves are not compared: one call preempted on a busy
    machine makes an oscillator look slower than the patch. The pilot is not in the results:
    they equal a plain run's."""
    from cosim.coupling.partition import partition
    from cosim.scenario.scenario import build, load_scenario

    declared = tmp_path / "declared.yaml"
    declared.write_text(MIXED)
    measured = tmp_path / "measured.yaml"
    measured.write_text(MIXED + "parallel: {balance: measured, measure_steps: 30}\n")
    graph, _ = build(load_scenario(declared))
    plain = cosim(["run", str(declared), "-o", str(tmp_path / "plain.h5"), "--no-plot"], None)
    assert plain.returncode == 0, plain.stderr
    with open_results(tmp_path / "plain.h5") as res:  # one process: every 16th step timed
        busy = res.attrs["instance_busy_seconds"]
        assert sorted(busy) == ["o0", "o1", "o2", "patch"] and min(busy.values()) > 0
    partitions = {}
    for scenario in (declared, measured):
        out = tmp_path / f"{scenario.stem}-2.h5"
        done = cosim(["run", str(scenario), "-o", str(out), "--no-plot"], 2)
        assert done.returncode == 0, done.stderr
        with open_results(out) as res:
            partitions[scenario.stem] = res.attrs["partition"]
            assert res.attrs["balance"] == scenario.stem
            if scenario is measured:
                cost = res.attrs["measured_cost_seconds"]
                assert sorted(cost) == sorted(busy) and min(cost.values()) > 0
                assert partitions["measured"] == partition(graph, 2, cost=cost)
        reference = datasets(tmp_path / "plain.h5")
        for name, values in datasets(out).items():
            assert np.array_equal(values, reference[name]), f"{name} differs ({scenario.stem})"
    assert partitions["declared"] == {"o0": 0, "o1": 0, "o2": 1, "patch": 1}


def test_ranks_run_blas_and_openmp_with_one_thread(tmp_path):
    """With a worker thread per core in every rank, ranks fight for the cores: OpenBLAS workers
    woken once (scipy's ``expm`` in a pythonfmu model) keep spinning (cosim/launcher.py).
    Each rank writes its own file (the ranks' lines interleave in mpiexec's output)."""
    code = ("import cosim, os, sys, numpy, scipy.linalg; scipy.linalg.expm(numpy.eye(3)); "
            "open(os.path.join(sys.argv[1], os.environ['PMI_RANK']), 'w').write("
            "f\"{os.environ['OPENBLAS_NUM_THREADS']} {len(os.listdir('/proc/self/task'))}\")")
    done = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-c", code, str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [(tmp_path / rank).read_text() for rank in ("0", "1")]
    assert lines == ["1 1", "1 1"], "one thread per rank, no BLAS workers"


def test_graph_shows_the_partition(tmp_path):
    scenario = ring_scenario(tmp_path, 7, "jacobi")
    done = cosim(["graph", str(scenario), "--ranks", "3"], None)
    assert done.returncode == 0, done.stderr
    assert "rank 2" in done.stdout
    assert "partition over 3 ranks cuts" in done.stdout


def cohort_scenario(folder: Path) -> Path:
    text = """\
version: 1
name: oscillator cohort
fmus: {osc: oscillator}
instances:
  a: {fmu: osc, parameters: {k_c: 0.5}}
  b: {fmu: osc, parameters: {k_c: 0.5, x0: 0.0}}
connections:
  - a.x -> b.x_other
  - b.x -> a.x_other
simulation: {start: 0, stop: 1.0, step: 0.001, algorithm: gauss-seidel}
record: {interval: 0.01, variables: [a.x, b.x]}
criteria:
  - {name: a stays small, signal: a.x, measure: max, max: 1.05}
cohort:
  method: latin-hypercube
  size: 7
  seed: 11
  parameters:
    a.m: {distribution: lognormal, median: 1.0, sigma: 0.3}
    b.k: {distribution: uniform, low: 0.5, high: 2.0}
    a.x0: {distribution: normal, mean: 1.0, sd: 0.05, low: 0.9, high: 1.1}
"""
    path = folder / "cohort.yaml"
    path.write_text(text)
    return path


def assert_same_members(reference: Path, other: Path, count: int) -> None:
    """Members 0..count-1 of ``other`` hold the datasets of ``reference``, bit for bit."""
    for i in range(count):
        a, b = datasets(reference, f"{i:06d}"), datasets(other, f"{i:06d}")
        assert a.keys() == b.keys()
        for name in a:
            assert np.array_equal(a[name], b[name]), (i, name, other.name)


COHORT_VERDICT = """\
COHORT VERDICT: FAIL (6 of 7 members passed, 1 failed their criteria, 0 did not complete)
  worst member per criterion (7 members judged):
  FAIL  a stays small: max(a.x) = 1.052 in member 000003 (limit <= 1.05; window 0-1 s); \
broke at t = 0.000 s; met by 6 of 7
"""


@pytest.mark.slow
def test_cohort_is_identical_for_1_2_3_ranks(tmp_path):
    """Members, summary and the cohort's verdict (one member of 7 fails: exit 2) are the same
    in one process and under 2 and 3 ranks."""
    scenario = cohort_scenario(tmp_path)
    reference = None
    for ranks in (None, 2, 3):
        out = tmp_path / f"c{ranks}.h5"
        done = cosim(["run", str(scenario), "-o", str(out), "--no-plot"], ranks)
        assert done.returncode == 2, done.stderr
        assert done.stdout == f"results: {out}\n{COHORT_VERDICT}"
        with open_results(out) as res:
            assert res.members == [f"{i:06d}" for i in range(7)]
            summary = res.summary()
        assert list(summary["member"]) == list(range(7))
        if reference is None:
            reference = (summary, out)
            assert len(set(summary["a.m"])) == 7, "members differ"
            continue
        for column in ("a.m", "b.k", "a.x0", "a stays small"):
            assert np.array_equal(reference[0][column], summary[column])
        assert_same_members(reference[1], out, 7)


@pytest.mark.slow
def test_cohort_smaller_than_the_rank_count(tmp_path):
    """Leaders past the last member get none and ask for none; rank 0 does not wait for them."""
    scenario = cohort_scenario(tmp_path)
    scenario.write_text(scenario.read_text().replace("size: 7", "size: 2"))
    serial, spread = tmp_path / "serial.h5", tmp_path / "spread.h5"
    assert cosim(["run", str(scenario), "-o", str(serial), "--no-plot"], None).returncode == 0
    done = cosim(["run", str(scenario), "-o", str(spread), "--no-plot"], 3, timeout=120)
    assert done.returncode == 0, done.stderr
    assert_same_members(serial, spread, 2)


@pytest.mark.slow
def test_cohort_with_groups_of_two_ranks(tmp_path):
    """Both kinds together: 2 groups of 2 ranks, each member distributed over its group."""
    scenario = cohort_scenario(tmp_path)
    text = scenario.read_text() + "parallel: {group_size: 2}\n"
    scenario.write_text(text)
    serial, grouped = tmp_path / "serial.h5", tmp_path / "grouped.h5"
    assert cosim(["run", str(scenario), "-o", str(serial), "--no-plot"], None).returncode == 2
    done = cosim(["run", str(scenario), "-o", str(grouped), "--no-plot"], 4)
    assert done.returncode == 2, done.stderr
    assert COHORT_VERDICT in done.stdout
    assert_same_members(serial, grouped, 7)


def test_a_failing_rank_stops_every_rank_quickly(tmp_path):
    failing = build_fmu(HERE / "mpi" / "failing_model.py", tmp_path)
    scenario = tmp_path / "fails.yaml"
    scenario.write_text(f"""\
version: 1
fmus: {{osc: oscillator, pump: {failing}}}
instances:
  heart: {{fmu: osc}}
  pump: {{fmu: pump, parameters: {{fail_time: 0.3}}}}
connections:
  - heart.x -> pump.u
simulation: {{start: 0, stop: 1000, step: 0.001}}
""")
    out = tmp_path / "fails.h5"
    started = time.monotonic()
    done = cosim(["run", str(scenario), "-o", str(out), "--no-plot"], 2, timeout=120)
    elapsed = time.monotonic() - started
    assert done.returncode != 0
    assert elapsed < 60, f"took {elapsed:.0f} s to stop"
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "rank 1" in errors[0] and "'pump'" in errors[0] and "t = 0.3" in errors[0]
    assert "diverged" in done.stderr  # the FMU's own log line comes with it
    assert "Traceback" not in done.stderr
    assert not out.exists(), "the target only ever holds a completed run"
    kept = Path(re.search(r"kept in (\S+\.h5)", done.stderr).group(1))
    assert kept.name.startswith("fails.partial-") and kept.exists()
    with open_results(kept) as res:  # what every rank computed, merged, cut to one length
        assert res.status == "failed" and len(res.time) == len(res["heart.x"]) == res.rows
    assert parts_folder(kept).exists(), "the partial main file links to its parts"


def test_mpi_refuses_a_target_that_is_not_a_results_file(tmp_path):
    """Rank 0 claims the target; its refusal is one line on every rank count."""
    scenario = ring_scenario(tmp_path, 3, "jacobi", stop=0.01)
    before = scenario.read_bytes()
    done = cosim(["run", str(scenario), "-o", str(scenario), "--no-plot"], 2, timeout=120)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert done.stderr.endswith(f"{scenario}: exists and is not a cosim results file; cosim "
                                "only replaces its own results: choose another -o or move that "
                                "file\n")
    assert scenario.read_bytes() == before and sorted(tmp_path.iterdir()) == [scenario]


SLOW_PAIR = """\
version: 1
name: slow pair
fmus: {slow: FMU}
instances:
  a: {fmu: slow, parameters: {delay: 0.0003}}
  b: {fmu: slow, parameters: {delay: 0.0003}}
simulation: {stop: 3.0, step: 0.001}
"""
POLL_MAIN = """\
import json, sys, time
from pathlib import Path
import numpy as np
from cosim.results.reader import open_results
folder, target = Path(sys.argv[1]), Path(sys.argv[2])
seen, errors = set(), []
while not target.exists():
    found = sorted(folder.glob("pair.partial-*.h5"))
    if not found:
        time.sleep(0.005)
        continue
    try:
        with open_results(found[0]) as res:
            names = res.variables
            t, values = res.time, [res[name] for name in names]
        if any(len(v) != len(t) or not np.allclose(v[1:], t[1:], atol=1e-9) for v in values):
            errors.append(f"mixed lengths {len(t)}, {[len(v) for v in values]}")
        seen.add((len(t), len(names)))
    except Exception as error:
        if not target.exists():
            errors.append(f"{type(error).__name__}: {error}")
    time.sleep(0.01)
print(json.dumps({"errors": errors[:5], "seen": sorted(seen)}))
"""


def test_a_reader_of_a_distributed_run_sees_consistent_rows(tmp_path):
    """The main file links to the ranks' part files (each written in SWMR mode); a reader of
    the main file while 2 ranks write sees every variable cut to the rows all of them have."""
    fmu = kit.build_slow_model(tmp_path)
    scenario = tmp_path / "pair.yaml"
    scenario.write_text(SLOW_PAIR.replace("FMU", str(fmu)))
    target = tmp_path / "pair.h5"
    poller = subprocess.Popen([sys.executable, "-c", POLL_MAIN, str(tmp_path), str(target)],
                              stdout=subprocess.PIPE, text=True)
    done = cosim(["run", str(scenario), "-o", str(target), "--no-plot"], 2, timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(poller.communicate(timeout=60)[0])
    assert report["errors"] == []
    assert any(0 < rows < 3001 and names == 2 for rows, names in report["seen"]), report


def _completed_members(part: Path) -> int:
    from cosim.results.reader import read_now

    with read_now(part) as file:
        return sum(1 for group in file.get("members", {}).values()
                   if group.attrs.get("status") == "completed")


KILLED_COHORT = """\
version: 1
name: killed cohort
fmus: {slow: FMU}
instances: {s: {fmu: slow, parameters: {delay: 0.0}}}
simulation: {stop: 1.2, step: 0.001}
cohort: {method: table, table: members.csv}
"""


@pytest.mark.slow
def test_a_member_that_kills_its_process_fails_alone_under_mpi(tmp_path):
    """Under ``cosim run`` a rank runs its members in a child process (cosim/running/runner.py): a
    member whose FMU kills that process (SIGKILL) fails; the others run, the summary and the
    cohort verdict are written, as in one process."""
    fmu = kit.build_slow_model(tmp_path)
    scenario = tmp_path / "cohort.yaml"
    scenario.write_text(KILLED_COHORT.replace("FMU", str(fmu)))
    (tmp_path / "members.csv").write_text("s.kill_at\n0\n0\n0\n1.1\n0\n0\n")
    target = tmp_path / "cohort.h5"
    done = cosim(["run", str(scenario), "-o", str(target), "--no-plot"], 2, timeout=180)
    assert done.returncode == 2, done.stderr
    assert "COHORT VERDICT: FAIL (5 of 6 members passed, 0 failed their criteria, 1 did not " \
           "complete)" in done.stdout
    assert "member 000003 failed: instance 's' in fmi2DoStep at t = 1.1 s: the FMU was killed " \
           "by SIGKILL" in done.stderr
    with open_results(target) as res:
        assert res.status == "completed"
        statuses = {m: res.group["members"][m].attrs["status"] for m in res.members}
        assert statuses == {f"{i:06d}": "failed" if i == 3 else "completed" for i in range(6)}
        with res.member("000003") as member:
            assert member.rows == 1101, "every row up to the kill is kept"


@pytest.mark.slow
def test_a_rerun_of_a_stopped_mpi_cohort_keeps_its_partial_file(tmp_path):
    """SIGTERM stops an MPI cohort; rank 0's supervisor completes the partial main file with
    what the ranks' part files held (the members that finished). A rerun to the same target
    leaves every file of the stopped run as it was."""
    fmu = kit.build_slow_model(tmp_path)
    scenario = tmp_path / "cohort.yaml"
    scenario.write_text(KILLED_COHORT.replace("FMU", str(fmu)).replace(
        "parameters: {delay: 0.0}", "parameters: {delay: 0.0, kill_at: 0}"))
    (tmp_path / "members.csv").write_text("s.delay\n0\n0\n0\n0.02\n0.02\n0.02\n")
    target = tmp_path / "cohort.h5"
    command = [str(MPIEXEC), "-n", "2", sys.executable, "-m", "cosim.cli", "run",
               str(scenario), "-o", str(target), "--no-plot"]
    stopped = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=dict(os.environ, PATH=f"{BIN}{os.pathsep}"
                                                   f"{os.environ.get('PATH', '')}"))
    deadline = time.monotonic() + 120
    while True:  # until the slow members run: the fast ones finished
        assert time.monotonic() < deadline and stopped.poll() is None
        parts = list(tmp_path.glob("cohort.data-*/rank-*.h5"))
        try:
            finished = sum(_completed_members(part) for part in parts)
        except (OSError, KeyError):
            finished = 0
        if finished >= 3:
            break
        time.sleep(0.1)
    stopped.send_signal(signal.SIGTERM)
    stopped.communicate(timeout=120)
    assert stopped.returncode != 0 and not target.exists()
    [partial] = tmp_path.glob("cohort.partial-*.h5")
    kept = {path: path.read_bytes() for path in tmp_path.rglob("cohort.partial-*")
            if path.is_file()}
    with open_results(partial) as res:
        assert res.status == "interrupted"
        finished = [m for m in res.members if res.group["members"][m].attrs["status"]
                    == "completed"]
        assert len(finished) >= 3, "members finished before the stop are kept"
        for member in finished:
            with res.member(member) as m:
                assert m.rows == 1201
    (tmp_path / "members.csv").write_text("s.delay\n0\n0\n0\n0\n0\n0\n")
    rerun = cosim(["run", str(scenario), "-o", str(target), "--no-plot"], 2, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    assert "COHORT VERDICT: PASS (6 of 6 members passed" in rerun.stdout
    for path, data in kept.items():
        assert path.read_bytes() == data, f"{path.name} changed"


PAUSED_COHORT = """\
version: 1
name: one slow member
fmus: {slow: FMU}
instances: {s: {fmu: slow}}
simulation: {stop: 0.01, step: 0.001}
record: {variables: [s.y]}
cohort: {method: table, table: members.csv}
"""
RUN_IN_THE_RANKS = ("import sys; from cosim.running.pipeline import run_scenario; "
                    "run_scenario(sys.argv[1], sys.argv[2], plot=False)")


def test_members_are_handed_out_while_rank_0_is_inside_a_step(tmp_path):
    """The ranks step their members themselves (the library under mpiexec, no ``cosim run``):
    while rank 0's member 0 sleeps 2 s inside its 10 steps, rank 0's dispatcher thread answers
    rank 1, which runs every other member meanwhile (before, rank 0 answered only between its
    own steps, every 32: rank 1 waited for member 0 to end). The main file links each member
    to the part of the rank that ran it, and keeps each rank's seconds of waiting."""
    fmu = kit.build_slow_model(tmp_path)
    scenario = tmp_path / "paused.yaml"
    scenario.write_text(PAUSED_COHORT.replace("FMU", str(fmu)))
    (tmp_path / "members.csv").write_text("s.delay\n0.2\n" + "0.0\n" * 5)
    out = tmp_path / "paused.h5"
    done = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-c", RUN_IN_THE_RANKS,
                           str(scenario), str(out)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    with h5py.File(out, "r") as file:
        ran_on = [file["members"].get(f"{i:06d}", getlink=True).filename[-12:]
                  for i in range(6)]
        assert ran_on == ["rank-0000.h5"] + ["rank-0001.h5"] * 5
        assert len(file.attrs["rank_dispatch_wait_seconds"]) == 2
        assert list(file.attrs["rank_members"]) == [1, 5]
        assert [s.decode() for s in file["summary"]["status"]] == ["completed"] * 6


@pytest.mark.slow
def test_a_cohort_file_links_to_its_members_where_they_ran(tmp_path):
    """Under ``cosim run -n 2`` nothing is copied at the end: each member of the main file is
    an HDF5 external link into its rank's part file (beside it, named in ``parts_folder``),
    read like any member (its time scale attached there), judged where it ran; a run over the
    same target removes the parts of the file it replaced."""
    scenario = cohort_scenario(tmp_path)
    scenario.write_text(scenario.read_text().replace("size: 7", "size: 3"))
    out = tmp_path / "linked.h5"
    folders = []
    for _ in range(2):
        done = cosim(["run", str(scenario), "-o", str(out), "--no-plot"], 2, timeout=120)
        assert done.returncode == 2, done.stderr  # member 2 of 3 fails its criterion
        assert "(2 of 3 members passed, 1 failed their criteria" in done.stdout
        with h5py.File(out, "r") as file:
            folders.append(tmp_path / file.attrs["parts_folder"])
            for i in range(3):
                link = file["members"].get(f"{i:06d}", getlink=True)
                assert isinstance(link, h5py.ExternalLink)
                assert link.filename.startswith(f"{folders[-1].name}/rank-")
            assert file["members/000001/instances/a/x"].dims[0][0].name == "/members/000001/time"
    assert not folders[0].exists() and folders[1].is_dir()
    with open_results(out) as res:
        assert res.members == ["000000", "000001", "000002"]
        assert len(res.member("000002")["a.x"]) == 101
        assert list(res.summary()["passed"]) == [True, True, False]
    linked = {m: datasets(out, m) for m in ("000000", "000001", "000002")}
    packed = tmp_path / "packed.h5"  # `cosim pack`: one file, the part files no longer needed
    done = cosim(["pack", str(out), "-o", str(packed)], None)
    assert done.returncode == 0, done.stderr
    folders[1].rename(tmp_path / "moved-away")
    for member, expected in linked.items():
        assert datasets(packed, member).keys() == expected.keys()
        for name, values in expected.items():
            np.testing.assert_array_equal(datasets(packed, member)[name], values)
    with h5py.File(packed, "r") as file:
        assert "parts_folder" not in file.attrs
        assert not any(isinstance(file["members"].get(m, getlink=True), h5py.ExternalLink)
                       for m in file["members"])
        assert file["members/000001/instances/a/x"].dims[0][0] == file["members/000001/time"]
    with open_results(packed) as res:
        assert list(res.summary()["passed"]) == [True, True, False]


@pytest.mark.slow
def test_eight_ranks_on_two_cores_give_the_results_of_one_process(tmp_path):
    """More ranks than cores (8 on this 2-core machine, oversubscribed): a small cohort
    (members handed out, judged where they ran, linked) and a distributed ring of 8 (one
    instance per rank) give the datasets and verdicts of one process, bit for bit."""
    cohort = cohort_scenario(tmp_path)
    ring = ring_scenario(tmp_path, 8, "jacobi", stop=0.5)
    for scenario, code in ((cohort, 2), (ring, 0)):
        alone, spread = tmp_path / f"{scenario.stem}-1.h5", tmp_path / f"{scenario.stem}-8.h5"
        serial = cosim(["run", str(scenario), "-o", str(alone), "--no-plot"], None)
        assert serial.returncode == code, serial.stderr
        done = cosim(["run", str(scenario), "-o", str(spread), "--no-plot"], 8, timeout=300)
        assert done.returncode == code, done.stderr
        if scenario is cohort:
            assert done.stdout == f"results: {spread}\n{COHORT_VERDICT}"
            assert_same_members(alone, spread, 7)
        else:
            reference, data = datasets(alone), datasets(spread)
            assert reference.keys() == data.keys() and len(data) == 8 * 2 + 1
            for name in reference:
                assert np.array_equal(reference[name], data[name]), name
