"""Master overhead: cosim's cost per FMU-step against a hand-written fmpy loop.

Rings of N oscillators (instance i's ``x`` feeds instance i+1's ``x_other``), stepped with
Jacobi at a fixed step, three ways in the same process:

- fmpy: the loop a user would write with ``fmpy.fmi2.FMU2Slave`` (value references resolved
  once; ``setReal``/``doStep``/``getReal`` per instance per step);
- ctypes: the floor of any Python master, the ``fmi2SetReal``/``fmi2DoStep``/``fmi2GetReal``
  functions of the shared library called straight through ctypes with arrays allocated once
  and status codes checked, nothing else;
- cosim: ``cosim.master.execution.Execution`` (Jacobi, nothing recorded), and again recording every
  ``x`` into a temporary HDF5 file (+record), and recording every second point with each ``x``
  reduced to its maximum over the interval (+reduce: ``record.reduce``, cosim.scenario.decimation).

Only the stepping loop is timed (instantiation and initialisation excluded); each figure is the
best of ``--repeat`` runs. Both ways must end in the same state (checked), so they do the same
work. FMUs: the hand-written C oscillator (cheap: the master's cost shows) and the pythonfmu
Oscillator of fmus/oscillator.

    python benchmarks/overhead.py [--sizes 2 8 32] [--fmu-steps 60000] [--repeat 3] [--cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fmpy import extract, read_model_description
from fmpy.fmi2 import FMU2Slave

from cosim.coupling.graph import CouplingGraph
from cosim.library.build import build_fmu
from cosim.master.description import Settings
from cosim.master.execution import Execution
from cosim.results.recorder import Recorder, create_results_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # for tests/fmu_kit.py, as under pytest
import fmu_kit as kit  # noqa: E402

STEP = 0.001
CLOCK = [time.perf_counter]  # --cpu: time.process_time


def build_fmus(folder: Path) -> dict[str, Path]:
    return {"C oscillator": kit.build_c_oscillator(folder),
            "pythonfmu Oscillator": build_fmu(ROOT / "fmus" / "oscillator" /
                                              "cosim_oscillator.py", folder)}


def start_values(n: int) -> list[float]:
    return [float(np.cos(2 * np.pi * i / n)) for i in range(n)]


def fmpy_ring(fmu: Path, n: int, steps: int) -> tuple[float, np.ndarray]:
    """Seconds spent stepping, and the final positions, of the hand-written fmpy loop."""
    md = read_model_description(str(fmu))
    unzipdir = extract(str(fmu))
    vr = {v.name: v.valueReference for v in md.modelVariables}
    vr_x, vr_in, vr_x0 = [vr["x"]], [vr["x_other"]], [vr["x0"]]
    slaves = []
    for i, x0 in enumerate(start_values(n)):
        slave = FMU2Slave(guid=md.guid, unzipDirectory=unzipdir,
                          modelIdentifier=md.coSimulation.modelIdentifier,
                          instanceName=f"fmpy{i}")
        slave.instantiate()
        slave.setupExperiment(startTime=0.0)
        slave.enterInitializationMode()
        slave.setReal(vr_x0, [x0])
        slave.exitInitializationMode()
        slaves.append(slave)
    x = [slave.getReal(vr_x)[0] for slave in slaves]
    ring = list(zip(slaves, [(i - 1) % n for i in range(n)], strict=True))
    begin = CLOCK[0]()
    for k in range(steps):
        t = k * STEP
        for slave, left in ring:
            slave.setReal(vr_in, [x[left]])
        for slave in slaves:
            slave.doStep(t, STEP)
        x = [slave.getReal(vr_x)[0] for slave in slaves]
    elapsed = CLOCK[0]() - begin
    for slave in slaves:
        slave.terminate()
        slave.freeInstance()
    return elapsed, np.array(x)


def ctypes_ring(fmu: Path, n: int, steps: int) -> tuple[float, np.ndarray]:
    """Seconds spent stepping, and the final positions, calling the library's functions
    directly (instances made and initialised through fmpy, which is not timed)."""
    import ctypes

    md = read_model_description(str(fmu))
    unzipdir = extract(str(fmu))
    vr = {v.name: v.valueReference for v in md.modelVariables}
    slaves = []
    for i, x0 in enumerate(start_values(n)):
        slave = FMU2Slave(guid=md.guid, unzipDirectory=unzipdir,
                          modelIdentifier=md.coSimulation.modelIdentifier,
                          instanceName=f"ctypes{i}")
        slave.instantiate()
        slave.setupExperiment(startTime=0.0)
        slave.enterInitializationMode()
        slave.setReal([vr["x0"]], [x0])
        slave.exitInitializationMode()
        slaves.append(slave)
    library = slaves[0].dll
    set_real, do_step, get_real = library.fmi2SetReal, library.fmi2DoStep, library.fmi2GetReal
    set_real.restype = do_step.restype = get_real.restype = ctypes.c_int
    set_real.argtypes = get_real.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                             ctypes.c_void_p]
    do_step.argtypes = [ctypes.c_void_p, ctypes.c_double, ctypes.c_double, ctypes.c_int]
    vr_x = (ctypes.c_uint * 1)(vr["x"])
    vr_in = (ctypes.c_uint * 1)(vr["x_other"])
    x = (ctypes.c_double * n)()
    inputs = [(ctypes.c_double * 1)() for _ in range(n)]
    components = [slave.component for slave in slaves]
    outputs = [ctypes.byref(x, 8 * i) for i in range(n)]
    ring = [(c, inputs[i], (i - 1) % n, outputs[i]) for i, c in enumerate(components)]
    for c, _, _, out in ring:
        get_real(c, vr_x, 1, out)
    begin = CLOCK[0]()
    for k in range(steps):
        t = k * STEP
        for c, buffer, left, _ in ring:
            buffer[0] = x[left]
            if set_real(c, vr_in, 1, buffer):
                raise SystemExit("fmi2SetReal failed")
        for c in components:
            if do_step(c, t, STEP, 1):
                raise SystemExit("fmi2DoStep failed")
        for c, _, _, out in ring:
            if get_real(c, vr_x, 1, out):
                raise SystemExit("fmi2GetReal failed")
    elapsed = CLOCK[0]() - begin
    final = np.array(x[:])
    for slave in slaves:
        slave.terminate()
        slave.freeInstance()
    return elapsed, final


class Stopwatch:
    """Observer timing the stepping loop (from point 0 to the last point)."""

    def started(self, run: Execution) -> None:
        self.last = run.settings.steps
        self.run = run

    def stepped(self, time_: float) -> None:
        if self.run.steps == 0:
            self.begin = CLOCK[0]()
        elif self.run.steps == self.last:
            self.elapsed = CLOCK[0]() - self.begin
            layout = self.run.layout
            self.x = np.array([self.run.system.signals[layout.index(f"o{i}", "x")]
                               for i in range(len(layout.instances))])

    def finished(self, error: BaseException | None) -> None:
        if error is not None:
            raise error


def cosim_ring(fmu: Path, n: int, steps: int, record_to: Path | None,
               reduce: bool = False) -> tuple[float, np.ndarray]:
    graph = CouplingGraph()
    for i, x0 in enumerate(start_values(n)):
        graph.add_instance(f"o{i}", fmu, parameters={"x0": x0})
    for i in range(n):
        graph.connect(f"o{(i - 1) % n}.x", f"o{i}.x_other")
    graph.validate()
    settings = Settings(0.0, steps * STEP, STEP, algorithm="jacobi",
                        record={f"o{i}": ("x",) for i in range(n)})
    if reduce:
        settings = dataclasses.replace(settings, record_interval=2 * STEP, record_reduce={
            f"o{i}": {"x": "max"} for i in range(n)})
    watch = Stopwatch()
    if record_to is None:
        Execution(graph, settings).run([watch])
    else:
        with create_results_file(record_to, {"benchmark": "overhead"}) as file:
            Execution(graph, settings).run([Recorder(file), watch])
    return watch.elapsed, watch.x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--fmu-steps", type=int, default=60_000,
                        help="FMU-steps per measurement (steps = this / instances)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpu", action="store_true",
                        help="CPU seconds of this process instead of wall time (on a machine "
                             "busy with other work: waiting for a core does not count)")
    args = parser.parse_args()
    if args.cpu:
        CLOCK[0] = time.process_time
    with tempfile.TemporaryDirectory(prefix="cosim_overhead_") as tmp:
        folder = Path(tmp)
        fmus = build_fmus(folder)
        print(f"Jacobi ring, step {STEP} s; µs per FMU-step (best of {args.repeat}); "
              "ratio = cosim / fmpy; /ctypes = cosim / ctypes")
        print(f"{'FMU':<22}{'N':>4}{'steps':>7}{'ctypes':>8}{'fmpy':>8}{'cosim':>8}{'ratio':>7}"
              f"{'/ctypes':>8}{'+record':>9}{'ratio':>7}{'+reduce':>9}{'ratio':>7}")
        for label, fmu in fmus.items():
            for n in args.sizes:
                steps = max(100, args.fmu_steps // n)
                best = {"ctypes": np.inf, "fmpy": np.inf, "cosim": np.inf, "record": np.inf,
                        "reduce": np.inf}
                for _ in range(args.repeat):
                    seconds, x_ctypes = ctypes_ring(fmu, n, steps)
                    best["ctypes"] = min(best["ctypes"], seconds)
                    seconds, x_fmpy = fmpy_ring(fmu, n, steps)
                    best["fmpy"] = min(best["fmpy"], seconds)
                    seconds, x_cosim = cosim_ring(fmu, n, steps, None)
                    best["cosim"] = min(best["cosim"], seconds)
                    seconds, x_rec = cosim_ring(fmu, n, steps, folder / "record.h5")
                    best["record"] = min(best["record"], seconds)
                    seconds, x_red = cosim_ring(fmu, n, steps, folder / "reduce.h5", True)
                    best["reduce"] = min(best["reduce"], seconds)
                    if not all(np.array_equal(x_fmpy, x)
                               for x in (x_ctypes, x_cosim, x_rec, x_red)):
                        raise SystemExit(f"{label}, N={n}: cosim and fmpy end in different "
                                         "states; the comparison is not like for like")
                us = {k: v / (n * steps) * 1e6 for k, v in best.items()}
                print(f"{label:<22}{n:>4}{steps:>7}{us['ctypes']:>8.2f}{us['fmpy']:>8.2f}"
                      f"{us['cosim']:>8.2f}{us['cosim'] / us['fmpy']:>7.2f}"
                      f"{us['cosim'] / us['ctypes']:>8.2f}{us['record']:>9.2f}"
                      f"{us['record'] / us['fmpy']:>7.2f}{us['reduce']:>9.2f}"
                      f"{us['reduce'] / us['fmpy']:>7.2f}")


if __name__ == "__main__":
    main()
