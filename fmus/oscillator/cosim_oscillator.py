"""A damped mass on a spring, coupled to a neighbour through a second spring.

    m x'' = -k x - c x' + k_c (x_other - x)

``x_other`` is an input held constant over each communication step (zero-order hold); the
step is solved exactly with the matrix exponential of the augmented linear system, so the
only error in a coupled run is the coupling error. Used to verify the master algorithms
against a monolithic solution.
"""

import numpy as np
from pythonfmu import Fmi2Causality, Fmi2Initial, Fmi2Slave, Fmi2Variability, Real
from scipy.linalg import expm

PARAMETERS = {"m": "mass", "k": "spring constant to the wall", "c": "damping coefficient",
              "k_c": "coupling spring constant to the neighbour", "x0": "initial position",
              "v0": "initial velocity"}


class Oscillator(Fmi2Slave):
    author = "cosim"
    description = "Mass-spring-damper coupled to a neighbour by a spring (exact step)"

    UNITS = {"x": "m", "v": "m/s", "x_other": "m", "m": "kg", "k": "N/m", "c": "N*s/m",
             "k_c": "N/m", "x0": "m", "v0": "m/s"}
    OUTPUT_DEPENDENCIES = {"x": [], "v": []}
    CAN_GET_AND_SET_STATE = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.m = 1.0
        self.k = 1.0
        self.c = 0.0
        self.k_c = 0.5
        self.x0 = 1.0
        self.v0 = 0.0
        self.x_other = 0.0
        self.x = 1.0
        self.v = 0.0
        self._cache = (None, None)
        for name, description in PARAMETERS.items():
            self.register_variable(Real(name, causality=Fmi2Causality.parameter,
                                        variability=Fmi2Variability.fixed,
                                        description=description))
        self.register_variable(Real("x_other", causality=Fmi2Causality.input,
                                    description="position of the coupled mass"))
        self.register_variable(Real("x", causality=Fmi2Causality.output,
                                    initial=Fmi2Initial.calculated, description="position"))
        self.register_variable(Real("v", causality=Fmi2Causality.output,
                                    initial=Fmi2Initial.calculated, description="velocity"))

    def exit_initialization_mode(self):
        self.x, self.v = self.x0, self.v0

    def _propagator(self, h):
        key, matrix = self._cache
        if key != (h, self.m, self.k, self.c, self.k_c):
            a = np.array([[0.0, 1.0, 0.0],
                          [-(self.k + self.k_c) / self.m, -self.c / self.m, self.k_c / self.m],
                          [0.0, 0.0, 0.0]])
            matrix = expm(a * h)
            self._cache = ((h, self.m, self.k, self.c, self.k_c), matrix)
        return matrix

    def do_step(self, current_time, step_size):
        state = self._propagator(step_size) @ np.array([self.x, self.v, self.x_other])
        self.x, self.v = float(state[0]), float(state[1])
        return True

    def _get_fmu_state(self):
        return {"x": self.x, "v": self.v, "x_other": self.x_other}

    def _set_fmu_state(self, state):
        self.x, self.v, self.x_other = state["x"], state["v"], state["x_other"]
