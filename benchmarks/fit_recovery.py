"""Parameter recovery and cost of `cosim fit` on synthetic patients.

A synthetic patient: the C oscillator (tests/fixtures/c_oscillator) with k = 2 N/m and
c = 0.3 N·s/m, x recorded every 0.1 s for 10 s, plus N(0, 10 mm) noise (a new draw per
patient); the twin fits k in [0.5, 4] from 1 and c in [0, 1] from 0.5 by least squares, every
evaluation a cohort member. Prints, over ``--draws`` patients in this process: the mean and
largest error of each parameter, the coverage of the reported 95 % intervals, the model runs and
seconds per fit; then one fit timed as ``cosim fit`` in one process and under
``mpiexec -n 2`` (the fitted values compared bit for bit).

    python benchmarks/fit_recovery.py [--draws 40]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/test_fit.py's synthetic patient
from test_fit import NOISE, TRUTH, synthetic_patient  # noqa: E402

from cosim.twins.personalise import fit_scenario  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=40)
    args = parser.parse_args()
    names = list(TRUTH)
    truth = np.array([TRUTH[n] for n in names])
    errors, inside, runs, seconds = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for draw in range(args.draws):
            folder = Path(tmp) / f"p{draw}"
            folder.mkdir()
            done = fit_scenario(synthetic_patient(folder, seed=draw), folder / "fit.h5",
                                plot=False).result
            errors.append(done.values - truth)
            low, high = done.interval.T
            inside.append((low <= truth) & (truth <= high))
            runs.append(done.members)
            seconds.append(done.seconds)
        errors, inside = np.array(errors), np.array(inside)
        print(f"{args.draws} synthetic patients, noise sd {NOISE * 1000:g} mm, least squares:")
        for j, name in enumerate(names):
            print(f"  {name}: truth {truth[j]:g}, mean error {np.mean(errors[:, j]):+.2e}, "
                  f"largest |error| {np.max(np.abs(errors[:, j])):.2e} "
                  f"({100 * np.max(np.abs(errors[:, j])) / truth[j]:.2f} %), "
                  f"95 % interval held the truth in {100 * np.mean(inside[:, j]):.0f} %")
        print(f"  both inside: {100 * np.mean(np.all(inside, axis=1)):.0f} %; per fit "
              f"{np.median(runs):.0f} model runs (median), {np.median(seconds):.2f} s (median)")
        folder = Path(tmp) / "timed"
        folder.mkdir()
        path = synthetic_patient(folder, seed=1)
        for label, prefix in (("one process", []),
                              ("mpiexec -n 2", [str(ROOT / ".venv" / "bin" / "mpiexec"), "-n",
                                                "2"])):
            out = subprocess.run([*prefix, sys.executable, "-m", "cosim.cli", "fit", str(path),
                                  "-o", str(folder / f"{len(prefix)}.h5"), "--no-plot",
                                  "--personalised", str(folder / f"{len(prefix)}.yaml")],
                                 capture_output=True, text=True, check=True).stdout
            cost = re.search(r"(\d+) model runs in (\d+) cohorts, ([\d.]+) s", out)
            print(f"  cosim fit, {label}: {cost.group(1)} model runs in {cost.group(2)} "
                  f"cohorts, {cost.group(3)} s (the fit; start-up and the personalised run "
                  "not counted)")
        same = (folder / "0.yaml").read_text() == (folder / "3.yaml").read_text()
        print(f"  personalised scenarios of the two identical: {same}")


if __name__ == "__main__":
    main()
