"""What ``cosim run`` would refuse before its first step, found by ``cosim check`` without running.

``scenario.build`` finds everything the files say is wrong (keys, types, units, ranges, binaries
named in the archive, …): run and check share it. What only the FMUs know shows when they start:
a parameter value their code refuses (the generator's ``mode_name: VVX``), a binary that does not
load, an initialisation that fails. ``trial_start`` does what a run does before its first step
(``Execution.start``: instantiate, set parameters, initialise) with the scenario's values, frees
everything, and turns a failure into a ``Problem`` at the instance's line. What the FMUs print
meanwhile is captured, not shown. Cohort members' drawn values are not tried (that would cost
one start per member); a member that does not start fails alone in ``run``.
"""

from __future__ import annotations

from dataclasses import replace

from cosim.capture import CapturedOutput
from cosim.errors import FMUError, Problem, SimulationError
from cosim.execution import Execution, Settings
from cosim.graph import CouplingGraph
from cosim.scenario import Scenario


def trial_start(scenario: Scenario, graph: CouplingGraph, settings: Settings
                ) -> tuple[list[Problem], CapturedOutput]:
    """Start every instance as ``run`` would, then free them; the problems found, and what
    the FMUs printed meanwhile."""
    execution = Execution(graph, replace(settings, record={}))
    try:
        execution.run_start()
    except FMUError as error:
        return [_at_instance(scenario, p.key, p.message, p.hint) for p in error.problems], \
            execution.output
    except SimulationError as error:
        said = [line for line in error.log if not line.startswith("[warning]")][-3:]
        message = f"does not start: {error.args[0]}" + "".join(
            "\n      FMU: " + line.replace("\n", "\n           ") for line in said)
        return [_at_instance(scenario, error.instance, message,
                             "the FMU refused the instance's parameters or start values at "
                             "initialisation (its messages above); `cosim run` stops there "
                             "too")], execution.output
    return [], execution.output


def _at_instance(scenario: Scenario, name: str | None, message: str, hint: str | None
                 ) -> Problem:
    spec = scenario.instances.get(name or "")
    if spec is None:
        return Problem(message, file=str(scenario.file) if scenario.file else None, hint=hint)
    path = ("instances", spec.name, "parameters") if spec.parameters else ("instances",
                                                                           spec.name)
    return scenario.source(*path).problem(message, hint)
