"""Strong scaling under MPI, measured in one run: speedup and efficiency per rank count, the
serial fraction of each run and its Amdahl projection to 64 and 256 ranks.

(a) one scenario with many coupled FMU instances (a chain of tissue patches of 400 × 10 nodes,
    each driving the next one's electrode), distributed over the ranks;
(b) a cohort of 1 000 virtual members (coupled oscillator pairs with drawn parameters, 2 s of
    simulated time each), members handed out to ranks one at a time;
(c) with ``--graph``: the memory and time of the graph, signal layout and partition every rank
    builds, at 10^4 … 10^5 instances.

    .venv/bin/python benchmarks/scaling.py                 # ranks 1, 2 (and more if cores allow)
    .venv/bin/python benchmarks/scaling.py --ranks 1,2,4,8 --members 1000 --repeat 1
    .venv/bin/python benchmarks/scaling.py --ranks 1,2,4,8,16 --instances 32
    .venv/bin/python benchmarks/scaling.py --repeat 5      # more rounds: a noisy machine
    .venv/bin/python benchmarks/scaling.py --balance measured   # (a) split on a pilot's timings
    .venv/bin/python benchmarks/scaling.py --balance earlier-run   # on a plain run's timings
    .venv/bin/python benchmarks/scaling.py --only cohort   # (b) alone (or: --only chain)
    .venv/bin/python benchmarks/scaling.py --graph 10000,30000,100000   # (c) alone

Serial fraction (second table of each benchmark): what a run spends outside its members' or
instances' own work, read from the figures the run wrote into its results file
(``docs/results-format.md``): start-up (the command's seconds minus ``run_seconds``: Python,
reading the scenario and FMUs on rank 0, the broadcast), ``begin_seconds`` (the main file made),
the member runners' start and close (mean over the ranks), and at the end ``end_seconds`` +
``summary_seconds`` (parts linked, figures and summary written on rank 0): these do not shrink
with more ranks, S. What shrinks: the members' own seconds (``rank_member_seconds``: run, record,
judge) or the instances' busy seconds, and the seconds members waited to start, summed over
the ranks: P. Serial fraction s = S / (S + P); Amdahl's projection of the efficiency at N ranks
is 1 / (N s + 1 - s). "outside": the share of the run (``run_seconds``) not spent in the own
work, (T - P / n) / T: dispatch, start-up of the runners, the end, and ranks idle at the tail.

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
PATCH_ROWS = 10  # 400 × 10 nodes a patch: the compiled C tissue's compute dominates the steps


def chain_scenario(folder: Path, instances: int, stop: float, balance: str,
                   cost: dict[str, float] | None = None) -> Path:
    lines = ["version: 1", "name: chain of tissue patches", "fmus: {tissue: tissue}",
             "instances:"]
    for i in range(instances):
        declared = f"cost: {cost[f't{i}']:.4g}, " if cost else ""
        lines.append(f"  t{i}: {{fmu: tissue, scale: tissue, {declared}parameters: {{nx: 400, "
                     f"ny: {PATCH_ROWS}, intrinsic_rate: {70 + i % 5}, "
                     f"intrinsic_delay: {0.01 * (i % 7):.2f}}}}}")
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


def run(scenario: Path, ranks: int, output: Path, copies: int = 1) -> dict:
    """One run on ``ranks`` ranks, or ``copies`` plain runs started together: its figures
    (``seconds``: run seconds of the slowest; ``wall``: the command's; ``balance``; and what
    ``serial`` reads)."""
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
        if process.returncode not in (0, 2):  # 2: a member failed its criteria
            raise SystemExit(f"{' '.join(command)} failed:\n{error}")
    figures: list[dict] = []
    for out in outputs:
        with h5py.File(out, "r") as file:
            figures.append({key: (value.tolist() if hasattr(value, "tolist") else value)
                            for key, value in file.attrs.items()
                            if key.endswith("seconds") or key in ("load_balance",
                                                                    "rank_members")})
    slowest = max(figures, key=lambda f: f["run_seconds"])
    return {**slowest, "seconds": slowest["run_seconds"], "wall": wall, "ranks": ranks,
            "balance": slowest.get("load_balance")}


def serial(figures: dict) -> dict:
    """What a run spent outside its own work (module docstring): S, P, the fraction."""
    n, seconds = figures["ranks"], figures["seconds"]
    if "rank_member_seconds" in figures:  # a cohort (one process: the run is the members)
        own = sum(figures["rank_member_seconds"])
        waited = sum(figures["rank_dispatch_wait_seconds"])
        runners = (statistics.mean(figures["rank_runner_start_seconds"]) +
                   statistics.mean(figures["rank_runner_close_seconds"]))
    else:  # a distributed run: the instances' FMI calls, and in one process only those
        own = sum(figures.get("rank_busy_seconds", [figures["seconds"]]))
        waited, runners = 0.0, 0.0
    startup = figures["wall"] - seconds
    end = figures.get("end_seconds", 0.0) + figures.get("summary_seconds", 0.0)
    fixed = startup + figures.get("begin_seconds", 0.0) + runners + end
    fraction = fixed / (fixed + own + waited)
    return {"startup": startup, "runners": runners, "end": end, "fixed": fixed,
            "waited": waited, "own": own, "fraction": fraction,
            "outside": max(seconds - own / n, 0.0) / seconds,
            "members": figures.get("rank_members")}


def amdahl(fraction: float, ranks: int) -> float:
    """The efficiency Amdahl's law gives ``ranks`` ranks for a serial ``fraction``."""
    return 1 / (ranks * fraction + 1 - fraction)


def table(name: str, scenario: Path, ranks: list[int], folder: Path, repeat: int) -> None:
    """Runs every rank count once per round, ``repeat`` rounds; prints the medians, then each
    count's serial fraction (from its median run) and Amdahl's projection.

    Column "machine": the efficiency that n copies of the plain run started together reach
    (T1 / time of the slowest copy): what the machine itself gives n independent processes, the
    ceiling for any parallel run on it. Measured for n up to the number of cores.
    """
    print(f"\n{name}")
    cores = os.cpu_count() or 1
    runs: dict[int, list[dict]] = {n: [] for n in ranks}
    copies: dict[int, list[float]] = {n: [] for n in ranks if 1 < n <= cores}
    output = folder / f"{scenario.stem}.h5"
    for _ in range(repeat):
        for n in ranks:
            runs[n].append(run(scenario, n, output))
            if n in copies:
                copies[n].append(run(scenario, 1, output, copies=n)["seconds"])
    print(f"{'ranks':>5} {'run s':>7} {'spread':>12} {'speedup':>8} {'efficiency':>10} "
          f"{'balance':>8} {'machine':>8} {'command s':>10}")
    base = statistics.median(r["seconds"] for r in runs[ranks[0]])
    for n in ranks:
        seconds = statistics.median(r["seconds"] for r in runs[n])
        times = [r["seconds"] for r in runs[n]]
        spread = f"{min(times):.2f}–{max(times):.2f}"
        balances = [r["balance"] for r in runs[n] if r["balance"] is not None]
        balance = f"{statistics.median(balances):.0%}" if balances else "-"
        machine = f"{base / statistics.median(copies[n]):.0%}" if n in copies else "-"
        wall = statistics.median(r["wall"] for r in runs[n])
        speedup = base / seconds
        print(f"{n:>5} {seconds:>7.2f} {spread:>12} {speedup:>8.2f} {speedup / n:>10.0%} "
              f"{balance:>8} {machine:>8} {wall:>10.2f}", flush=True)
    print(f"{'ranks':>5} {'per rank':>8} {'outside':>8} {'start-up':>9} {'runners':>8} "
          f"{'end':>7} {'wait/member':>12} {'serial':>7} {'at 64':>6} {'at 256':>7}")
    for n in ranks:
        median = sorted(runs[n], key=lambda r: r["seconds"])[len(runs[n]) // 2]
        part = serial(median)
        members = part["members"]
        per_rank = f"{sum(members) / n:.0f}" if members else "-"
        waited = (f"{1000 * part['waited'] / sum(members):.2f} ms" if members and sum(members)
                  else "-")
        print(f"{n:>5} {per_rank:>8} {part['outside']:>8.1%} {part['startup']:>8.2f}s "
              f"{part['runners']:>7.2f}s {part['end']:>6.3f}s {waited:>12} "
              f"{part['fraction']:>7.2%} {amdahl(part['fraction'], 64):>6.0%} "
              f"{amdahl(part['fraction'], 256):>7.0%}", flush=True)


def graph_sizes(counts: list[int]) -> None:
    """(c) What every rank holds: the coupling graph of a chain of ``count`` oscillators, the
    signal layout and array, and the partition over 256 ranks; seconds and MiB (tracemalloc
    peak) to build each, in this process."""
    import tracemalloc

    from cosim.coupling.graph import CouplingGraph
    from cosim.coupling.partition import partition
    from cosim.coupling.system import make_layout
    from cosim.fmi.fmu_file import read_fmu
    from cosim.library.build import library_fmu

    fmu = read_fmu(library_fmu("oscillator"))
    print("\n(c) what every rank builds for a chain of n oscillators: seconds, MiB")
    print(f"{'instances':>10} {'graph s':>8} {'graph MiB':>10} {'layout s':>9} "
          f"{'signals':>8} {'partition 256 s':>16} {'MiB':>6}")
    for count in counts:
        tracemalloc.start()
        started = time.perf_counter()
        graph = CouplingGraph()
        for i in range(count):
            graph.add_instance(f"o{i}", fmu)
        for i in range(1, count):
            graph.connect(f"o{i - 1}.x", f"o{i}.x_other")
        built = time.perf_counter()
        graph_mib = tracemalloc.get_traced_memory()[0] / 2**20
        layout = make_layout(graph, {})
        laid = time.perf_counter()
        owner = partition(graph, 256)
        parted = time.perf_counter()
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"{count:>10} {built - started:>8.2f} {graph_mib:>10.0f} {laid - built:>9.2f} "
              f"{layout.size:>8} {parted - laid:>16.2f} {peak:>6.0f}", flush=True)
        del graph, layout, owner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = os.cpu_count() or 1
    default = [n for n in (1, 2, 4, 8, 16) if n <= cores]
    parser.add_argument("--ranks", default=",".join(map(str, default)))
    parser.add_argument("--instances", type=int, default=16)
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--stop", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds over the rank counts; the median of each is shown")
    parser.add_argument("--balance", choices=("declared", "measured", "earlier-run"),
                        default="declared",
                        help="(a): split on declared costs (all equal), on a pilot's timings, or "
                             "on costs declared from a one-process run's instance_busy_seconds")
    parser.add_argument("--only", choices=("chain", "cohort"), help="one benchmark alone")
    parser.add_argument("--graph", help="(c) alone, at these instance counts: 10000,100000")
    args = parser.parse_args()
    if args.graph:
        graph_sizes([int(n) for n in args.graph.split(",")])
        return
    ranks = [int(r) for r in args.ranks.split(",")]
    print(f"{cores} cores; ranks {ranks}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.only != "cohort":
            chain = chain_scenario(folder, args.instances, args.stop, args.balance)
            if args.balance == "earlier-run":  # what a user does before a big run: a plain run
                chain = chain_scenario(folder, args.instances, args.stop, "declared")
                run(chain, 1, folder / "calibration.h5")
                with h5py.File(folder / "calibration.h5", "r") as file:
                    cost = json.loads(file.attrs["instance_busy_seconds"])
                chain = chain_scenario(folder, args.instances, args.stop, "declared", cost)
            table(f"(a) {args.instances} coupled tissue patches (400 × {PATCH_ROWS} nodes "
                  f"each), {args.stop:g} s at 1 ms, balance {args.balance}", chain, ranks,
                  folder, args.repeat)
        if args.only != "chain":
            table(f"(b) cohort of {args.members} members, {args.stop:g} s each",
                  cohort_scenario(folder, args.members, args.stop), ranks, folder, args.repeat)


if __name__ == "__main__":
    main()
