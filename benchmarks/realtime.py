"""Real-time factor of the flagship closed-loop scenario on one core, C library (FMI 2.0 and
FMI 3.0 editions) against the Python editions, with a per-FMU breakdown.

    .venv/bin/python benchmarks/realtime.py [scenario.yaml] [--adaptive] [--mpi]

RTF = simulated seconds / CPU seconds of the co-simulation (instantiation to the last step,
recording included; ``time.process_time``), at the scenario's own fixed communication step.
Measured in one run for the library as scenarios use it (the C FMUs, "after") and for the
Python editions of the same models (pythonfmu FMUs, "before"), and for the FMI 3.0 editions of
the C models (the same model files under the FMI 3.0 layer); all must give the same verdict
figures. The breakdown times each instance's fmi2DoStep separately in a further run of the C
library; "master+calls" is the rest (gathering inputs, fmi2Set/Get, the master, recording).
The floor: a ring of as many trivial C FMUs (the tests' hand-written oscillator) stepped the
same way, nothing recorded: the RTF no library can beat with this master at this step.

``--mpi`` (only this): the adaptive flagship over 60 s as ``cosim run`` in one process and
under ``mpiexec -n 2``, wall time of each, the ratio, and where the ranks' time went (FMU
calls against exchanging and waiting, as ``cosim run`` reports it): the per-step latency of
a distributed adaptive run (issue 17, item 6).

First, adaptive coupling side by side (``--adaptive`` does only this): the flagship over
300 s as a whole ``cosim run --no-plot`` process (supervisor and worker, CPU time of both) with
``scenarios/vvi_complete_av_block_adaptive.yaml`` and with the same file at a fixed 1 ms step
(its ``adaptive`` section left out), then the tolerance checks of docs/scenario-format.md
(adaptive): verdicts equal, pace times exact, activation times (myocyte.V crossing -40 mV)
within 0.5 ms, per-beat systolic and diastolic P_ao within 1 mmHg, cardiac output (mean,
10 s to the end) within 1 %.
"""

from __future__ import annotations

import dataclasses
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from cosim.coupling.graph import CouplingGraph
from cosim.fmi.fmu import Instance
from cosim.library.build import library_fmu
from cosim.master.description import Settings
from cosim.master.execution import Execution
from cosim.results.recorder import Recorder, create_results_file
from cosim.scenario.scenario import build, load_scenario

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # for tests/fmu_kit.py, as under pytest
import fmu_kit as kit  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402

from cosim.results.reader import open_results  # noqa: E402

ADAPTIVE = ROOT / "scenarios" / "vvi_complete_av_block_adaptive.yaml"
COSIM = Path(sys.executable).with_name("cosim")


def cosim_run_cpu(scenario: Path, output: Path) -> tuple[float, int]:
    """CPU seconds (user + system) of ``cosim run --no-plot -q`` and its worker; exit code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = subprocess.run([str(COSIM), "run", "--no-plot", "-q", str(scenario), "-o",
                           str(output)], check=False).returncode
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), code


def figures(path: Path) -> dict:
    """What the tolerances compare: pace and activation times, per-beat P_ao extremes,
    mean cardiac output, the verdict."""
    with open_results(path) as res:
        t = np.asarray(res.time)
        paces = t[1:][np.diff(np.asarray(res["pacemaker.vp_count"])) > 0]
        v = np.asarray(res["myocyte.V"])
        up = np.flatnonzero((v[1:] > -40.0) & (v[:-1] <= -40.0))
        activations = t[up] + (t[up + 1] - t[up]) * (-40.0 - v[up]) / (v[up + 1] - v[up])
        p_ao = np.asarray(res["heart.P_ao"])
        beats = np.searchsorted(t, paces)
        systolic = np.array([p_ao[a:b].max() for a, b in zip(beats[:-1], beats[1:],
                                                             strict=True)])
        diastolic = np.array([p_ao[a:b].min() for a, b in zip(beats[:-1], beats[1:],
                                                              strict=True)])
        late = t >= 10.0
        output = np.asarray(res["heart.cardiac_output"])[late]
        mean_output = np.trapezoid(output, t[late]) / (t[late][-1] - t[late][0])
        verdict = res.verdict["passed"] if res.verdict else None
    return {"paces": paces, "activations": activations, "systolic": systolic,
            "diastolic": diastolic, "output": mean_output, "verdict": verdict, "rows": len(t)}


def adaptive_side_by_side(folder: Path) -> None:
    """The flagship over 300 s, adaptive and at a fixed 1 ms step, and the tolerances."""
    text = yaml.safe_load(ADAPTIVE.read_text())
    simulated = text["simulation"]["stop"] - text["simulation"]["start"]
    del text["simulation"]["adaptive"]
    fixed_scenario = folder / "fixed.yaml"
    fixed_scenario.write_text(yaml.safe_dump(text, sort_keys=False))  # the same order
    cpu_a, code_a = cosim_run_cpu(ADAPTIVE, folder / "adaptive.h5")
    cpu_f, code_f = cosim_run_cpu(fixed_scenario, folder / "fixed.h5")
    a, f = figures(folder / "adaptive.h5"), figures(folder / "fixed.h5")
    print(f"flagship, {simulated:g} s, `cosim run --no-plot` (supervisor + worker CPU time):")
    print(f"  adaptive (1-200 ms) : {cpu_a:6.2f} s CPU -> {simulated / cpu_a:6.1f}x real time, "
          f"{a['rows'] - 1} communication points, exit {code_a}")
    print(f"  fixed 1 ms          : {cpu_f:6.2f} s CPU -> {simulated / cpu_f:6.1f}x real time, "
          f"{f['rows'] - 1} communication points, exit {code_f}")
    checks = [("verdict unchanged", a["verdict"] == f["verdict"] and code_a == code_f,
               f"{a['verdict']} / {f['verdict']} (passed)")]
    same = len(a["paces"]) == len(f["paces"])
    checks.append(("pace times exact (1e-9 s)", same and bool(np.all(np.abs(
        a["paces"] - f["paces"]) < 1e-9)), f"{len(a['paces'])} / {len(f['paces'])} paces"))
    same = len(a["activations"]) == len(f["activations"])
    shift = np.max(np.abs(a["activations"] - f["activations"])) * 1e3 if same else np.inf
    checks.append(("activation times within 0.5 ms", shift <= 0.5, f"max {shift:.3f} ms"))
    for key in ("systolic", "diastolic"):
        same = len(a[key]) == len(f[key])
        diff = np.max(np.abs(a[key] - f[key])) if same else np.inf
        checks.append((f"{key} P_ao within 1 mmHg", diff <= 1.0, f"max {diff:.3f} mmHg"))
    ratio = abs(a["output"] / f["output"] - 1)
    checks.append(("cardiac output within 1 %", ratio <= 0.01,
                   f"{a['output']:.4f} / {f['output']:.4f} L/min ({ratio:.2e})"))
    for name, passed, detail in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {name}: {detail}")


def adaptive_over_ranks(folder: Path, stop: float = 60.0) -> None:
    """The adaptive flagship over ``stop`` s in one process and over 2 MPI ranks: wall time."""
    text = yaml.safe_load(ADAPTIVE.read_text())
    text["simulation"]["stop"] = stop
    text["parallel"] = {"balance": "measured"}  # the pilot also times the exchanges
    scenario = folder / "adaptive60.yaml"
    scenario.write_text(yaml.safe_dump(text, sort_keys=False))
    walls, said = {}, ""
    for ranks in (None, 2):
        command = [str(COSIM), "run", "--no-plot", str(scenario), "-o",
                   str(folder / f"ranks{ranks}.h5")]
        if ranks:
            command = [str(COSIM.with_name("mpiexec")), "-n", str(ranks), *command]
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        walls[ranks] = time.perf_counter() - began
        said = next((line for line in done.stdout.splitlines() if line.startswith("ranks:")),
                    said)
    print(f"adaptive flagship, {stop:g} s, `cosim run --no-plot`, wall time:")
    print(f"  one process : {walls[None]:6.2f} s")
    print(f"  2 MPI ranks : {walls[2]:6.2f} s ({walls[2] / walls[None]:.2f}x the one process)")
    print(f"  {said}")


def scenario_graph(path: Path, python: bool, fmi3: bool = False):
    """The scenario's graph and settings; with ``python`` its library models are the Python
    editions, with ``fmi3`` the FMI 3.0 editions."""
    scenario = load_scenario(path)
    if python or fmi3:
        fmus = {key: library_fmu(str(fmu).split(":", 1)[1], python=python, fmi3=fmi3)
                if str(fmu).startswith("library:") else fmu
                for key, fmu in scenario.fmus.items()}
        scenario = dataclasses.replace(scenario, fmus=fmus)
    return build(scenario)


def cpu_rtf(graph, settings, folder: Path) -> float:
    with create_results_file(folder / "rt.h5", {}) as file:
        started = time.process_time()
        Execution(graph, settings).run([Recorder(file)])
        cpu = time.process_time() - started
    return (settings.stop - settings.start) / cpu


def main() -> None:
    arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
    path = Path(arguments[0]) if arguments else ROOT / "scenarios" / \
        "vvi_complete_av_block.yaml"
    simulated = None
    with tempfile.TemporaryDirectory() as tmp:
        if "--mpi" in sys.argv:
            adaptive_over_ranks(Path(tmp))
            return
        adaptive_side_by_side(Path(tmp))
        if "--adaptive" in sys.argv:
            return
        for label, python, fmi3 in (("C library (after)", False, False),
                                    ("C library, FMI 3.0", False, True),
                                    ("Python editions (before)", True, False)):
            graph, settings = scenario_graph(path, python, fmi3)
            simulated = settings.stop - settings.start
            rtf = cpu_rtf(graph, settings, Path(tmp))
            print(f"{path.name}, {label:<25}: {simulated:g} s simulated at a "
                  f"{settings.step * 1e3:g} ms step: RTF {rtf:6.1f}x in CPU time")

        graph, settings = scenario_graph(path, False)
        spent: dict[str, float] = defaultdict(float)
        original = Instance.do_step

        def timed(self, t, h):
            begin = time.process_time()
            original(self, t, h)
            spent[self.name] += time.process_time() - begin

        Instance.do_step = timed
        started = time.process_time()
        Execution(graph, settings).run([])
        total = time.process_time() - started
        Instance.do_step = original
        print(f"\nC library, per step (nothing recorded): {total / settings.steps * 1e6:.1f} "
              "µs CPU")
        print(f"{'instance':<14} {'FMU':<10} {'us/step':>8} {'share':>6}")
        for name in graph.instances:
            per_step = spent[name] / settings.steps * 1e6
            print(f"{name:<14} {graph.fmu(name).model_name:<10} {per_step:>8.1f} "
                  f"{spent[name] / total:>6.0%}")
        rest = total - sum(spent.values())
        print(f"{'master+calls':<25} {rest / settings.steps * 1e6:>8.1f} {rest / total:>6.0%}")

        n = len(graph.instances)
        trivial = kit.build_c_oscillator(Path(tmp))
        ring = CouplingGraph()
        for i in range(n):
            ring.add_instance(f"o{i}", trivial, parameters={"x0": 1.0 + i})
        for i in range(n):
            ring.connect(f"o{(i - 1) % n}.x", f"o{i}.x_other")
        ring.validate()
        started = time.process_time()
        Execution(ring, Settings(settings.start, settings.stop, settings.step)).run([])
        floor = time.process_time() - started
        print(f"floor: {n} trivial C FMUs in a ring at the same step, nothing recorded: "
              f"{floor / settings.steps * 1e6:.1f} µs/step -> RTF {simulated / floor:.0f}x")


if __name__ == "__main__":
    main()
