"""A blood-pressure monitor: the mean arterial pressure over the last seconds, and an alarm.

    dP_mean/dt = (P - P_mean) / tau        alarm = 1 while P_mean < threshold

``P`` is held over each communication step (zero-order hold), so the step is solved exactly:
``P_mean += (1 - exp(-h / tau)) (P - P_mean)``. The tutorial's Python model
(docs/tutorial.md): how a model of your own joins the library's FMUs through pythonfmu.
"""

import math

from pythonfmu import Fmi2Causality, Fmi2Initial, Fmi2Slave, Fmi2Variability, Integer, Real


class Monitor(Fmi2Slave):
    author = "cosim tutorial"
    description = "Mean arterial pressure (first-order low-pass) with a hypotension alarm"

    UNITS = {"P": "mmHg", "P_mean": "mmHg", "tau": "s", "threshold": "mmHg", "P0": "mmHg"}
    OUTPUT_DEPENDENCIES = {"P_mean": [], "alarm": []}  # outputs come from the state only

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tau, self.threshold, self.P0 = 2.0, 65.0, 90.0
        self.P, self.P_mean, self.alarm = 90.0, 90.0, 0
        fixed = {"causality": Fmi2Causality.parameter, "variability": Fmi2Variability.fixed}
        self.register_variable(Real("tau", description="averaging time constant", **fixed))
        self.register_variable(Real("threshold", description="alarm below this mean", **fixed))
        self.register_variable(Real("P0", description="mean pressure at the start", **fixed))
        self.register_variable(Real("P", causality=Fmi2Causality.input,
                                    description="arterial pressure"))
        self.register_variable(Real("P_mean", causality=Fmi2Causality.output,
                                    initial=Fmi2Initial.calculated,
                                    description="mean arterial pressure"))
        self.register_variable(Integer("alarm", causality=Fmi2Causality.output,
                                       variability=Fmi2Variability.discrete,
                                       initial=Fmi2Initial.calculated,
                                       description="1 while the mean is below threshold"))

    def exit_initialization_mode(self):
        self.P_mean = self.P0
        self.alarm = int(self.P_mean < self.threshold)

    def do_step(self, current_time, step_size):
        self.P_mean += (1.0 - math.exp(-step_size / self.tau)) * (self.P - self.P_mean)
        self.alarm = int(self.P_mean < self.threshold)
        return True
