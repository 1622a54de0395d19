"""What may leave the site where a patient's data live: a results file's summary.

A patient-specific run keeps the patient's data where they are (``docs/twins.md``,
"Privacy"): per measured file the scenario says ``store: full`` (the data copied into the
results), ``hash`` (only its SHA-256, columns, units and sample count in the provenance: the
default) or ``none`` (nothing but that there was one); the patient is named by a pseudonym
(``patient: {id: …}``). ``summary(results)`` is what travels back when the FMUs and the
scenario travel to the data: the verdict and its figures, a cohort's summary, the fit's
parameters with their uncertainty and residual figures, the pseudonym, the inputs' hashes —
and no time series, no measured value, no path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cosim.scenario.criteria import read_outcomes

# root attributes copied as they are (no paths: scenario_file, command_line and the scenario's
# text name folders and files, which may name the patient)
KEPT = ("format", "format_version", "status", "end_reason", "cosim_version", "cosim_commit",
        "scenario_name", "scenario_sha256", "patient", "start", "stop", "step", "algorithm",
        "created")
JSON_KEPT = ("measured_data",)


def summary(results: str | Path) -> dict[str, Any]:
    """The results file's summary: plain data, no time series (``docs/twins.md``)."""
    with h5py.File(results, "r") as f:
        out: dict[str, Any] = {k: _plain(f.attrs[k]) for k in KEPT if k in f.attrs}
        for key in JSON_KEPT:
            if key in f.attrs:
                out[key] = json.loads(f.attrs[key])
        if "fmus" in f.attrs:
            out["fmus"] = {name: {"model_name": v["model_name"], "sha256": v["sha256"]}
                           for name, v in json.loads(f.attrs["fmus"]).items()}
        if "verdict" in f and "members" not in f:
            out["verdict"] = [_outcome(o) for o in read_outcomes(f)]
        if "members" in f and "summary" in f:
            table = f["summary"][()]
            out["cohort"] = {name: [_plain(v) for v in table[name]] for name in table.dtype.names}
        if "fit" in f:
            out["fit"] = json.loads(f["fit"].attrs["summary"])
    return out


def write_summary(results: str | Path, output: str | Path) -> Path:
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(summary(results), indent=2, sort_keys=True) + "\n",
                      encoding="utf-8")
    return output


def _outcome(outcome: Any) -> dict[str, Any]:
    return {"name": outcome.name, "signal": outcome.signal, "measure": outcome.measure,
            "value": _plain(outcome.value), "min": _plain(outcome.min),
            "max": _plain(outcome.max), "passed": bool(outcome.passed),
            "reason": outcome.reason}


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None if np.isnan(value) else ("inf" if value > 0 else "-inf")
    return value
