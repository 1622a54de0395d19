"""The model library's C editions against its Python editions, side by side in one run.

    .venv/bin/python benchmarks/library.py [--repeat 3]

1. Tissue throughput while a wave crosses: node-steps per second (nodes x substeps / CPU
   seconds) at the flagship's 81-node fibre and on a 100 x 100 sheet (targets >= 3e7 and
   >= 3e8); the C FMU through fmi2DoStep, the Python edition's class called directly.
2. Cost of one communication step of 1 ms as the master pays it (set the inputs, doStep,
   get the outputs, through ``cosim.fmi.fmu.Instance`` or ``cosim.fmi.fmi3.Instance3``) for each
   small
   FMU, FMI 2.0 and FMI 3.0 editions, against the same for the hand-written trivial C
   oscillator of the tests (target: within 2x of it).
3. Instantiating all five FMUs (extract, load the binary, instantiate; what a run pays
   before its first step), each edition in a fresh Python process (target <= 20 ms).

CPU time (``time.process_time``), best of ``--repeat``. A script, not a test: figures depend
on the machine and its load.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from cosim.fmi.fmu import read_fmu
from cosim.fmi.instances import new_instance
from cosim.library.build import library_fmu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # for tests/fmu_kit.py, as under pytest
import fmu_kit as kit  # noqa: E402

STEP = 1e-3  # s
SMALL = ("cell", "lead", "generator", "organ")
LIBRARY = ("cell", "lead", "generator", "organ", "tissue")


def best(repeat: int, measure) -> float:
    return max(measure() for _ in range(repeat))


def tissue_c(fmu: Path, steps: int, **parameters) -> float:
    """Node-steps per CPU second of the C tissue, stimulated at t = 0."""
    tissue = kit.CInstance(fmu)
    for name, value in {"g_coupling": 0.0, **parameters}.items():
        setattr(tissue, name, value)
    tissue.exit_initialization_mode()
    tissue.I_stim, tissue.stim_width = 400.0, 2.0
    tissue.do_step(0.0, STEP)
    tissue.I_stim = 0.0
    before = tissue.substeps
    do_step, component = tissue._slave.dll.fmi2DoStep, tissue._slave.component
    start = time.process_time()
    for k in range(1, steps + 1):
        do_step(component, k * STEP, STEP, 1)
    seconds = time.process_time() - start
    nodes = parameters.get("nx", 81) * parameters.get("ny", 1)
    rate = nodes * (tissue.substeps - before) / seconds
    tissue.free()
    return rate


def tissue_python(steps: int, **parameters) -> float:
    """Node-steps per CPU second of the Python edition's class, stimulated at t = 0."""
    tissue = kit.library_script("tissue").Tissue(instance_name="bench")
    for name, value in {"g_coupling": 0.0, **parameters}.items():
        setattr(tissue, name, value)
    tissue.exit_initialization_mode()
    tissue.I_stim, tissue.stim_width = 400.0, 2.0
    tissue.do_step(0.0, STEP)
    tissue.I_stim = 0.0
    before = tissue.substeps
    start = time.process_time()
    for k in range(1, steps + 1):
        tissue.do_step(k * STEP, STEP)
    seconds = time.process_time() - start
    return tissue._n * (tissue.substeps - before) / seconds


def per_step(fmu: Path, name: str, steps: int) -> float:
    """CPU µs per 1 ms step of set inputs + doStep + get outputs (all scalar ones)."""
    instance = new_instance(read_fmu(fmu), name)
    instance.instantiate()
    instance.setup_experiment(0.0)
    instance.enter_initialization_mode()
    instance.exit_initialization_mode()
    variables = instance.fmu.variables.values()
    inputs = [v.name for v in variables if v.causality == "input" and v.type == "Real"]
    outputs = [v.name for v in variables if v.causality == "output" and not v.dimensions]
    values = instance.bind(inputs, outputs, np.zeros(len(outputs)))
    values[:] = [v.start or 0.0 for v in variables
                 if v.causality == "input" and v.type == "Real"]
    start = time.process_time()
    for k in range(steps):
        instance.set_inputs()
        instance.do_step(k * STEP, STEP)
        instance.get_outputs()
    seconds = time.process_time() - start
    instance.close()
    return 1e6 * seconds / steps


INSTANTIATE = """
import sys, time
from pathlib import Path
from cosim.fmi.fmu import read_fmu
from cosim.fmi.instances import new_instance
fmus = [read_fmu(Path(p)) for p in sys.argv[1:]]
start = time.perf_counter(), time.process_time()
for i, fmu in enumerate(fmus):
    new_instance(fmu, f"i{i}").instantiate()
print(time.perf_counter() - start[0], time.process_time() - start[1])
"""


def instantiation(fmus: list[Path]) -> tuple[float, float]:
    """(wall, CPU) seconds to instantiate these FMUs in a fresh process (read_fmu excluded)."""
    result = subprocess.run([sys.executable, "-c", INSTANTIATE, *map(str, fmus)],
                            capture_output=True, text=True, check=True)
    wall, cpu = map(float, result.stdout.split())
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    c_fmus = {name: library_fmu(name) for name in LIBRARY}
    python_fmus = {name: library_fmu(name, python=True) for name in LIBRARY}
    fmi3_fmus = {name: library_fmu(name, fmi3=True) for name in LIBRARY}

    print("1. tissue, node-steps per CPU second while a wave crosses (best of "
          f"{args.repeat})")
    print(f"   {'geometry':<16}{'C':>12}{'Python':>12}{'C/Python':>10}{'target':>10}")
    for label, steps, target, parameters in (
            ("fibre 81", 60, 3e7, {}),
            ("sheet 100 x 100", 40, 3e8, {"nx": 100, "ny": 100, "electrode_y": 50})):
        c = best(args.repeat, lambda s=steps, p=parameters: tissue_c(c_fmus["tissue"], s, **p))
        python = best(args.repeat, lambda s=steps, p=parameters: tissue_python(s, **p))
        print(f"   {label:<16}{c:>12.3g}{python:>12.3g}{c / python:>10.0f}{target:>10.0e}")

    print("\n2. CPU µs per 1 ms step: set inputs + doStep + get outputs (best of "
          f"{args.repeat}; target: C within 2x of the trivial C FMU)")
    with tempfile.TemporaryDirectory() as tmp:
        trivial_fmu = kit.build_c_oscillator(Path(tmp))
        trivial = min(per_step(trivial_fmu, "trivial", 20000) for _ in range(args.repeat))
        print(f"   {'FMU':<12}{'C':>8}{'/trivial':>10}{'FMI 3':>8}{'/trivial':>10}"
              f"{'Python':>9}{'/trivial':>10}")
        print(f"   {'trivial C':<12}{trivial:>8.2f}{1.0:>10.2f}")
        for name in SMALL:
            c = min(per_step(c_fmus[name], f"c_{name}", 20000) for _ in range(args.repeat))
            three = min(per_step(fmi3_fmus[name], f"c3_{name}", 20000)
                        for _ in range(args.repeat))
            python = min(per_step(python_fmus[name], f"py_{name}", 5000)
                         for _ in range(args.repeat))
            print(f"   {name:<12}{c:>8.2f}{c / trivial:>10.2f}{three:>8.2f}"
                  f"{three / trivial:>10.2f}{python:>9.2f}{python / trivial:>10.1f}")

    print("\n3. instantiating all five FMUs in a fresh process (extract, load, instantiate)")
    for label, fmus in (("C", c_fmus), ("FMI 3", fmi3_fmus), ("Python", python_fmus)):
        wall, cpu = min(instantiation(list(fmus.values())) for _ in range(args.repeat))
        print(f"   {label:<8} {1e3 * wall:7.1f} ms wall, {1e3 * cpu:7.1f} ms CPU "
              f"(target <= 20 ms)")


if __name__ == "__main__":
    main()
