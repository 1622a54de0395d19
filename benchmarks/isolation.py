"""What ``isolation: process`` costs: µs per FMU-step and start-up, isolated vs in one process.

Rings of N oscillators (instance i's ``x`` feeds instance i+1's ``x_other``), stepped with
Jacobi at a fixed step, every instance in cosim's process, then every instance in its own child
process (``cosim.fmi.isolation``). Only the stepping loop is timed for the per-step figures (best
of ``--repeat``): the mean (all steps' time / FMU-steps) and the median step (/ N). On a loaded
machine they differ: every round trip to a child waits for the child to be scheduled, and now
and then that wait is a whole time slice of another process (ms); the median shows the cost on
an idle core, the mean what this machine gave. The load average is printed with them. Start-up
is the time from ``Execution.run`` to the first communication point (child processes started,
FMUs loaded, initialised), per instance. Both ways must end in the
same state, bit for bit (checked). FMUs: the hand-written C oscillator (the round trip shows)
and the pythonfmu Oscillator of fmus/oscillator.

    python benchmarks/isolation.py [--sizes 1 4] [--fmu-steps 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cosim.coupling.graph import CouplingGraph
from cosim.fmi.isolation import Isolation
from cosim.library.build import build_fmu
from cosim.master.description import Settings
from cosim.master.execution import Execution

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # for tests/fmu_kit.py, as under pytest
import fmu_kit as kit  # noqa: E402

STEP = 0.001


class Stopwatch:
    """Observer timing start-up (run → point 0) and the stepping loop (point 0 → last)."""

    def __init__(self) -> None:
        self.created = time.perf_counter()

    def started(self, run: Execution) -> None:
        self.last = run.settings.steps
        self.run = run

        self.clock = np.empty(self.last + 1)

    def stepped(self, time_: float) -> None:
        n = self.run.steps
        self.clock[n] = time.perf_counter()
        if n == 0:
            self.startup = self.clock[0] - self.created
        elif n == self.last:
            self.elapsed = self.clock[n] - self.clock[0]
            self.median = float(np.median(np.diff(self.clock)))
            self.signals = self.run.system.signals.copy()

    def finished(self, error: BaseException | None) -> None:
        if error is not None:
            raise error


def ring(fmu: Path, n: int, steps: int, isolation: Isolation | None) -> Stopwatch:
    graph = CouplingGraph()
    for i in range(n):
        graph.add_instance(f"o{i}", fmu, parameters={"x0": float(np.cos(2 * np.pi * i / n))},
                           isolation=isolation)
    for i in range(n):
        graph.connect(f"o{(i - 1) % n}.x", f"o{i}.x_other")
    graph.validate()
    execution = Execution(graph, Settings(0.0, steps * STEP, STEP, algorithm="jacobi"))
    watch = Stopwatch()
    execution.run([watch])
    return watch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--fmu-steps", type=int, default=20_000,
                        help="FMU-steps per measurement (steps = this / instances)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cosim_isolation_bench_") as tmp:
        folder = Path(tmp)
        fmus = {"C oscillator": kit.build_c_oscillator(folder),
                "pythonfmu Oscillator": build_fmu(ROOT / "fmus" / "oscillator" /
                                                  "cosim_oscillator.py", folder)}
        print(f"Jacobi ring, step {STEP} s; µs per FMU-step (best of {args.repeat}) in one "
              "process and isolated, mean and median step; ratio = isolated / in-process; "
              "start-up: ms per instance (best)")
        print("load average before: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
        print(f"{'FMU':<22}{'N':>3}{'steps':>7}{'mean in':>9}{'iso':>8}{'ratio':>7}"
              f"{'median in':>11}{'iso':>8}{'ratio':>7}{'start in':>10}{'iso':>8}")
        for label, fmu in fmus.items():
            for n in args.sizes:
                steps = max(100, args.fmu_steps // n)
                step_s = {"none": np.inf, "process": np.inf}
                start_s, median_s = dict(step_s), dict(step_s)
                for _ in range(args.repeat):
                    final = {}
                    for mode in ("none", "process"):
                        watch = ring(fmu, n, steps, Isolation(mode))
                        step_s[mode] = min(step_s[mode], watch.elapsed)
                        start_s[mode] = min(start_s[mode], watch.startup)
                        median_s[mode] = min(median_s[mode], watch.median)
                        final[mode] = watch.signals
                    if not np.array_equal(final["none"], final["process"]):
                        raise SystemExit(f"{label}, N={n}: isolated and in-process runs end in "
                                         "different states")
                us = {k: v / (n * steps) * 1e6 for k, v in step_s.items()}
                med = {k: v / n * 1e6 for k, v in median_s.items()}
                ms = {k: v / n * 1e3 for k, v in start_s.items()}
                print(f"{label:<22}{n:>3}{steps:>7}{us['none']:>9.2f}{us['process']:>8.2f}"
                      f"{us['process'] / us['none']:>7.1f}{med['none']:>11.2f}"
                      f"{med['process']:>8.2f}{med['process'] / med['none']:>7.1f}"
                      f"{ms['none']:>10.1f}{ms['process']:>8.1f}")
        print("load average after:  " + " ".join(f"{x:.1f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
