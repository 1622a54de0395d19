"""Throughput of the Tissue model (fmus/tissue/cosim_tissue.py), called as plain Python.

Prints node-steps per second while a wave propagates for a 1D fibre of 1000 nodes and 2D
sheets of 100 x 100 and 320 x 320, then the wall time per 1 ms communication step at the
default size over a paced 1 Hz cycle (front, plateau and quiescent phases). A script, not a
test: ``/tmp/venv/bin/python benchmarks/tissue_throughput.py``.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "fmus" / "tissue" / "cosim_tissue.py"
STEP = 0.001  # s


def load_model():
    spec = importlib.util.spec_from_file_location("cosim_tissue_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Tissue


def make(tissue_class, **parameters):
    tissue = tissue_class(instance_name="bench")
    for name, value in parameters.items():
        setattr(tissue, name, value)
    tissue.exit_initialization_mode()
    return tissue


def throughput(tissue_class, label: str, steps: int, **parameters) -> None:
    """Node-steps per second over ``steps`` communication steps after a stimulus."""
    tissue = make(tissue_class, g_coupling=0.0, **parameters)
    tissue.I_stim, tissue.stim_width = 400.0, 2.0
    tissue.do_step(0.0, STEP)
    tissue.I_stim = 0.0
    before = tissue._substeps
    start = time.perf_counter()
    for k in range(1, steps + 1):
        tissue.do_step(k * STEP, STEP)
    wall = time.perf_counter() - start
    node_steps = tissue._n * (tissue._substeps - before)
    print(f"{label:>22}: {tissue._n:7d} nodes, {node_steps / wall:10.3g} node-steps/s, "
          f"{1e3 * wall / steps:8.3f} ms per 1 ms step (front active)")


def default_cycle(tissue_class, beats: int = 3) -> None:
    """Wall time per 1 ms step at the defaults over paced 1 Hz beats, split by phase."""
    tissue = make(tissue_class, g_coupling=0.0)
    costs = []
    for k in range(1000 * beats):
        tissue.I_stim, tissue.stim_width = (300.0, 2.0) if k % 1000 == 0 else (0.0, 0.0)
        start = time.perf_counter()
        tissue.do_step(k * STEP, STEP)
        costs.append((time.perf_counter() - start, tissue._quiet))
    total = sum(c for c, _ in costs)
    quiet = [c for c, q in costs if q]
    busy = [c for c, q in costs if not q]
    print(f"default {tissue.nx} x {tissue.ny} at dx {tissue.dx} mm, 1 Hz pacing: "
          f"mean {1e6 * total / len(costs):.1f} us per 1 ms step "
          f"({len(costs) * STEP / total:.1f}x faster than real time); "
          f"active steps {1e6 * sum(busy) / max(len(busy), 1):.1f} us ({len(busy)}), "
          f"quiescent steps {1e6 * sum(quiet) / max(len(quiet), 1):.1f} us ({len(quiet)})")


def main() -> None:
    tissue_class = load_model()
    throughput(tissue_class, "1D fibre 1000", 200, nx=1000, ny=1)
    throughput(tissue_class, "2D sheet 100 x 100", 50, nx=100, ny=100, electrode_y=50)
    throughput(tissue_class, "2D sheet 320 x 320", 10, nx=320, ny=320, electrode_y=160)
    default_cycle(tissue_class)


if __name__ == "__main__":
    main()
