"""Strong scaling under MPI, measured in one run: speedup and efficiency per rank count.

(a) one scenario with many coupled FMU instances (a chain of tissue patches, each driving the
    next one's electrode), distributed over the ranks;
(b) a cohort of 64 virtual members (coupled oscillator pairs with drawn parameters), members
    handed out to ranks one at a time.

    .venv/bin/python benchmarks/scaling.py                 # ranks 1, 2 (and more if cores allow)
    .venv/bin/python benchmarks/scaling.py --ranks 1,2,4,8,16 --instances 32
    .venv/bin/python benchmarks/scaling.py --repeat 3      # best of 3 rounds: a shared machine

Times are the co-simulation itself (``run_seconds`` in the results file: from the start of the
parallel section to the merged file, so instantiation, stepping, exchange and merging), and the
whole command (interpreter start-up included) for reference. Efficiency = T1 / (N · TN), T1
from a plain ``cosim run`` (one process, one BLAS thread as in every rank). With ``--repeat``,
each round runs every rank count once and the table, printed after the last round, shows each
count's best run, so load from other work on the machine hurts the ratios less.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

BIN = Path(sys.executable).parent


def chain_scenario(folder: Path, instances: int, stop: float) -> Path:
    lines = ["version: 1", "name: chain of tissue patches", "fmus: {tissue: tissue}",
             "instances:"]
    for i in range(instances):
        lines.append(f"  t{i}: {{fmu: tissue, scale: tissue, parameters: {{nx: 400, "
                     f"intrinsic_rate: {70 + i % 5}, intrinsic_delay: {0.01 * (i % 7):.2f}}}}}")
    lines.append("connections:")
    for i in range(1, instances):
        lines.append(f"  - t{i - 1}.V_electrode -> t{i}.V_source")
    lines += [f"simulation: {{start: 0, stop: {stop}, step: 0.001, algorithm: jacobi}}",
              "record: {interval: 0.01, variables: ['*.V_electrode', '*.activation']}"]
    path = folder / "chain.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def cohort_scenario(folder: Path, members: int, stop: float) -> Path:
    path = folder / "cohort.yaml"
    path.write_text(f"""\
version: 1
name: oscillator cohort
fmus: {{osc: oscillator}}
instances:
  a: {{fmu: osc}}
  b: {{fmu: osc, parameters: {{x0: 0.0}}}}
connections: [a.x -> b.x_other, b.x -> a.x_other]
simulation: {{start: 0, stop: {stop}, step: 0.001}}
record: {{interval: 0.01, variables: [a.x, b.x]}}
cohort:
  method: latin-hypercube
  size: {members}
  seed: 1
  parameters:
    a.m: {{distribution: uniform, low: 0.5, high: 2.0}}
    b.k: {{distribution: uniform, low: 0.5, high: 2.0}}
""")
    return path


def run(scenario: Path, ranks: int, output: Path) -> tuple[float, float]:
    command = [str(BIN / "python"), "-m", "cosim.cli", "run", str(scenario), "-o", str(output),
               "--no-plot"]
    if ranks > 1:
        command = [str(BIN / "mpiexec"), "-n", str(ranks), *command]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    with h5py.File(output, "r") as file:
        return float(file.attrs["run_seconds"]), wall


def table(name: str, scenario: Path, ranks: list[int], folder: Path, repeat: int) -> None:
    """Runs every rank count once per round, ``repeat`` rounds, and keeps each count's best."""
    print(f"\n{name}")
    best: dict[int, tuple[float, float]] = {}
    for _ in range(repeat):
        for n in ranks:
            seconds, wall = run(scenario, n, folder / f"{scenario.stem}-{n}.h5")
            if n not in best or seconds < best[n][0]:
                best[n] = (seconds, wall)
    print(f"{'ranks':>5} {'run s':>8} {'speedup':>8} {'efficiency':>10} {'command s':>10}")
    base = best[ranks[0]][0]
    for n in ranks:
        seconds, wall = best[n]
        speedup = base / seconds
        print(f"{n:>5} {seconds:>8.2f} {speedup:>8.2f} {speedup / n:>10.0%} {wall:>10.2f}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = os.cpu_count() or 1
    default = [n for n in (1, 2, 4, 8, 16) if n <= cores]
    parser.add_argument("--ranks", default=",".join(map(str, default)))
    parser.add_argument("--instances", type=int, default=16)
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--stop", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds over the rank counts; the best time of each is shown")
    args = parser.parse_args()
    ranks = [int(r) for r in args.ranks.split(",")]
    print(f"{cores} cores; ranks {ranks}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        table(f"(a) {args.instances} coupled tissue patches (400 nodes each), "
              f"{args.stop:g} s at 1 ms", chain_scenario(folder, args.instances, args.stop),
              ranks, folder, args.repeat)
        table(f"(b) cohort of {args.members} members, {args.stop:g} s each",
              cohort_scenario(folder, args.members, args.stop), ranks, folder, args.repeat)


if __name__ == "__main__":
    main()
