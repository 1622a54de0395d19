"""The N-version benchmark of Niederer et al. 2011 with the tissue model's cell: activation
times at the benchmark's points and their convergence in dx and dt.

    .venv/bin/python benchmarks/niederer.py [--quick] [--fmu-diffusivity]

Niederer SA et al., Verification of cardiac tissue electrophysiology simulators using an
N-version benchmark, Phil Trans R Soc A 2011;369:4331-4351: a 20 x 7 x 3 mm slab, fibres
along the long edge, monodomain conductivities sigma_l = 0.1334 and sigma_t = 0.01761 S/m (the
harmonic means of the intra- and extracellular ones), chi = 140 /mm, C_m = 1 uF/cm^2, a
stimulus of 50 000 uA/cm^3 for 2 ms in a 1.5 mm cube at a corner, activation at the upward
0 mV crossing, points P1-P9 (the slab's corners and its centre), dx 0.5/0.2/0.1 mm, dt
0.05/0.01/0.005 ms. The benchmark's cell is ten Tusscher-Panfilov 2006 (epicardial); this one
is the tissue FMU's Mitchell-Schaeffer cell (docs/models/tissue.md says what that changes).

The tissue's C code runs without an FMI layer (benchmarks/tissue_probe.c, built here with
the FMUs' compiler flags) so that every point's activation time can be read; the FMU itself
reports one of them, P8, as activation_time_far (tests/models/test_tissue.py runs it).
--quick leaves out dx = 0.1 mm (about a minute of CPU); --fmu-diffusivity runs the FMU's
default D_long, D_trans (0.33, 0.0436 mm^2/ms: the same ratio, calibrated to a human conduction
velocity with this cell) instead of the benchmark's.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from cosim.library.build_c import CFLAGS, compiler

ROOT = Path(__file__).resolve().parent.parent
SIZE = (20.0, 7.0, 3.0)  # mm
SIGMA_L, SIGMA_T = 0.1334, 0.01761  # S/m = mS/mm
CHI, C_M = 140.0, 0.01  # 1/mm, uF/mm^2 (1 uF/cm^2)
STIMULUS = 50_000.0 / (CHI * 10.0)  # uA/cm^3 over chi in 1/cm: 35.71 uA/cm^2 of membrane
POINTS = {"P1": (0, 0, 0), "P2": (0, 7, 0), "P3": (20, 0, 0), "P4": (20, 7, 0),
          "P5": (0, 0, 3), "P6": (0, 7, 3), "P7": (20, 0, 3), "P8": (20, 7, 3),
          "P9": (10, 3.5, 1.5)}  # mm
DX = (0.5, 0.2, 0.1)  # mm
DT = (0.05, 0.01, 0.005)  # ms


def parameters(dx: float, dt: float, diffusivity: tuple[float, float] | None = None
               ) -> dict[str, float]:
    """The Tissue FMU's parameters for the benchmark at one resolution (diffusivity: D_long,
    D_trans in mm^2/ms instead of the benchmark's sigma/(chi C_m))."""
    nx, ny, nz = (round(side / dx) + 1 for side in SIZE)
    d_long, d_trans = diffusivity or (SIGMA_L / (CHI * C_M), SIGMA_T / (CHI * C_M))
    return {"nx": nx, "ny": ny, "nz": nz, "dx": dx, "dt": dt, "dt_max": dt,
            "D_long": d_long, "D_trans": d_trans, "C_m": 1.0,
            "V_activation": 0.0, "g_coupling": 0.0, "electrode_x": 0, "electrode_y": 0,
            "intrinsic_rate": 1.0, "intrinsic_delay": 0.0, "intrinsic_x": 0,
            "intrinsic_y": 0, "intrinsic_z": 0, "intrinsic_cube": 1, "intrinsic_radius": 1.5,
            "intrinsic_current": STIMULUS, "intrinsic_width": 2.0}


def node(point: tuple[float, float, float], dx: float) -> tuple[int, int, int]:
    return tuple(round(coordinate / dx) for coordinate in point)


def build_probe(folder: Path) -> Path:
    """benchmarks/tissue_probe.c with fmus/tissue/tissue.c, the FMUs' compiler flags."""
    binary = folder / "tissue_probe"
    flags = [f for f in CFLAGS if f not in ("-fPIC", "-fvisibility=hidden")]
    subprocess.run([compiler(), *flags, f"-I{ROOT / 'fmus/common'}",
                    f"-I{ROOT / 'fmus/tissue'}", str(ROOT / "benchmarks/tissue_probe.c"),
                    "-o", str(binary), "-lm"], check=True)
    return binary


def activation_times(probe: Path, dx: float, dt: float, diffusivity=None,
                     stop_ms: float = 400.0) -> dict[str, float]:
    """{point: activation time [ms]} of one run (-1: not activated by stop_ms)."""
    arguments = [f"{name}={value}" for name, value in parameters(dx, dt, diffusivity).items()]
    arguments += ["@{},{},{}".format(*node(p, dx)) for p in POINTS.values()]
    done = subprocess.run([str(probe), str(stop_ms), "1.0", *arguments], check=True,
                          capture_output=True, text=True)
    times = [float(line.split()[3]) for line in done.stdout.splitlines()[:-1]]
    return dict(zip(POINTS, times, strict=True))


def stable(dx: float, dt: float, diffusivity=None) -> bool:
    d = parameters(dx, dt, diffusivity)
    return dt <= min(dx**2 / (2.0 * (d["D_long"] + 2.0 * d["D_trans"])), 0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="leave out dx = 0.1 mm")
    parser.add_argument("--fmu-diffusivity", action="store_true",
                        help="the FMU's default D_long, D_trans instead of the benchmark's")
    args = parser.parse_args()
    spacings = DX[:-1] if args.quick else DX
    diffusivity = (0.33, 0.0436) if args.fmu_diffusivity else None
    d = parameters(DX[0], DT[0], diffusivity)
    print("Niederer et al. 2011 N-version benchmark geometry, Mitchell-Schaeffer cell")
    source = "the FMU's defaults" if diffusivity else "sigma/(chi C_m)"
    print(f"  slab 20 x 7 x 3 mm, D_long {d['D_long']:.4f}, D_trans {d['D_trans']:.5f} mm^2/ms "
          f"({source}), stimulus {STIMULUS:.2f} uA/cm^2 for 2 ms in the 1.5 mm corner "
          "cube, activation at 0 mV")
    results: dict[tuple[float, float], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as folder:
        probe = build_probe(Path(folder))
        for dx in spacings:
            for dt in DT:
                if stable(dx, dt, diffusivity):
                    wall = time.perf_counter()
                    results[dx, dt] = activation_times(probe, dx, dt, diffusivity)
                    results[dx, dt]["wall"] = time.perf_counter() - wall
    print("\nActivation time at P8 (20, 7, 3) mm, the corner opposite the stimulus [ms]")
    print("  dx [mm] " + "".join(f"{f'dt {dt} ms':>14}" for dt in DT))
    for dx in spacings:
        cells = [f"{results[dx, dt]['P8']:14.2f}" if (dx, dt) in results
                 else f"{'unstable':>14}" for dt in DT]
        print(f"  {dx:7.2f} " + "".join(cells))
    print("\nActivation times at the benchmark's points [ms]: P1 the stimulated corner, P8 the "
          "opposite one, P9 the centre; (x, y, z) in mm")
    print(" " * 18 + "".join(f"{name:>11}" for name in POINTS))
    print("  dx [mm]  dt [ms] " + "".join(f"{','.join(f'{c:g}' for c in p):>11}"
                                        for p in POINTS.values()) + "   wall [s]")
    for (dx, dt), times in results.items():
        print(f"  {dx:7.2f} {dt:8.3f} " + "".join(f"{times[n]:11.2f}" for n in POINTS)
              + f"{times['wall']:11.1f}")
    finest = results[min(spacings), min(DT)]
    print(f"\nDifference from the finest run (dx {min(spacings)} mm, dt {min(DT)} ms), "
          "largest over P1-P9 [ms]")
    for (dx, dt), times in results.items():
        worst = max(abs(times[n] - finest[n]) for n in POINTS)
        print(f"  dx {dx:4.2f} mm, dt {dt:5.3f} ms: {worst:7.2f}")


if __name__ == "__main__":
    main()
