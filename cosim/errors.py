"""The errors cosim raises: one base class, two families.

- ``ScenarioError``: found before the run (a scenario file, a coupling graph, an FMU that cannot
  be opened). It carries every ``Problem`` found, each with its file, line and key.
- ``SimulationError``: raised during the run (an FMU call that failed, a crash). It names the
  instance, the FMI function, the simulation time and the FMU's last log lines.
- ``OutputError``: the results file cannot be claimed (a folder that cannot be written, a file
  that is not a cosim results file, another run writing the same file).

The CLI prints ``str(error)`` and nothing else; a message must make sense to a device engineer.
How things end is here too: the ``status`` a results file (or a cohort member) ends with, and
the exit codes of the ``cosim`` command.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

# a results file's (or a cohort member's) ``status`` attribute
RUNNING, COMPLETED, FAILED, INTERRUPTED = "running", "completed", "failed", "interrupted"

EXIT_OK = 0  # success; for run: completed and every acceptance criterion met (PASS)
EXIT_ERROR = 1  # an error: one message, no traceback; nothing claimed was replaced
EXIT_VERDICT_FAIL = 2  # the run completed and its verdict is FAIL (a cohort: any member
#                        failed its criteria or did not complete)
EXIT_USAGE = 64  # the command line is wrong (EX_USAGE of sysexits.h)
EXIT_INTERRUPTED = 130  # stopped by SIGINT (Ctrl-C) or SIGTERM (128 + SIGINT, as shells do)


@dataclass(frozen=True)
class Problem:
    """One mistake found before a run, located as precisely as we can."""

    message: str
    file: str | None = None
    line: int | None = None
    key: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        elif self.line:
            where = f"line {self.line}: "
        key = f"{self.key}: " if self.key else ""
        hint = f"\n    -> {self.hint}" if self.hint else ""
        return f"{where}{key}{self.message}{hint}"


def line_of(lines: Mapping[tuple, int], path: tuple) -> int | None:
    """The line of key ``path`` in a file read with the line of every key
    (``cosim.scenario.yaml_file``), or of its nearest parent that has one."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


@dataclass(frozen=True)
class Source:
    """Where something was declared: a scenario file, line and key (all optional)."""

    file: str | None = None
    line: int | None = None
    key: str | None = None

    def problem(self, message: str, hint: str | None = None) -> Problem:
        return Problem(message, file=self.file, line=self.line, key=self.key, hint=hint)


class Problems(list[Problem]):
    """The one collector of problems found before a run: every section of a scenario file
    (its cohort, criteria, record and credibility sections included) and every check against
    the FMUs reports here, at the key path of what caused it (located in ``file`` by
    ``lines``, the line of every key); ``raise_any`` raises them all as one
    ``ScenarioError``."""

    def __init__(self, file: str | None = None, lines: Mapping[tuple, int] | None = None):
        super().__init__()
        self.file = file
        self.lines = lines or {}

    def source(self, *path) -> Source:
        return Source(self.file, line_of(self.lines, path), ".".join(map(str, path)) or None)

    def report(self, path: tuple, message: str, hint: str | None = None) -> None:
        """A problem at key ``path`` (a tuple of keys and list indices)."""
        self.append(self.source(*path).problem(message, hint or None))

    def within(self, *prefix) -> Callable[[tuple, str, str | None], None]:
        """``report`` for paths under ``prefix`` (what a section's own checker calls)."""
        return lambda path, message, hint=None: self.report(prefix + tuple(path), message, hint)

    def raise_any(self) -> None:
        """Raise every problem found (each once, in order) as one ``ScenarioError``."""
        if self:
            raise ScenarioError(list(dict.fromkeys(self)))


class CosimError(Exception):
    """Base class of every error cosim raises on purpose."""


class ScenarioError(CosimError):
    """The scenario, the coupling graph or an FMU is wrong; found before anything ran."""

    def __init__(self, problems: list[Problem] | Problem | str):
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__(self._text())

    def _text(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{len(self.problems)} problems found:"]
        lines += [f"  {i}. " + str(p).replace("\n", "\n     ") for i, p in
                  enumerate(self.problems, 1)]
        return "\n".join(lines)


class FMUError(ScenarioError):
    """An FMU file cannot be used: missing, not a zip, bad model description, no binary."""


class OutputError(CosimError):
    """The results file cannot be written where asked; nothing was run or changed."""


class SimulationError(CosimError):
    """Something failed while the co-simulation ran."""

    def __init__(self, message: str, *, instance: str | None = None,
                 function: str | None = None, time: float | None = None,
                 log: list[str] | None = None, rank: int | None = None):
        self.instance = instance
        self.function = function
        self.time = time
        self.log = list(log or [])
        self.rank = rank
        super().__init__(message)

    def __str__(self) -> str:
        parts = []
        if self.rank is not None:
            parts.append(f"rank {self.rank}")
        if self.instance:
            parts.append(f"instance '{self.instance}'")
        if self.time is not None:
            parts.append(f"t = {self.time:.9g} s")
        head = ", ".join(parts)
        text = f"{head}: {self.args[0]}" if head else str(self.args[0])
        if self.log:
            text += "\n  last messages from the FMU:\n" + "\n".join(
                "    " + line for line in self.log[-5:])
        return text


class StepDiscarded(SimulationError):
    """An FMU could not complete a communication step (fmi2Discard, fmi3Discard) and did not
    end the simulation: an adaptive master retries with a smaller step; elsewhere an error."""


class ResultsWriteError(SimulationError):
    """The results file cannot be written (disk full, quota, storage gone)."""


class Interrupted(KeyboardInterrupt):
    """The run was asked to stop (Ctrl-C, SIGTERM from a scheduler); what it wrote is kept."""
