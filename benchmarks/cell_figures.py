"""Figures of the capture cell and the lead quoted in docs/models/cell.md and lead.md.

    .venv/bin/python benchmarks/cell_figures.py

Strength–duration thresholds of lead + cell (bisection, as tests/models/test_lead.py), their
Lapicque and Weiss fits, APD90 at two cycle lengths, rest, peak, max dV/dt and the cell's cost
per 1 ms communication step. Runs the model scripts in-process (no FMU build), in about 2 s.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit

ROOT = Path(__file__).resolve().parent.parent
WIDTHS = np.array([0.1, 0.2, 0.4, 0.5, 1.0, 1.5])  # ms


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"cosim_{name}_b",
                                                  ROOT / "fmus" / name / f"cosim_{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LEAD, CELL = load("lead"), load("cell")


def cell(**parameters):
    c = CELL.Cell(instance_name="c")
    for name, value in parameters.items():
        setattr(c, name, value)
    c.exit_initialization_mode()
    return c


def threshold(width: float) -> float:
    """Lowest amplitude (V) of a pulse of ``width`` ms through the nominal lead that fires."""
    def captures(volts: float) -> bool:
        lead = LEAD.Lead(instance_name="l")
        lead.exit_initialization_mode()
        lead.V_pace_v, lead.pulse_width_v = volts, width
        lead.do_step(0.0, 2e-3)
        c = cell()
        c.I_stim, c.stim_width = lead.I_stim, lead.stim_width
        for k in range(30):
            c.do_step(k * 2e-3, 2e-3)
            c.I_stim = 0.0
        return c.beat_count > 0

    low, high = 0.0, 20.0
    for _ in range(20):
        middle = 0.5 * (low + high)
        low, high = (low, middle) if captures(middle) else (middle, high)
    return high


def paced(bcl: int, beats: int, **parameters):
    """APD90 (ms) of the last beat, min and max V (mV), at ``bcl`` ms, 60 µA/cm² for 1 ms."""
    c = cell(**parameters)
    trace = []
    for k in range(bcl * beats):
        c.I_stim, c.stim_width = (60.0, 1.0) if k % bcl == 0 else (0.0, 0.0)
        c.do_step(k * 1e-3, 1e-3)
        trace.append(c.V)
    return c.apd90, min(trace), max(trace)


def main() -> None:
    volts = np.array([threshold(w) for w in WIDTHS])
    (rheobase, chronaxie), _ = curve_fit(lambda t, r, c: r * (1 + c / t), WIDTHS, volts,
                                         p0=(0.5, 0.5))
    lead = LEAD.Lead(instance_name="l")
    lead.exit_initialization_mode()
    charge = np.array([lead.pulse(v, w, False)[3] for v, w in zip(volts, WIDTHS, strict=True)])
    slope, intercept = np.polyfit(WIDTHS, charge, 1)
    print("width (ms)     " + " ".join(f"{w:6.1f}" for w in WIDTHS))
    print("threshold (V)  " + " ".join(f"{v:6.2f}" for v in volts))
    print("charge (uC)    " + " ".join(f"{q:6.3f}" for q in charge))
    print(f"Lapicque: rheobase {rheobase:.3f} V, chronaxie {chronaxie:.3f} ms")
    print(f"Weiss (charge): rheobase {slope:.3f} mA, chronaxie {intercept / slope:.3f} ms")
    for label, parameters in (("unloaded (g_load 0)", {"g_load": 0.0}),
                              ("loaded, tissue at rest", {})):
        slow, rest, peak = paced(1000, 4, **parameters)
        fast, _, _ = paced(500, 8, **parameters)
        print(f"APD90 {label}: {slow:.1f} ms at BCL 1000, {fast:.1f} ms at BCL 500; "
              f"rest {rest:.2f} mV, peak {peak:.1f} mV")
    c = cell()
    previous, fastest = c.V, 0.0
    for k in range(200):  # 10 µs steps
        c.I_stim = 60.0 if k < 100 else 0.0
        c.do_step(k * 1e-5, 1e-5)
        fastest, previous = max(fastest, (c.V - previous) / 0.01), c.V
    print(f"max dV/dt {fastest:.0f} V/s (loaded, 60 uA/cm2)")
    c, steps = cell(), 20000
    start = time.perf_counter()
    for k in range(steps):
        c.I_stim, c.stim_width = (60.0, 1.0) if k % 1000 == 0 else (0.0, 0.0)
        c.do_step(k * 1e-3, 1e-3)
    cost = (time.perf_counter() - start) / steps * 1e6
    print(f"cell cost {cost:.2f} us per 1 ms step (paced at 1 Hz, {c.beat_count} beats)")


if __name__ == "__main__":
    main()
