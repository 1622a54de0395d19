"""Figures of the capture cell and the lead quoted in docs/models/cell.md and lead.md.

    .venv/bin/python benchmarks/cell_figures.py

Strength–duration thresholds of lead + cell (the bisection of tests/models/test_lead.py), the
clinical rheobase and chronaxie and the Lapicque and Weiss fits, APD90 at two cycle lengths,
rest, peak, max dV/dt and the cell's cost per 1 ms communication step. Runs the Python edition
in-process (no FMU build; the C edition agrees bit for bit), in about 3 s.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import curve_fit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # for tests/fmu_kit.py, as under pytest
import fmu_kit as kit  # noqa: E402

# the thresholds by the tests' own bisection, so the figures are the ones the tests check
LEAD_TESTS = kit.load_script(ROOT / "tests" / "models" / "test_lead.py", "test_lead_figures")
LEAD, CELL, threshold = LEAD_TESTS.LEAD, LEAD_TESTS.CELL, LEAD_TESTS.threshold
WIDTHS = LEAD_TESTS.WIDTHS  # ms


def cell(**parameters):
    c = CELL.Cell(instance_name="c")
    for name, value in parameters.items():
        setattr(c, name, value)
    c.exit_initialization_mode()
    return c


def paced(bcl: int, beats: int, **parameters):
    """APD90 (ms) of the last beat, min and max V (mV), at ``bcl`` ms, 150 µA/cm² for 1 ms."""
    c = cell(**parameters)
    trace = []
    for k in range(bcl * beats):
        c.I_stim, c.stim_width = (150.0, 1.0) if k % bcl == 0 else (0.0, 0.0)
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
    measured = volts[-1]  # the threshold at the longest width (2 ms): the clinical rheobase
    clinical = float(np.exp(np.interp(np.log(2 * measured), np.log(volts[::-1]),
                                      np.log(WIDTHS[::-1]))))
    print(f"clinical: rheobase {measured:.3f} V (at {WIDTHS[-1]:g} ms), chronaxie "
          f"{clinical:.3f} ms (width at twice the rheobase)")
    print(f"Lapicque: rheobase {rheobase:.3f} V, chronaxie {chronaxie:.3f} ms")
    print(f"Weiss (charge): rheobase {slope:.3f} mA, chronaxie {intercept / slope:.3f} ms")
    for label, parameters in (("unloaded (g_load 0)", {"g_load": 0.0}),
                              ("loaded, tissue at rest", {})):
        slow, rest, peak = paced(1000, 4, **parameters)
        fast, _, _ = paced(500, 8, **parameters)
        print(f"APD90 {label}: {slow:.1f} ms at BCL 1000, {fast:.1f} ms at BCL 500; "
              f"rest {rest:.2f} mV, peak {peak:.1f} mV")
    for label, parameters in (("unloaded", {"g_load": 0.0}), ("loaded, tissue at rest", {})):
        c = cell(**parameters)
        previous, fastest = c.V, 0.0
        for k in range(500):  # 10 µs steps; 250 uA/cm2 for 0.2 ms, dV/dt after it
            c.I_stim, c.stim_width = (250.0 if k < 20 else 0.0), 0.0
            c.do_step(k * 1e-5, 1e-5)
            if k >= 20:
                fastest = max(fastest, (c.V - previous) / 0.01)
            previous = c.V
        print(f"max dV/dt of the membrane's own upstroke, {label}: {fastest:.0f} V/s")
    c, steps = cell(), 20000
    start = time.perf_counter()
    for k in range(steps):
        c.I_stim, c.stim_width = (150.0, 1.0) if k % 1000 == 0 else (0.0, 0.0)
        c.do_step(k * 1e-3, 1e-3)
    cost = (time.perf_counter() - start) / steps * 1e6
    print(f"cell cost {cost:.2f} us per 1 ms step (paced at 1 Hz, {c.beat_count} beats)")


if __name__ == "__main__":
    main()
