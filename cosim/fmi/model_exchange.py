"""Model Exchange FMUs (FMI 2.0 and 3.0) as co-simulation instances, integrated by a solver.

``ModelExchange`` has the methods of ``cosim.fmi.fmu.Instance``; its ``do_step(t, h)`` integrates
the FMU's continuous states from t to t + h with its inputs held (zero-order hold, as every
co-simulation FMU sees them), handling on the way

- **state events**: a sign change of an event indicator, located by the solver's root finding
  (CVode: to its root tolerance; Euler: to the end of the substep where it happened);
- **time events**: the ``nextEventTime`` the FMU announced; the solver stops exactly there;
- **step events**: ``completedIntegratorStep`` asking for event mode (after each solver return);

each by event mode (``EnterEventMode``, ``NewDiscreteStates``/``UpdateDiscreteStates`` until no
discrete state changes, ``EnterContinuousTimeMode``) and a solver restart. A new input value
is a discontinuity too: the solver restarts at the communication point (a discrete input is set
in event mode). The FMU is an ``Instance`` (FMI 2) or ``Instance3`` (FMI 3) instantiated for
model exchange; the version-specific calls are in ``_Calls2`` and ``_Calls3``, named as in the
standard.

Solvers (``Solver``, scenario key ``instances.<name>.solver``): ``cvode`` — SUNDIALS CVODE as
shipped by fmpy (BDF, Newton with a dense linear solver, variable step, root finding), with
``relative_tolerance`` and ``absolute_tolerance`` (scaled by each state's nominal value) and
``max_step``; ``euler`` — explicit Euler with fixed substeps of ``max_step`` (default: a tenth of
the communication step), for cheap non-stiff models.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

from cosim.errors import SimulationError
from cosim.fmi.fmu import FMU, MODEL_EXCHANGE, Instance

METHODS = ("cvode", "euler")
MAX_EVENT_ITERATIONS = 100
MAX_SOLVER_STEPS = 100_000  # CVode steps within one communication step


@dataclass(frozen=True)
class Solver:
    """How a model exchange instance is integrated over each communication step."""

    method: str = "cvode"
    relative_tolerance: float = 1e-6
    absolute_tolerance: float = 1e-10  # times each state's nominal value
    max_step: float | None = None  # s; None: the communication step (euler: a tenth of it)


class ModelExchange:
    """A model exchange FMU behind the ``Instance`` interface (see the module docstring)."""

    def __init__(self, fmu: FMU, name: str, solver: Solver | None = None):
        if fmu.fmi3:
            from cosim.fmi.fmi3 import Instance3

            self.model: Instance = Instance3(fmu, name, MODEL_EXCHANGE)
            self.calls: _Calls2 | _Calls3 = _Calls3(self.model)
        else:
            self.model = Instance(fmu, name, MODEL_EXCHANGE)
            self.calls = _Calls2(self.model)
        self.fmu, self.name = fmu, name
        self.solver = solver or Solver()
        self.time: float | None = None
        self.next_time_event: float | None = None
        self.events = {"state": 0, "time": 0, "step": 0, "input": 0}  # handled so far
        self._integrator: _CVode | _Euler | None = None
        self._restart = True
        md = fmu.description
        self.needs_completed_step = bool(md.modelExchange.needsCompletedIntegratorStep) or (
            fmu.fmi3 and not md.modelExchange.completedIntegratorStepNotNeeded)
        self.states, self.indicators = md.numberOfContinuousStates, md.numberOfEventIndicators
        self._discrete_inputs = False

    # -- what the master reads ---------------------------------------------------------------
    @property
    def phase(self) -> str:
        return self.model.phase

    @property
    def log(self):
        return self.model.log

    @log.setter
    def log(self, log) -> None:  # the isolation child taps an instance's log
        self.model.log = log

    @property
    def messages(self):
        return self.model.messages

    # -- lifecycle ---------------------------------------------------------------------------
    def instantiate(self) -> None:
        self.model.instantiate()

    def setup_experiment(self, start: float, stop: float | None = None) -> None:
        self.model.setup_experiment(start, stop)
        self.time = start

    def enter_initialization_mode(self) -> None:
        self.model.enter_initialization_mode()

    def exit_initialization_mode(self) -> None:
        """Leave initialisation (the FMU is then in event mode), settle the initial event,
        enter continuous-time mode."""
        self.model.exit_initialization_mode()
        self._settle_event(self.time, None)

    def terminate(self) -> None:
        self.model.terminate()

    def free(self) -> None:
        self._integrator = None
        self.model.free()

    def close(self) -> None:
        self._integrator = None
        self.model.close()

    # -- values --------------------------------------------------------------------------------
    def set(self, values) -> None:
        self.model.set(values)
        self._restart = True

    def get(self, names):
        return self.model.get(names)

    def bind(self, inputs, outputs, output_buffer: np.ndarray) -> np.ndarray:
        self._input_values = self.model.bind(inputs, outputs, output_buffer)
        self._inputs_set = np.full(len(self._input_values), np.nan)
        self._discrete_inputs = any(self.fmu.variables[n].variability == "discrete"
                                    for n in inputs)
        return self._input_values

    def set_inputs(self) -> None:
        """Set the inputs when they changed (the solver then restarts: a discontinuity); a
        discrete input changes only in event mode (an input event)."""
        if np.array_equal(self._input_values, self._inputs_set):
            return
        self._inputs_set[:] = self._input_values
        if self._discrete_inputs and self.phase == "stepping":
            self.calls.enter_event_mode()
            self.model.set_inputs()
            self.events["input"] += 1
            self._settle_event(self.time, None)
        else:
            self.model.set_inputs()
        self._restart = True

    def get_outputs(self) -> None:
        self.model.get_outputs()

    def get_state(self):
        return self.model.get_state()

    def set_state(self, state) -> None:
        self.model.set_state(state)
        self._restart = True

    def free_state(self, state) -> None:
        self.model.free_state(state)

    # -- integration ---------------------------------------------------------------------------
    def do_step(self, time: float, step: float) -> None:
        """Integrate from ``time`` to ``time + step``, handling every event on the way."""
        end = time + step
        tiny = 1e-12 * max(1.0, abs(end))
        if self._integrator is None:
            self._integrator = (_Euler if self.solver.method == "euler" else _CVode)(
                self, step)
            self._restart = False
        elif self._restart:
            self._integrator.restart(time)
            self._restart = False
        now = time
        while now < end - tiny or (self.next_time_event is not None
                                   and abs(self.next_time_event - now) <= tiny):
            target = end
            timed = self.next_time_event is not None and self.next_time_event < end + tiny
            if timed:  # a time event at the step's end is handled there (as co-simulation does)
                target = min(max(self.next_time_event, now), end)
            now, root = self._integrator.advance(now, target)
            self.calls.set_time(now)
            self._integrator.write_states()
            step_event = False
            if self.needs_completed_step:
                step_event, terminate = self.calls.completed_integrator_step()
                self._stop_if(terminate, now)
            time_event = timed and now >= target - tiny
            if root or time_event or step_event:
                self.events["state" if root else "time" if time_event else "step"] += 1
                self.calls.enter_event_mode()
                self._settle_event(now, self._integrator)
        self.model.time = self.time = end

    def _settle_event(self, time: float, integrator) -> None:
        """In event mode: update discrete states until they settle, then continuous-time
        mode; the solver restarts from the states the event left."""
        for _ in range(MAX_EVENT_ITERATIONS):
            need, terminate, next_time = self.calls.update_discrete_states()
            self._stop_if(terminate, time)
            if not need:
                break
        else:
            raise SimulationError(f"the event did not settle after {MAX_EVENT_ITERATIONS} "
                                  "updates of the discrete states", instance=self.name,
                                  function=self.calls.UPDATE, time=time, log=list(self.log))
        self.next_time_event = next_time
        self.calls.enter_continuous_time_mode()
        if integrator is not None:
            integrator.restart(time)

    def _stop_if(self, terminate: bool, time: float) -> None:
        if terminate:
            raise SimulationError(f"the FMU asked to end the simulation (terminateSimulation) "
                                  f"at t = {time:.9g} s", instance=self.name, time=time,
                                  log=list(self.log))


class _Calls2:
    """The FMI 2.0 model exchange calls, through the instance's status choke point."""

    UPDATE = "fmi2NewDiscreteStates"

    def __init__(self, model: Instance):
        self.model = model

    def _call(self, function: str, *args) -> None:
        self.model._check(function, self.model._fn[function](self.model._component, *args))

    def set_time(self, time: float) -> None:
        self._call("fmi2SetTime", time)

    def set_states(self, x, n: int) -> None:
        self._call("fmi2SetContinuousStates", x, n)

    def get_states(self, x, n: int) -> None:
        self._call("fmi2GetContinuousStates", x, n)

    def derivatives(self, dx, n: int) -> None:
        self._call("fmi2GetDerivatives", dx, n)

    def indicators(self, z, n: int) -> None:
        self._call("fmi2GetEventIndicators", z, n)

    def nominals(self, x, n: int) -> None:
        self._call("fmi2GetNominalsOfContinuousStates", x, n)

    def enter_event_mode(self) -> None:
        self._call("fmi2EnterEventMode")

    def enter_continuous_time_mode(self) -> None:
        self._call("fmi2EnterContinuousTimeMode")

    def update_discrete_states(self) -> tuple[bool, bool, float | None]:
        from fmpy.fmi2 import fmi2EventInfo

        info = fmi2EventInfo()
        self._call("fmi2NewDiscreteStates", ctypes.byref(info))
        return (bool(info.newDiscreteStatesNeeded), bool(info.terminateSimulation),
                info.nextEventTime if info.nextEventTimeDefined else None)

    def completed_integrator_step(self) -> tuple[bool, bool]:
        enter, terminate = ctypes.c_int(), ctypes.c_int()
        self._call("fmi2CompletedIntegratorStep", 1, ctypes.byref(enter),
                   ctypes.byref(terminate))
        return bool(enter.value), bool(terminate.value)


class _Calls3(_Calls2):
    """The FMI 3.0 model exchange calls (same roles, fmi3 names and signatures)."""

    UPDATE = "fmi3UpdateDiscreteStates"

    def set_time(self, time: float) -> None:
        self._call("fmi3SetTime", time)

    def set_states(self, x, n: int) -> None:
        self._call("fmi3SetContinuousStates", x, n)

    def get_states(self, x, n: int) -> None:
        self._call("fmi3GetContinuousStates", x, n)

    def derivatives(self, dx, n: int) -> None:
        self._call("fmi3GetContinuousStateDerivatives", dx, n)

    def indicators(self, z, n: int) -> None:
        self._call("fmi3GetEventIndicators", z, n)

    def nominals(self, x, n: int) -> None:
        self._call("fmi3GetNominalsOfContinuousStates", x, n)

    def enter_event_mode(self) -> None:
        self._call("fmi3EnterEventMode")

    def enter_continuous_time_mode(self) -> None:
        self._call("fmi3EnterContinuousTimeMode")

    def update_discrete_states(self) -> tuple[bool, bool, float | None]:
        need, terminate, nominals, values, defined = (ctypes.c_bool() for _ in range(5))
        next_time = ctypes.c_double()
        self._call("fmi3UpdateDiscreteStates", *(ctypes.byref(x) for x in (
            need, terminate, nominals, values, defined, next_time)))
        return need.value, terminate.value, next_time.value if defined.value else None

    def completed_integrator_step(self) -> tuple[bool, bool]:
        enter, terminate = ctypes.c_bool(), ctypes.c_bool()
        self._call("fmi3CompletedIntegratorStep", True, ctypes.byref(enter),
                   ctypes.byref(terminate))
        return enter.value, terminate.value


def _pointer(array: np.ndarray):
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_double))


class _Euler:
    """Explicit Euler with fixed substeps; a state event is found at the end of the substep
    in which an event indicator changed sign."""

    def __init__(self, me: ModelExchange, step: float):
        self.me, self.calls = me, me.calls
        self.h = me.solver.max_step or step / 10
        self.x, self.dx = np.zeros(me.states), np.zeros(me.states)
        self.z, self.z_before = np.zeros(me.indicators), np.zeros(me.indicators)
        self.restart(me.time)

    def restart(self, time: float) -> None:
        if len(self.x):
            self.calls.get_states(_pointer(self.x), len(self.x))
        if len(self.z):
            self.calls.indicators(_pointer(self.z), len(self.z))

    def write_states(self) -> None:
        if len(self.x):
            self.calls.set_states(_pointer(self.x), len(self.x))

    def advance(self, now: float, target: float) -> tuple[float, bool]:
        calls = self.calls
        while now < target:
            h = min(self.h, target - now)
            if len(self.x):
                calls.derivatives(_pointer(self.dx), len(self.x))
                self.x += h * self.dx
            now = target if target - now <= self.h else now + h
            calls.set_time(now)
            self.write_states()
            if len(self.z):
                self.z_before[:] = self.z
                calls.indicators(_pointer(self.z), len(self.z))
                if np.any(np.signbit(self.z) != np.signbit(self.z_before)):
                    return now, True
        return now, False


class _CVode:
    """SUNDIALS CVODE through fmpy's bindings (BDF, dense Newton, root finding). Its callbacks
    keep the first exception and return -1, so CVode stops and the error is raised here."""

    def __init__(self, me: ModelExchange, step: float):
        from fmpy.sundials import (
            CV_BDF,
            NV_DATA_S,
            SUN_COMM_NULL,
            N_VNew_Serial,
            SUNContext,
            SUNContext_Create,
            SUNDenseMatrix,
            SUNLinSol_Dense,
        )
        from fmpy.sundials.cvode import (
            CVodeCreate,
            CVodeInit,
            CVodeRootInit,
            CVodeSetMaxNumSteps,
            CVodeSetMaxStep,
            CVodeSetNoInactiveRootWarn,
            CVodeSVtolerances,
            CVRhsFn,
            CVRootFn,
        )
        from fmpy.sundials.cvode_ls import CVodeSetLinearSolver

        self.me, self.calls = me, me.calls
        solver = me.solver
        self.n = max(me.states, 1)  # CVode needs a state: a dummy one when the FMU has none
        self.error: BaseException | None = None
        self.context = SUNContext()
        self._ok(SUNContext_Create(SUN_COMM_NULL, ctypes.byref(self.context)), "SUNContext")
        self.y = N_VNew_Serial(self.n, self.context)
        self.abstol = N_VNew_Serial(self.n, self.context)
        self._data = NV_DATA_S
        self.values = np.ctypeslib.as_array(NV_DATA_S(self.y), (self.n,))
        tolerances = np.ctypeslib.as_array(NV_DATA_S(self.abstol), (self.n,))
        tolerances[:] = 1.0
        if me.states:
            self.calls.nominals(NV_DATA_S(self.abstol), self.n)
        tolerances *= solver.absolute_tolerance
        self._read_states()
        self.memory = CVodeCreate(CV_BDF, self.context)
        self._rhs, self._roots = CVRhsFn(self._derivatives), CVRootFn(self._indicators)
        self._ok(CVodeInit(self.memory, self._rhs, me.time, self.y), "CVodeInit")
        self._ok(CVodeSVtolerances(self.memory, solver.relative_tolerance, self.abstol),
                 "CVodeSVtolerances")
        self._ok(CVodeRootInit(self.memory, me.indicators, self._roots), "CVodeRootInit")
        self.matrix = SUNDenseMatrix(self.n, self.n, self.context)
        self.linear = SUNLinSol_Dense(self.y, self.matrix, self.context)
        self._ok(CVodeSetLinearSolver(self.memory, self.linear, self.matrix),
                 "CVodeSetLinearSolver")
        self._ok(CVodeSetMaxStep(self.memory, solver.max_step or step), "CVodeSetMaxStep")
        self._ok(CVodeSetMaxNumSteps(self.memory, MAX_SOLVER_STEPS), "CVodeSetMaxNumSteps")
        self._ok(CVodeSetNoInactiveRootWarn(self.memory), "CVodeSetNoInactiveRootWarn")
        library = _cvode_library()
        self._set_stop_time = library.CVodeSetStopTime
        self._set_stop_time.argtypes = [ctypes.c_void_p, ctypes.c_double]

    def __del__(self) -> None:
        from fmpy.sundials.cvode import CVodeFree

        if getattr(self, "memory", None):
            CVodeFree(ctypes.byref(ctypes.c_void_p(self.memory)))

    def _read_states(self) -> None:
        if self.me.states:
            self.calls.get_states(self._data(self.y), self.n)
        else:
            self.values[:] = 1.0

    def restart(self, time: float) -> None:
        from fmpy.sundials.cvode import CVodeReInit

        self._read_states()
        self._ok(CVodeReInit(self.memory, time, self.y), "CVodeReInit")

    def write_states(self) -> None:
        if self.me.states:
            self.calls.set_states(self._data(self.y), self.n)

    def advance(self, now: float, target: float) -> tuple[float, bool]:
        from fmpy.sundials.cvode import CV_NORMAL, CV_ROOT_RETURN, CVode

        reached = ctypes.c_double(now)
        self._set_stop_time(self.memory, target)
        flag = CVode(self.memory, target, self.y, ctypes.byref(reached), CV_NORMAL)
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        if flag < 0:
            raise SimulationError(
                f"the solver (CVode) failed with flag {flag} between t = {now:.9g} and "
                f"{target:.9g} s; try a smaller max_step or looser tolerances",
                instance=self.me.name, time=reached.value, log=list(self.me.log))
        return reached.value, flag == CV_ROOT_RETURN

    def _derivatives(self, t, y, ydot, user_data) -> int:
        try:
            self.calls.set_time(t)
            if self.me.states:
                self.calls.set_states(self._data(y), self.n)
                self.calls.derivatives(self._data(ydot), self.n)
            else:
                np.ctypeslib.as_array(self._data(ydot), (1,))[:] = 0.0
            return 0
        except BaseException as error:  # noqa: BLE001 - raised again after CVode returns
            self.error = self.error or error
            return -1

    def _indicators(self, t, y, gout, user_data) -> int:
        try:
            self.calls.set_time(t)
            if self.me.states:
                self.calls.set_states(self._data(y), self.n)
            self.calls.indicators(gout, self.me.indicators)
            return 0
        except BaseException as error:  # noqa: BLE001 - raised again after CVode returns
            self.error = self.error or error
            return -1

    def _ok(self, flag: int, function: str) -> None:
        if flag != 0:
            raise SimulationError(f"{function} failed (flag {flag}) setting up the solver",
                                  instance=self.me.name, log=list(self.me.log))


def _cvode_library() -> Any:
    from fmpy.sundials.cvode import sundials_cvode

    return sundials_cvode
