"""A model that fails on purpose: do_step returns False once t passes ``fail_time``."""

from pythonfmu import Fmi2Causality, Fmi2Slave, Fmi2Variability, Real
from pythonfmu.enums import Fmi2Status


class FailsLater(Fmi2Slave):
    author = "cosim tests"
    description = "Integrates its input; its step fails after fail_time"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.fail_time = 0.3
        self.u = 0.0
        self.y = 0.0
        self.register_variable(Real("fail_time", causality=Fmi2Causality.parameter,
                                    variability=Fmi2Variability.fixed))
        self.register_variable(Real("u", causality=Fmi2Causality.input))
        self.register_variable(Real("y", causality=Fmi2Causality.output))

    def do_step(self, current_time, step_size):
        if current_time >= self.fail_time:
            self.log("the pump model diverged (on purpose)", Fmi2Status.error)
            return False
        self.y += self.u * step_size
        return True
