"""What capturing FMU output costs: per run (what cosim does) against around every FMU call.

One C oscillator instance (the hand-written FMU of tests/fixtures, the cheapest step there is)
is stepped ``--steps`` times through ``cosim.fmi.fmu.Instance.do_step``, three ways in one process:

- plain: nothing redirected;
- per run: the whole loop inside ``cosim.fmi.capture.capture_output()`` (descriptors 1 and 2 sent
  to a pipe once, a thread draining it);
- per call: descriptors 1 and 2 pointed at the pipe before each ``do_step`` and back after it
  (four ``dup2`` calls, plus flushing Python's streams, as a per-call redirection must).

Each figure is the best of ``--repeat``; the ratios are to plain, measured in the same run.

    python benchmarks/capture.py [--steps 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from cosim.fmi.capture import capture_output
from cosim.fmi.fmu import Instance, read_fmu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # for tests/fmu_kit.py, as under pytest
import fmu_kit as kit  # noqa: E402


def started(fmu: Path) -> Instance:
    instance = Instance(read_fmu(fmu), "bench")
    instance.instantiate()
    instance.setup_experiment(0.0)
    instance.enter_initialization_mode()
    instance.exit_initialization_mode()
    return instance


def loop(instance: Instance, steps: int, around=None) -> float:
    step = 1e-3
    begin = time.perf_counter()
    if around is None:
        for n in range(steps):
            instance.do_step(n * step, step)
    else:
        for n in range(steps):
            with around():
                instance.do_step(n * step, step)
    return time.perf_counter() - begin


class PerCall:
    """Descriptors 1 and 2 into ``target`` for one call, then back."""

    def __init__(self, target: int):
        self.target = target
        self.saved = (os.dup(1), os.dup(2))

    def __call__(self) -> PerCall:
        return self

    def __enter__(self) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.target, 1)
        os.dup2(self.target, 2)

    def __exit__(self, *exc) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.saved[0], 1)
        os.dup2(self.saved[1], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cosim_capture_") as tmp:
        instance = started(kit.build_c_oscillator(Path(tmp)))
        sink = os.open(os.devnull, os.O_WRONLY)
        per_call = PerCall(sink)
        best = {"plain": float("inf"), "per run": float("inf"), "per call": float("inf")}
        loop(instance, args.steps)  # warm-up: caches, branch predictors, the CPU's clock
        for _ in range(args.repeat):
            best["plain"] = min(best["plain"], loop(instance, args.steps))
            with capture_output():
                seconds = loop(instance, args.steps)
            best["per run"] = min(best["per run"], seconds)
            best["per call"] = min(best["per call"], loop(instance, args.steps, per_call))
        instance.close()
    print(f"C oscillator, {args.steps} steps, best of {args.repeat}: µs per FMU-step")
    for label, seconds in best.items():
        us = seconds / args.steps * 1e6
        print(f"  {label:<9} {us:6.2f} µs   ratio {seconds / best['plain']:.2f}")


if __name__ == "__main__":
    main()
