"""Iterative coupling: every communication step repeated until the coupling values agree.

An algebraic loop (outputs that depend directly on inputs, in a cycle) has no order in which
its instances can be settled; the fixed-step master breaks it with a one-step delay, which for
a loop gain of 1 or more diverges (the gain loop y = 2u + 1 grows ×4 per step). Here each step
is a fixed-point problem in the coupling values g (every connected Real output): set g, run the
step's stages (``FixedStepMaster``'s plan and loop), read the outputs y(g). The residual
r = y(g) − g is measured apart from the update: the step is accepted when every |r| is within
``tolerance`` × max(1, |y|) (``converged``); else every instance is put back into its state at
the step's start (``System.return_to_kept``) and g updated by the method of
``Iteration.method`` (``accelerations``):

- ``constant``: g + ω r (ω = ``relaxation``; 1: plain fixed-point iteration);
- ``aitken``: g + ω_k r with Aitken's dynamic relaxation, ω_k = −ω_{k−1} r_{k−1}·(r_k −
  r_{k−1}) / |r_k − r_{k−1}|² (Irons & Tuck 1969; Küttler & Wall, Comput Mech 43:61, 2008);
- ``iqn-ils``: interface quasi-Newton with an inverse Jacobian from least squares
  (Degroote et al., Comput Struct 87:793, 2009, as preCICE's IQN-ILS): V = [Δr], W = [Δy]
  of this step's iterations, α = argmin |V α + r_k|, g = y_k + W α (the first update a
  constant relaxation).

A step that has not converged after ``max_iterations`` stops the run, naming the largest
residual's value and the time. Every FMU must be able to get and set its state (the step is
repeated): one that cannot is named before the run starts. The iterations of every step go
into ``log`` (``cosim.master.adaptive.MasterLog``: ``iterations``, ``residuals``), which the
results file keeps (``/master``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from cosim.coupling.system import System
from cosim.errors import SimulationError
from cosim.fmi.fmu_file import FLOAT64_TYPES
from cosim.master.adaptive import EVENT, FIXED, MasterLog
from cosim.master.description import Iteration
from cosim.master.master import FixedStepMaster, Plan, _no_exchange


def converged(outputs: np.ndarray, residual: np.ndarray, tolerance: float) -> bool:
    """Every residual within ``tolerance`` × max(1, |output|)."""
    return bool(np.all(np.abs(residual) <= tolerance * np.maximum(1.0, np.abs(outputs))))


class Constant:
    """g + ω r."""

    def __init__(self, relaxation: float):
        self.relaxation = relaxation

    def update(self, guess: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        return guess + self.relaxation * (outputs - guess)


class Aitken:
    """g + ω_k r, ω_k from the last two residuals (the first: ``relaxation``)."""

    def __init__(self, relaxation: float):
        self.omega, self.previous = relaxation, None

    def update(self, guess: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        residual = outputs - guess
        if self.previous is not None:
            change = residual - self.previous
            denominator = float(change @ change)
            if denominator > 0.0:
                self.omega = -self.omega * float(self.previous @ change) / denominator
        self.previous = residual
        return guess + self.omega * residual


class QuasiNewton:
    """IQN-ILS: g = y_k + W α, α = argmin |V α + r_k| over this step's iterations."""

    def __init__(self, relaxation: float):
        self.relaxation = relaxation
        self.residuals: list[np.ndarray] = []
        self.outputs: list[np.ndarray] = []

    def update(self, guess: np.ndarray, outputs: np.ndarray) -> np.ndarray:
        residual = outputs - guess
        self.residuals.append(residual)
        self.outputs.append(outputs.copy())
        if len(self.residuals) == 1:
            return guess + self.relaxation * residual
        v = np.column_stack([self.residuals[-1] - r for r in self.residuals[:-1]])
        w = np.column_stack([self.outputs[-1] - y for y in self.outputs[:-1]])
        alpha = np.linalg.lstsq(v, -residual, rcond=1e-12)[0]
        return outputs + w @ alpha


ACCELERATIONS: dict[str, Callable[[float], object]] = {
    "constant": Constant, "aitken": Aitken, "iqn-ils": QuasiNewton}


class IterativeMaster(FixedStepMaster):
    """``FixedStepMaster``'s grid, events and stage loop, each step iterated to convergence."""

    def __init__(self, system: System, plan: Plan, start: float, step_size: float,
                 exchange: Callable[[int], None] = _no_exchange, time_every: int = 16,
                 position: memoryview | None = None, *, iteration: Iteration):
        super().__init__(system, plan, start, step_size, exchange, time_every, position)
        if len(system.local) < len(system.layout.instances):
            raise SimulationError("iterative coupling (simulation.iteration) runs in one "
                                  "process for now: run this scenario without mpiexec")
        graph = system.graph
        for name in system.local:
            fmu = graph.fmu(name)
            if not (fmu.can_get_and_set_state and fmu.can_serialize_state):
                raise SimulationError(
                    "iterative coupling repeats every step, and this FMU cannot get and set "
                    "its state (canGetAndSetFMUstate / canSerializeFMUstate false): leave "
                    "simulation.iteration out, or use an FMU that can", instance=name)
        self.iteration = iteration
        slots = {slot for c in graph.connections()
                 if graph.fmu(c.source).variables[c.output].type in FLOAT64_TYPES
                 for slot in system.layout.indices(c.source, c.output)}
        self.slots = np.array(sorted(slots), dtype=np.intp)
        self.log = MasterLog(instance_steps=dict.fromkeys(system.local, 0))

    def advance(self, time: float, until: float) -> float:
        """One step from ``time``, repeated until the coupling values agree."""
        reached, step, n = self._next_point(time)
        stages = self._timed[2] if n % self.time_every == 0 else self._plain[2]
        signals, slots, control = self.system.signals, self.slots, self.iteration
        acceleration = ACCELERATIONS[control.method](control.relaxation)
        self.system.keep()
        guess = signals[slots].copy()
        for count in range(1, control.max_iterations + 1):
            signals[slots] = guess
            self._run(stages, time, step)
            for name in self.log.instance_steps:
                self.log.instance_steps[name] += 1
            outputs = signals[slots]
            residual = outputs - guess
            if converged(outputs, residual, control.tolerance) or not len(slots):
                break
            if count == control.max_iterations or not np.all(np.isfinite(outputs)):
                self._not_converged(reached, outputs, residual, count)
            guess = acceleration.update(guess, outputs.copy())
            self.system.return_to_kept()
            self.ended.clear()
        if not math.isfinite(signals.dot(self._ones)):
            self._check_finite(reached)
        log = self.log
        log.times.append(reached)
        log.sizes.append(step)
        log.errors.append(float(np.max(np.abs(residual))) if len(slots) else 0.0)
        log.reasons.append(EVENT if step != self.step_size else FIXED)
        log.iterations.append(count)
        return reached

    def _not_converged(self, time: float, outputs: np.ndarray, residual: np.ndarray,
                       count: int) -> None:
        worst = int(np.argmax(np.where(np.isfinite(residual), np.abs(residual), np.inf)))
        slot = int(self.slots[worst])
        layout = self.system.layout
        name, variable = next((n, v) for n in layout.instances
                              for v, at in layout.offsets[n].items() if at == slot)
        raise SimulationError(
            f"the coupling did not converge in {count} iterations "
            f"({self.iteration.method}): {name}.{variable} = {outputs[worst]:.6g} differs by "
            f"{abs(residual[worst]):.3g} from the value it was computed with (tolerance "
            f"{self.iteration.tolerance:g}); try simulation.iteration.method: iqn-ils or "
            "aitken, a smaller relaxation or more max_iterations", instance=name, time=time)
