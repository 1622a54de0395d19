"""Real-time factor of the flagship closed-loop scenario on one core, with a per-FMU breakdown.

    .venv/bin/python benchmarks/realtime.py [scenario.yaml]

RTF = simulated seconds / wall seconds of the co-simulation (instantiation to the last step,
recording included). The breakdown times each instance's fmi2DoStep separately in a second run.

The ceiling: the same number of pythonfmu instances of the library's Oscillator (a few
multiplications per step) in a ring, stepped by the same master at the same communication step,
nothing recorded. It is the RTF no model library of pythonfmu FMUs can beat at that step: the
cost of crossing into Python (fmi2SetReal, fmi2DoStep, fmi2GetReal per instance per step).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from cosim.build import library_fmu
from cosim.execution import Execution, Settings
from cosim.fmu import Instance
from cosim.graph import CouplingGraph
from cosim.recorder import Recorder, create_results_file
from cosim.scenario import build, load_scenario

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "scenarios" / \
        "vvi_complete_av_block.yaml"
    graph, settings = build(load_scenario(path))
    simulated = settings.stop - settings.start
    with tempfile.TemporaryDirectory() as tmp:
        with create_results_file(Path(tmp) / "rt.h5", {}) as file:
            started = time.perf_counter()
            Execution(graph, settings).run([Recorder(file)])
            wall = time.perf_counter() - started
    print(f"{path.name}: {simulated:g} s simulated in {wall:.2f} s -> RTF {simulated / wall:.1f}x "
          f"(target >= 100x); {settings.steps} steps of {settings.step * 1e3:g} ms")

    spent: dict[str, float] = defaultdict(float)
    original = Instance.do_step

    def timed(self, t, h):
        begin = time.perf_counter()
        original(self, t, h)
        spent[self.name] += time.perf_counter() - begin

    Instance.do_step = timed
    started = time.perf_counter()
    Execution(graph, settings).run([])
    total = time.perf_counter() - started
    Instance.do_step = original
    print(f"{'instance':<14} {'FMU':<10} {'us/step':>8} {'share':>6}")
    for name in graph.instances:
        per_step = spent[name] / settings.steps * 1e6
        print(f"{name:<14} {graph.fmu(name).model_name:<10} {per_step:>8.1f} "
              f"{spent[name] / total:>6.0%}")
    rest = total - sum(spent.values())
    print(f"{'master+fmpy':<25} {rest / settings.steps * 1e6:>8.1f} {rest / total:>6.0%}")

    n = len(graph.instances)
    ring = CouplingGraph()
    for i in range(n):
        ring.add_instance(f"o{i}", library_fmu("oscillator"), parameters={"x0": 1.0 + i})
    for i in range(n):
        ring.connect(f"o{(i - 1) % n}.x", f"o{i}.x_other")
    ring.validate()
    started = time.perf_counter()
    Execution(ring, Settings(settings.start, settings.stop, settings.step)).run([])
    floor = time.perf_counter() - started
    print(f"ceiling: {n} pythonfmu Oscillators at the same step, nothing recorded: "
          f"{floor / settings.steps * 1e6:.1f} us/step -> RTF {simulated / floor:.1f}x")


if __name__ == "__main__":
    main()
