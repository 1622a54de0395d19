"""Real-time factor of the flagship closed-loop scenario on one core, C library (FMI 2.0 and
FMI 3.0 editions) against the Python editions, with a per-FMU breakdown.

    .venv/bin/python benchmarks/realtime.py [scenario.yaml]

RTF = simulated seconds / CPU seconds of the co-simulation (instantiation to the last step,
recording included; ``time.process_time``), at the scenario's own fixed communication step.
Measured in one run for the library as scenarios use it (the C FMUs, "after") and for the
Python editions of the same models (pythonfmu FMUs, "before"), and for the FMI 3.0 editions of
the C models (the same model files under the FMI 3.0 layer); all must give the same verdict
figures. The breakdown times each instance's fmi2DoStep separately in a further run of the C
library; "master+calls" is the rest (gathering inputs, fmi2Set/Get, the master, recording).
The floor: a ring of as many trivial C FMUs (the tests' hand-written oscillator) stepped the
same way, nothing recorded: the RTF no library can beat with this master at this step.
"""

from __future__ import annotations

import dataclasses
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
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "scenarios" / \
        "vvi_complete_av_block.yaml"
    simulated = None
    with tempfile.TemporaryDirectory() as tmp:
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
