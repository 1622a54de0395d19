"""Ventricular myocyte under the pacing electrode: Mitchell–Schaeffer (2003) membrane model.

    dv/dt = h v² (1 − v) / τ_in − v / τ_out + J_stim + (g_load / C_m) (v_tissue − v)
    dh/dt = (1 − h) / τ_open   if v < v_gate,   −h / τ_close   otherwise
    V = V_rest + (V_peak − V_rest) v,   J_stim = I_stim / (C_m (V_peak − V_rest))

Time inside the model is in ms; the FMU's communication time is in s. The stimulus current
``I_stim`` (µA/cm², > 0 depolarising) is applied for ``stim_width`` ms from the start of the
step; ``V_tissue`` is the potential of the surrounding tissue node, which loads the cell through
``g_load``. Capture is not a rule: it is whether the membrane fires.

Calibrated for capture (docs/models/cell.md): τ_in and τ_out are the paper's 0.3 and 6 ms
divided by 37.5 (same ratio, hence the same h_min = 4 τ_in/τ_out; v runs 37.5× faster) and
g_load is the electrotonic load of the surrounding myocardium; together they set the
strength–duration chronaxie (≈ 0.36 ms with the lead). The gate keeps the tissue's constants,
but the cell is no longer identical to a tissue node.

Numerics: Rosenbrock–Euler (exponential Euler with the exact ∂f/∂v) for v, with substeps
limited so that the step's change |Δv| = |f| (e^(a dt) − 1)/a ≤ DV_MAX (a = ∂f/∂v; the bound
holds by construction, also near threshold where f ≈ 0 and a > 0) and |Δh| ≤ DH_MAX, and the
stimulus's end hit exactly; exact exponential update of h over each substep.
"""

import math

from pythonfmu import Fmi2Causality, Fmi2Initial, Fmi2Slave, Fmi2Variability, Integer, Real

PARAMETERS = {  # name: (default, unit, description)
    "tau_in": (0.027, "ms", "inward (depolarising) current time constant (calibrated)"),
    "tau_out": (0.54, "ms", "outward (repolarising) current time constant (calibrated)"),
    "tau_open": (120.0, "ms", "gate recovery time constant"),
    "tau_close": (185.0, "ms", "gate closing time constant (human APD calibration)"),
    "v_gate": (0.13, "1", "gate switching threshold (dimensionless)"),
    "V_rest": (-85.0, "mV", "resting membrane potential"),
    "V_peak": (40.0, "mV", "potential at v = 1 (calibrated: overshoot)"),
    "C_m": (1.0, "uF/cm**2", "membrane capacitance"),
    "g_load": (6.0, "mS/cm**2", "electrotonic load of the surrounding tissue (calibrated)"),
    "V_capture_threshold": (-40.0, "mV", "an upstroke crossing this potential is a beat"),
}
DV_MAX = 0.01  # largest change of v in one substep (1 mV at the defaults)
DH_MAX = 0.01  # largest change of h in one substep
DT_MAX = 1.0  # ms: longest substep


def phi1(z: float) -> float:
    """(e^z − 1)/z, the growth of a Rosenbrock–Euler step (1 + z/2 near 0)."""
    return math.expm1(z) / z if abs(z) > 1e-9 else 1.0 + 0.5 * z


class Cell(Fmi2Slave):
    author = "cosim"
    description = "Mitchell-Schaeffer ventricular myocyte under the pacing electrode"

    UNITS = {name: unit for name, (_, unit, _) in PARAMETERS.items() if unit != "1"}
    UNITS.update({"I_stim": "uA/cm**2", "stim_width": "ms", "V_tissue": "mV", "V": "mV",
                  "activation_time": "s", "apd90": "ms"})
    OUTPUT_DEPENDENCIES = {"V": [], "v": [], "h": [], "captured": [], "activation_time": [],
                           "beat_count": [], "apd90": []}
    CAN_GET_AND_SET_STATE = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name, (default, _, text) in PARAMETERS.items():
            setattr(self, name, default)
            self.register_variable(Real(name, causality=Fmi2Causality.parameter,
                                        variability=Fmi2Variability.fixed, description=text))
        self.I_stim = 0.0
        self.stim_width = 0.0
        self.V_tissue = -85.0
        for name, text in (("I_stim", "stimulus current density, > 0 depolarises"),
                           ("stim_width", "stimulus duration from the step start (<= 0: step)"),
                           ("V_tissue", "potential of the surrounding tissue node")):
            self.register_variable(Real(name, causality=Fmi2Causality.input, description=text))
        self.v, self.h = 0.0, 1.0
        self.V = -85.0
        self.captured = 0
        self.beat_count = 0
        self.activation_time = -1.0
        self.apd90 = 0.0
        outputs = (("V", "membrane potential"), ("v", "dimensionless potential"),
                   ("h", "inactivation gate"), ("activation_time", "time of the last upstroke"),
                   ("apd90", "APD90 of the last completed action potential"))
        for name, text in outputs:
            self.register_variable(Real(name, causality=Fmi2Causality.output,
                                        initial=Fmi2Initial.calculated, description=text))
        for name, text in (("captured", "1 in a step where the membrane fired, else 0"),
                           ("beat_count", "number of upstrokes so far")):
            self.register_variable(Integer(name, causality=Fmi2Causality.output,
                                           variability=Fmi2Variability.discrete,
                                           initial=Fmi2Initial.calculated, description=text))
        self._upstroke_ms = None  # time of the current AP's upstroke (ms), None at rest
        self._peak = 0.0

    def exit_initialization_mode(self):
        if self.tau_in <= 0 or self.tau_out <= 0 or self.tau_open <= 0 or self.tau_close <= 0:
            raise ValueError("time constants must be positive")
        self.V = self.V_rest + (self.V_peak - self.V_rest) * self.v

    def do_step(self, current_time, step_size):
        span = self.V_peak - self.V_rest
        t = current_time * 1000.0
        end = t + step_size * 1000.0
        j_stim = self.I_stim / (self.C_m * span)
        stim_end = t + self.stim_width if 0.0 < self.stim_width < end - t else end
        if self.I_stim == 0.0:
            stim_end = t
        k_in, k_out = 1.0 / self.tau_in, 1.0 / self.tau_out
        load = self.g_load / self.C_m
        v_tissue = (self.V_tissue - self.V_rest) / span
        v, h = self.v, self.h
        threshold = (self.V_capture_threshold - self.V_rest) / span
        captured = 0
        if stim_end == t and v < 1e-7 and abs(v_tissue) < 1e-7:  # at rest: exact, one go
            dt = end - t
            h = 1.0 - (1.0 - h) * math.exp(-dt / self.tau_open)
            v *= math.exp(-dt / self.tau_out)
            t = end
        while t < end - 1e-12:
            stimulating = t < stim_end
            edge = stim_end if stimulating else end  # the pulse's end is hit exactly
            # Rosenbrock–Euler: v += dt φ1(dt a) f(v), a = ∂f/∂v at the substep's start
            f = h * v * v * (1.0 - v) * k_in - v * k_out + load * (v_tissue - v)
            if stimulating:
                f += j_stim
            a = h * v * (2.0 - 3.0 * v) * k_in - k_out - load
            dt = min(DT_MAX, edge - t)
            if abs(f) * dt * phi1(a * dt) > DV_MAX:  # |Δv| = |f| (e^(a dt) − 1)/a ≤ DV_MAX:
                ratio = DV_MAX * a / abs(f)  # the largest such dt (|Δv| grows with dt)
                if ratio > -1.0:
                    dt = min(dt, math.log1p(ratio) / a if a != 0.0 else DV_MAX / abs(f))
            rate = (1.0 - h) / self.tau_open if v < self.v_gate else h / self.tau_close
            if rate * dt > DH_MAX:
                dt = DH_MAX / rate
            v_new = v + dt * f * phi1(a * dt)
            if v < self.v_gate:
                h = 1.0 - (1.0 - h) * math.exp(-dt / self.tau_open)
            else:
                h *= math.exp(-dt / self.tau_close)
            t = edge if edge - t - dt < 1e-12 else t + dt
            if v < threshold <= v_new and self._upstroke_ms is None:
                self._upstroke_ms = t - dt * (v_new - threshold) / (v_new - v)
                self._peak = v_new
                captured = 1
                self.beat_count += 1
                self.activation_time = self._upstroke_ms / 1000.0
            if self._upstroke_ms is not None:
                self._peak = max(self._peak, v_new)
                level = 0.1 * self._peak
                if v_new < level <= v and t - self._upstroke_ms > 20.0:
                    crossing = t - dt * (level - v_new) / (v - v_new)
                    self.apd90 = crossing - self._upstroke_ms
                    self._upstroke_ms = None
            v = v_new
        self.v, self.h = v, h
        self.V = self.V_rest + span * v
        self.captured = captured
        return True

    def _get_fmu_state(self):
        return {"v": self.v, "h": self.h, "V": self.V, "captured": self.captured,
                "beat_count": self.beat_count, "activation_time": self.activation_time,
                "apd90": self.apd90, "upstroke": self._upstroke_ms, "peak": self._peak,
                "I_stim": self.I_stim, "stim_width": self.stim_width, "V_tissue": self.V_tissue}

    def _set_fmu_state(self, state):
        self.v, self.h, self.V = state["v"], state["h"], state["V"]
        self.captured, self.beat_count = state["captured"], state["beat_count"]
        self.activation_time, self.apd90 = state["activation_time"], state["apd90"]
        self._upstroke_ms, self._peak = state["upstroke"], state["peak"]
        self.I_stim, self.stim_width = state["I_stim"], state["stim_width"]
        self.V_tissue = state["V_tissue"]
