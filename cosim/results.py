"""Reading results files: numpy arrays by ``"instance.variable"``.

    from cosim.results import open_results
    with open_results("results/flagship.h5") as res:
        t, v = res.time, res["cell.V"]
        print(res.unit("cell.V"), res.status, res.verdict["passed"])

A cohort file holds one such layout per member: ``res.members`` lists them and
``res.member("0007")`` opens one. The layout is documented in ``docs/results-format.md``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from cosim.errors import CosimError


class Results:
    """A read-only view of a results file (or of one cohort member in it)."""

    def __init__(self, path: str | Path, group: str = "/"):
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as error:
            raise CosimError(f"{self.path}: cannot open the results file ({error})") from None
        self.group = self.file[group]

    def __enter__(self) -> Results:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    @property
    def attrs(self) -> dict[str, Any]:
        """Root (or member) attributes, JSON ones decoded."""
        out = {}
        for key, value in self.group.attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            if isinstance(value, str) and value[:1] in "{[":
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    pass
            out[key] = value
        return out

    @property
    def status(self) -> str:
        """"completed", "failed" or "running" (a run that was interrupted)."""
        return str(self.group.attrs.get("status", "unknown"))

    @property
    def time(self) -> np.ndarray:
        return self.group["time"][()]

    @property
    def variables(self) -> list[str]:
        """Every recorded ``instance.variable``."""
        if "instances" not in self.group:
            return []
        return [f"{inst}.{var}" for inst, grp in self.group["instances"].items() for var in grp]

    def _dataset(self, name: str) -> h5py.Dataset:
        instance, _, variable = name.partition(".")
        try:
            return self.group["instances"][instance][variable]
        except KeyError:
            raise KeyError(f"'{name}' was not recorded; recorded: "
                           + ", ".join(self.variables)) from None

    def __getitem__(self, name: str) -> np.ndarray:
        return self._dataset(name)[()]

    def __contains__(self, name: str) -> bool:
        return name in self.variables

    def unit(self, name: str) -> str:
        return str(self._dataset(name).attrs.get("unit", ""))

    def description(self, name: str) -> str:
        return str(self._dataset(name).attrs.get("description", ""))

    @property
    def verdict(self) -> dict[str, Any] | None:
        """The acceptance verdict: passed, and one entry per criterion with its figures."""
        if "verdict" not in self.group:
            return None
        node = self.group["verdict"]
        criteria = []
        for key in sorted(node, key=lambda k: node[k].attrs.get("index", 0)):
            criteria.append({k: _plain(v) for k, v in node[key].attrs.items()})
        return {"passed": bool(node.attrs["passed"]), "summary": str(node.attrs["summary"]),
                "criteria": criteria}

    def messages(self, instance: str) -> list[tuple[float, str, str, str]]:
        """What the FMU of ``instance`` said: ``(time, status, category, message)``, the first
        and last ones kept (``log/instances/<instance>``; empty if none was written)."""
        node = self.group.get("log/instances")
        if node is None or instance not in node:
            return []
        return [(float(t), _plain(s), _plain(c), _plain(m)) for t, s, c, m in node[instance][()]]

    @property
    def output(self) -> list[str]:
        """What the FMUs printed to stdout/stderr during the run (first and last lines)."""
        node = self.group.get("log/output")
        return [] if node is None else [_plain(line) for line in node[()]]

    @property
    def members(self) -> list[str]:
        return sorted(self.group["members"]) if "members" in self.group else []

    def member(self, member_id: str) -> Results:
        return Results(self.path, f"/members/{member_id}")

    def summary(self) -> dict[str, np.ndarray]:
        """The cohort summary table as columns (member, parameters, verdict, figures)."""
        table = self.group["summary"][()]
        return {name: _column(table[name]) for name in table.dtype.names}


def open_results(path: str | Path, member: str | None = None) -> Results:
    """Open a results file (or one cohort member of it) for reading."""
    return Results(path, f"/members/{member}" if member else "/")


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def _column(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "S" or values.dtype.kind == "O":
        return np.array([v.decode() if isinstance(v, bytes) else v for v in values])
    return values
