"""Do the library's FMUs run where cosim is not? Two fresh virtual environments, one holding only
fmpy (and what fmpy needs: no cosim, pythonfmu or scipy), one holding only libcosimpy (the
libcosim C++ co-simulation engine):

    .venv/bin/python scripts/check_exchange.py [build/fmus]

1. ``fmpy validate`` and ``fmpy simulate`` of each library C FMU in the fmpy environment;
2. the flagship's five FMUs connected as in scenarios/vvi_complete_av_block.yaml and run for
   5 s by libcosim (a Jacobi master at 1 ms) in the libcosimpy environment.

Needs access to a package index (pip) and about 30 s. Exits 1 if anything fails. A check to
run by hand before exchanging FMUs, not a test: it installs packages.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ("Cell", "Generator", "Lead", "Organ", "Tissue")
LIBCOSIM_LOOP = """
import sys
from libcosimpy.CosimExecution import CosimExecution
from libcosimpy.CosimLogging import CosimLogLevel, log_output_level
from libcosimpy.CosimObserver import CosimObserver
from libcosimpy.CosimSlave import CosimLocalSlave

log_output_level(CosimLogLevel.WARNING)
folder = sys.argv[1]
execution = CosimExecution.from_step_size(step_size=1_000_000)  # ns: 1 ms
observer = CosimObserver.create_last_value()
execution.add_observer(observer)
index = {name: execution.add_local_slave(CosimLocalSlave(
    fmu_path=f"{folder}/{name}.fmu", instance_name=name))
    for name in ("Generator", "Lead", "Cell", "Tissue", "Organ")}
refs = {name: {v.name.decode(): v.reference for v in execution.slave_variables(i)}
        for name, i in index.items()}
for source, output, target, input_ in [
        ("Generator", "V_pace_v", "Lead", "V_pace_v"),
        ("Generator", "pulse_width_v", "Lead", "pulse_width_v"),
        ("Lead", "I_stim", "Cell", "I_stim"), ("Lead", "stim_width", "Cell", "stim_width"),
        ("Cell", "V", "Tissue", "V_source"), ("Tissue", "V_electrode", "Cell", "V_tissue"),
        ("Tissue", "activation", "Organ", "activation"), ("Tissue", "egm", "Lead", "egm"),
        ("Lead", "V_sense", "Generator", "V_sense_v"),
        ("Lead", "impedance", "Generator", "lead_impedance")]:
    execution.connect_real_variables(index[source], refs[source][output], index[target],
                                     refs[target][input_])
assert execution.simulate_until(target_time=5_000_000_000)
paces = observer.last_integer_values(index["Generator"], [refs["Generator"]["vp_count"]])[0]
beats = observer.last_integer_values(index["Cell"], [refs["Cell"]["beat_count"]])[0]
pressure = observer.last_real_values(index["Organ"], [refs["Organ"]["P_ao"]])[0]
print(f"libcosim, 5 s: {paces} paces, {beats} myocyte beats, aortic pressure {pressure:.1f} mmHg")
assert paces >= 4 and beats >= 4 and 40.0 < pressure < 150.0
"""


def environment(folder: Path, package: str) -> Path:
    venv.create(folder, with_pip=True)
    subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", package], check=True)
    return folder / "bin" / "python"


def main() -> int:
    fmus = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "build" / "fmus"
    failures = 0
    with tempfile.TemporaryDirectory(prefix="cosim_exchange_") as tmp:
        python = environment(Path(tmp) / "fmpy", "fmpy")
        listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"],
                                capture_output=True, text=True, check=True).stdout.lower()
        assert "pythonfmu" not in listed and "scipy" not in listed and "cosim" not in listed
        fmpy = python.with_name("fmpy")
        for name in LIBRARY:
            fmu = fmus / f"{name}.fmu"
            validate = subprocess.run([str(fmpy), "validate", str(fmu)], capture_output=True,
                                      text=True)
            simulate = subprocess.run([str(fmpy), "simulate", str(fmu), "--output-file",
                                       str(Path(tmp) / f"{name}.csv")],
                                      capture_output=True, text=True)
            ok = validate.returncode == 0 and simulate.returncode == 0
            failures += not ok
            print(f"fmpy only: {name:<10} validate {'ok' if validate.returncode == 0 else 'FAIL'}"
                  f", simulate {'ok' if simulate.returncode == 0 else 'FAIL'}")
            if not ok:
                print(validate.stdout + simulate.stderr)
        python = environment(Path(tmp) / "libcosim", "libcosimpy")
        loop = subprocess.run([str(python), "-c", LIBCOSIM_LOOP, str(fmus)],
                              capture_output=True, text=True)
        failures += loop.returncode != 0
        summary = [line for line in loop.stdout.splitlines() if line.startswith("libcosim,")]
        print(summary[-1] if loop.returncode == 0 and summary else
              "libcosim FAILED:\n" + loop.stderr[-2000:])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
