"""Strong scaling under MPI, measured in one run: speedup and efficiency per rank count.

(a) one scenario with many coupled FMU instances (a chain of tissue patches, each driving the
    next one's electrode), distributed over the ranks;
(b) a cohort of 64 virtual members (coupled oscillator pairs with drawn parameters), members
    handed out to ranks one at a time.

    .venv/bin/python benchmarks/scaling.py                 # ranks 1, 2 (and more if cores allow)
    .venv/bin/python benchmarks/scaling.py --ranks 1,2,4,8,16 --instances 32
    .venv/bin/python benchmarks/scaling.py --repeat 5      # more rounds: a noisy machine
    .venv/bin/python benchmarks/scaling.py --balance measured   # (a) split on a pilot's timings
    .venv/bin/python benchmarks/scaling.py --balance earlier-run   # on a plain run's timings

Times are the co-simulation itself (``run_seconds`` in the results file: from the start of the
parallel section to the merged file, so instantiation, stepping, exchange and merging), and the
whole command (interpreter start-up included) for reference. Efficiency = T1 / (N · TN), T1
from a plain ``cosim run`` (one process, one BLAS thread as in every rank). Each round runs
every rank count once, in turn, so a machine whose speed drifts (a shared VM) hurts every count
alike; the table shows each count's median over the rounds, the spread (fastest–slowest), and
for (a) the load balance the run wrote into its results file (mean/max of the ranks' busy
seconds: 100 % is perfect). Column "machine" is the reference for the efficiency: n copies of
the plain run started together, T1 / (time of the slowest copy). It is below 100 % where the
machine gives each of n busy processes less than it gives one alone (a shared VM: 80–95 %).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

BIN = Path(sys.executable).parent


def chain_scenario(folder: Path, instances: int, stop: float, balance: str,
                   cost: dict[str, float] | None = None) -> Path:
    lines = ["version: 1", "name: chain of tissue patches", "fmus: {tissue: tissue}",
             "instances:"]
    for i in range(instances):
        declared = f"cost: {cost[f't{i}']:.4g}, " if cost else ""
        lines.append(f"  t{i}: {{fmu: tissue, scale: tissue, {declared}parameters: {{nx: 400, "
                     f"intrinsic_rate: {70 + i % 5}, intrinsic_delay: {0.01 * (i % 7):.2f}}}}}")
    lines.append("connections:")
    for i in range(1, instances):
        lines.append(f"  - t{i - 1}.V_electrode -> t{i}.V_source")
    lines += [f"simulation: {{start: 0, stop: {stop}, step: 0.001, algorithm: jacobi}}",
              "record: {interval: 0.01, variables: ['*.V_electrode', '*.activation']}",
              f"parallel: {{balance: {balance}}}"]
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


def run(scenario: Path, ranks: int, output: Path, copies: int = 1
        ) -> tuple[float, float, float | None]:
    """One run on ``ranks`` ranks, or ``copies`` plain runs started together:
    ``(run seconds of the slowest, command seconds, load balance or None)``."""
    command = [str(BIN / "python"), "-m", "cosim.cli", "run", str(scenario), "--no-plot"]
    if ranks > 1:
        command = [str(BIN / "mpiexec"), "-n", str(ranks), *command]
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    outputs = ([output] if copies == 1 else
               [output.with_name(f"{output.stem}-copy{i}.h5") for i in range(copies)])
    started = time.perf_counter()
    processes = [subprocess.Popen([*command, "-o", str(out)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, env=env)
                 for out in outputs]
    errors = [process.communicate()[1] for process in processes]
    wall = time.perf_counter() - started
    for process, error in zip(processes, errors, strict=True):
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{error}")
    seconds, balance = [], None
    for out in outputs:
        with h5py.File(out, "r") as file:
            seconds.append(float(file.attrs["run_seconds"]))
            if "load_balance" in file.attrs:
                balance = float(file.attrs["load_balance"])
    return max(seconds), wall, balance


def table(name: str, scenario: Path, ranks: list[int], folder: Path, repeat: int) -> None:
    """Runs every rank count once per round, ``repeat`` rounds; prints the medians.

    Column "machine": the efficiency that n copies of the plain run started together reach
    (T1 / time of the slowest copy): what the machine itself gives n independent processes, the
    ceiling for any parallel run on it. Measured for n up to the number of cores.
    """
    print(f"\n{name}")
    cores = os.cpu_count() or 1
    runs: dict[int, list[tuple[float, float, float | None]]] = {n: [] for n in ranks}
    copies: dict[int, list[float]] = {n: [] for n in ranks if 1 < n <= cores}
    output = folder / f"{scenario.stem}.h5"
    for _ in range(repeat):
        for n in ranks:
            runs[n].append(run(scenario, n, output))
            if n in copies:
                copies[n].append(run(scenario, 1, output, copies=n)[0])
    print(f"{'ranks':>5} {'run s':>7} {'spread':>12} {'speedup':>8} {'efficiency':>10} "
          f"{'balance':>8} {'machine':>8} {'command s':>10}")
    base = statistics.median(r[0] for r in runs[ranks[0]])
    for n in ranks:
        seconds = statistics.median(r[0] for r in runs[n])
        spread = f"{min(r[0] for r in runs[n]):.2f}–{max(r[0] for r in runs[n]):.2f}"
        balances = [r[2] for r in runs[n] if r[2] is not None]
        balance = f"{statistics.median(balances):.0%}" if balances else "-"
        machine = f"{base / statistics.median(copies[n]):.0%}" if n in copies else "-"
        wall = statistics.median(r[1] for r in runs[n])
        speedup = base / seconds
        print(f"{n:>5} {seconds:>7.2f} {spread:>12} {speedup:>8.2f} {speedup / n:>10.0%} "
              f"{balance:>8} {machine:>8} {wall:>10.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = os.cpu_count() or 1
    default = [n for n in (1, 2, 4, 8, 16) if n <= cores]
    parser.add_argument("--ranks", default=",".join(map(str, default)))
    parser.add_argument("--instances", type=int, default=16)
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--stop", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds over the rank counts; the median of each is shown")
    parser.add_argument("--balance", choices=("declared", "measured", "earlier-run"),
                        default="declared",
                        help="(a): split on declared costs (all equal), on a pilot's timings, or "
                             "on costs declared from a one-process run's instance_busy_seconds")
    args = parser.parse_args()
    ranks = [int(r) for r in args.ranks.split(",")]
    print(f"{cores} cores; ranks {ranks}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        chain = chain_scenario(folder, args.instances, args.stop, args.balance)
        if args.balance == "earlier-run":  # what a user does before a big run: one plain run
            chain = chain_scenario(folder, args.instances, args.stop, "declared")
            run(chain, 1, folder / "calibration.h5")
            with h5py.File(folder / "calibration.h5", "r") as file:
                cost = json.loads(file.attrs["instance_busy_seconds"])
            chain = chain_scenario(folder, args.instances, args.stop, "declared", cost)
        table(f"(a) {args.instances} coupled tissue patches (400 nodes each), "
              f"{args.stop:g} s at 1 ms, balance {args.balance}", chain, ranks, folder,
              args.repeat)
        table(f"(b) cohort of {args.members} members, {args.stop:g} s each",
              cohort_scenario(folder, args.members, args.stop), ranks, folder, args.repeat)


if __name__ == "__main__":
    main()
