"""Credibility evidence in the shape of ASME V&V 40-2018 (assessing credibility of
computational modeling through verification and validation: application to medical devices).

- The scenario's optional ``credibility`` section states the **question of interest**, the
  **context of use**, the **model influence** and the **decision consequence**; the **model
  risk** follows from the last two (V&V 40's risk map: low/medium/high each, risk 1 to 5).
- **Verification and validation evidence** of each model is what its tests produced: a test
  session over ``tests/models`` writes, per library model, the outcome of every test with its
  docstring into ``build/evidence/<sha256 of the FMU>.json`` (``tests/conftest.py`` calls
  ``write_evidence``). The evidence is bound to the FMU's bytes: a report shows it only for the
  FMU a run used, byte for byte.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

LEVELS = ("low", "medium", "high")
KEYS = ("question", "context_of_use", "model_influence", "decision_consequence")
EVIDENCE = Path(__file__).resolve().parents[2] / "build" / "evidence"


def check_credibility(section: Any, report: Callable[[tuple, str, str], None]) -> None:
    """Problems of a scenario's ``credibility`` section go to ``report(path, message, hint)``."""
    if section is None:
        return
    if not isinstance(section, Mapping):
        report(("credibility",), "must be a mapping", "credibility: {question: …, "
               "context_of_use: …, model_influence: medium, decision_consequence: high}")
        return
    for key, value in section.items():
        if key not in KEYS:
            report(("credibility", key), f"unknown key '{key}'", "allowed: " + ", ".join(KEYS))
        elif key in ("model_influence", "decision_consequence") and value not in LEVELS:
            report(("credibility", key), f"must be low, medium or high, got {value!r}",
                   "V&V 40 rates both on three levels")
        elif key in ("question", "context_of_use") and not isinstance(value, str):
            report(("credibility", key), "must be text", "a sentence or a paragraph")


def model_risk(influence: str, consequence: str) -> int:
    """V&V 40's model risk, 1 (lowest) to 5, from model influence and decision consequence."""
    return LEVELS.index(influence) + LEVELS.index(consequence) + 1


def write_evidence(folder: Path, model: str, fmu: Path, sha256: str,
                   tests: Sequence[Mapping[str, str]], commit: str) -> Path:
    """Record the outcome of a model's tests for the FMU whose bytes hash to ``sha256``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{sha256}.json"
    data = {"model": model, "fmu": fmu.name, "fmu_sha256": sha256, "cosim_commit": commit,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "tests": list(tests)}
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
    temporary.replace(path)
    return path


def read_evidence(sha256: str, folder: Path = EVIDENCE) -> dict | None:
    """The recorded test evidence for the FMU with this SHA-256, or None."""
    try:
        return json.loads((Path(folder) / f"{sha256}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
