"""Pacing lead and electrode–tissue interface, with fault modes switched on at a set time.

Circuit for a constant-voltage pulse V of width T (the generator's output):
the lead conductor R_conductor in series with the tissue (spreading) resistance R_tissue and the
electrode interface, a Helmholtz capacitance C_H in parallel with a Faradaic resistance R_F.
With R_s = R_conductor + R_tissue, the interface voltage charges as
    v_c(t) = v_∞ (1 − exp(−t/τ)),  v_∞ = V R_F / (R_s + R_F),  τ = C_H R_s R_F / (R_s + R_F)
and the current is I(t) = (V − v_c(t)) / R_s. An insulation breach adds a shunt R_shunt from
the conductor to the body, which the generator also drives (Thevenin equivalent for the tip).
A pulse longer than the communication step is delivered over several steps: in each, the mean
tip current over that step's part of the pulse, for that part's duration (``stim_width``, from
the step's start). The current density reaching the membrane under the electrode is the tip
current times ``membrane_coupling`` (µA/cm² per mA, calibrated: see docs/models/lead.md);
capture is decided by the cell model, not here. The noise fault draws from SplitMix64 (Steele,
Lea & Flood 2014), the same sequence as the C edition (lead.c).
"""

import math

from pythonfmu import Fmi2Causality, Fmi2Initial, Fmi2Slave, Fmi2Variability, Integer, Real

FAULTS = {0: "none", 1: "conductor fracture", 2: "insulation breach", 3: "exit block",
          4: "dislodgement", 5: "noise"}
PARAMETERS = {  # name: (default, unit, description)
    "R_conductor": (50.0, "ohm", "lead conductor resistance"),
    "R_tissue": (450.0, "ohm", "tissue spreading resistance at the tip"),
    "C_H": (20.0, "uF", "Helmholtz (double-layer) capacitance of the tip"),
    "R_F": (10000.0, "ohm", "Faradaic resistance of the interface"),
    "membrane_coupling": (83.3, "uA/cm**2/mA", "membrane current density per mA of tip current"),
    "sense_gain": (1.0, "1", "fraction of the electrogram reaching the sense amplifier"),
    "fault_time": (1.0e9, "s", "time at which the fault starts"),
    "R_fracture": (5000.0, "ohm", "conductor resistance once fractured"),
    "R_shunt": (120.0, "ohm", "shunt to the body through a breached insulation"),
    "block_factor": (6.0, "1", "exit block: membrane coupling divided by this factor"),
    "dislodged_factor": (0.05, "1", "dislodgement: coupling and sensing multiplied by this"),
    "noise_rate": (15.0, "1/s", "noise: mean rate of spurious spikes"),
    "noise_amplitude": (6.0, "mV", "noise: spike amplitude"),
}
MASK64 = (1 << 64) - 1
PULSE_END = 1e-9  # ms: less of a pulse than this left is none (rounding of summed steps)


def uniform(state: int) -> tuple[int, float]:
    """SplitMix64: (next state, a double uniform in [0, 1)), as lead.c computes it."""
    state = (state + 0x9E3779B97F4A7C15) & MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    z ^= z >> 31
    return state, (z >> 11) * (1.0 / 9007199254740992.0)


class Lead(Fmi2Slave):
    author = "cosim"
    description = "Pacing lead: electrode-tissue interface circuit, sensing path, fault modes"

    UNITS = {name: unit for name, (_, unit, _) in PARAMETERS.items() if unit != "1"}
    UNITS.update({"V_pace_v": "V", "pulse_width_v": "ms", "egm": "mV", "I_stim": "uA/cm**2",
                  "stim_width": "ms", "I_lead": "mA", "charge": "uC", "impedance": "ohm",
                  "V_sense": "mV", "next_event_time": "s"})
    OUTPUT_DEPENDENCIES = {"I_stim": [], "stim_width": [], "I_lead": [], "charge": [],
                           "impedance": [], "V_sense": [], "next_event_time": [],
                           "fault_active": []}
    CAN_GET_AND_SET_STATE = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name, (default, _, text) in PARAMETERS.items():
            setattr(self, name, default)
            self.register_variable(Real(name, causality=Fmi2Causality.parameter,
                                        variability=Fmi2Variability.fixed, description=text))
        self.fault = 0
        self.seed = 1
        self.register_variable(Integer("fault", causality=Fmi2Causality.parameter,
                                       variability=Fmi2Variability.fixed,
                                       description="0 none, 1 conductor fracture, 2 insulation "
                                                   "breach, 3 exit block, 4 dislodgement, "
                                                   "5 noise"))
        self.register_variable(Integer("seed", causality=Fmi2Causality.parameter,
                                       variability=Fmi2Variability.fixed,
                                       description="random seed of the noise fault"))
        self.V_pace_v = 0.0
        self.pulse_width_v = 0.4
        self.egm = 0.0
        for name, text in (("V_pace_v", "pulse amplitude (> 0 in the step a pulse starts)"),
                           ("pulse_width_v", "pulse width"),
                           ("egm", "electrogram at the tip")):
            self.register_variable(Real(name, causality=Fmi2Causality.input, description=text))
        self.I_stim = 0.0
        self.stim_width = 0.0
        self.I_lead = 0.0
        self.charge = 0.0
        self.impedance = PARAMETERS["R_conductor"][0] + PARAMETERS["R_tissue"][0]
        self.V_sense = 0.0
        self.fault_active = 0
        self.next_event_time = 0.0
        self._start = 0.0
        for name, text in (("I_stim", "mean current density delivered to the membrane"),
                           ("stim_width", "duration of I_stim from the step start"),
                           ("I_lead", "leading-edge current of the last pulse"),
                           ("charge", "charge delivered by the last pulse"),
                           ("impedance", "pacing impedance V/I at the leading edge, last pulse"),
                           ("V_sense", "signal at the generator's sense amplifier"),
                           ("next_event_time", "fault_time while a fault is still to start (a "
                            "master lands on it: docs/scenario-format.md, events); else the "
                            "current time")):
            self.register_variable(Real(  # the pulse: discrete, as in lead.c
                name, causality=Fmi2Causality.output, initial=Fmi2Initial.calculated,
                description=text, **({"variability": Fmi2Variability.discrete}
                                     if name in ("I_stim", "stim_width") else {})))
        self.register_variable(Integer("fault_active", causality=Fmi2Causality.output,
                                       variability=Fmi2Variability.discrete,
                                       initial=Fmi2Initial.calculated,
                                       description="1 once the fault has started"))
        self._random_state = 1
        self._pulse = [0.0, 0.0, 0.0]  # the pulse being delivered: volts, width, ms delivered

    def exit_initialization_mode(self):
        if self.fault not in FAULTS:
            raise ValueError(f"unknown fault {self.fault}; known: {FAULTS}")
        if min(self.R_conductor, self.R_tissue, self.C_H, self.R_F) <= 0:
            raise ValueError("circuit elements must be positive")
        self._random_state = self.seed & MASK64
        self._pulse = [0.0, 0.0, 0.0]
        self.impedance = self.R_conductor + self.R_tissue
        self.next_event_time = self.fault_time if self.fault != 0 and \
            self.fault_time > self._start else self._start

    def setup_experiment(self, start_time, stop_time=None, tolerance=None):
        self._start = start_time

    def circuit(self, active: bool) -> tuple[float, float, float, float, float]:
        """(R_conductor, R_shunt or inf, R_tissue, coupling, sense gain) for the fault state."""
        r_cond, shunt, coupling, gain = self.R_conductor, math.inf, self.membrane_coupling, \
            self.sense_gain
        if active:
            if self.fault == 1:
                r_cond = self.R_fracture
            elif self.fault == 2:
                shunt = self.R_shunt
            elif self.fault == 3:
                coupling /= self.block_factor
            elif self.fault == 4:
                coupling *= self.dislodged_factor
                gain *= self.dislodged_factor
        return r_cond, shunt, self.R_tissue, coupling, gain

    def thevenin(self, volts: float, active: bool) -> tuple[float, float, float, float]:
        """(v_th V, r_s Ω, v_inf V, tau ms): the tip circuit a pulse of ``volts`` drives."""
        r_cond, shunt, r_tissue, _, _ = self.circuit(active)
        if math.isinf(shunt):
            v_th, r_th = volts, r_cond
        else:
            v_th, r_th = volts * shunt / (shunt + r_cond), r_cond * shunt / (r_cond + shunt)
        r_s = r_th + r_tissue
        v_inf = v_th * self.R_F / (r_s + self.R_F)
        tau = self.C_H * 1e-6 * r_s * self.R_F / (r_s + self.R_F) * 1000.0  # ms
        return v_th, r_s, v_inf, tau

    def mean_tip(self, volts: float, start: float, end: float, active: bool) -> float:
        """Mean tip current (A) from ``start`` to ``end`` ms into a pulse of ``volts``."""
        v_th, r_s, v_inf, tau = self.thevenin(volts, active)
        length = max(end - start, 1e-6)
        return ((v_th - v_inf) + v_inf * tau / length * (math.exp(-start / tau)
                                                         - math.exp(-end / tau))) / r_s

    def pulse(self, volts: float, width_ms: float, active: bool) -> tuple[float, float, float,
                                                                          float, float]:
        """(impedance Ω, leading-edge mA, mean tip mA, delivered charge µC, tip edge A) of one
        pulse."""
        r_cond, shunt, r_tissue, _, _ = self.circuit(active)
        v_th, r_s, _, _ = self.thevenin(volts, active)
        width = max(width_ms, 1e-6)
        mean_tip = self.mean_tip(volts, 0.0, width, active)
        tip_edge = v_th / r_s
        edge = volts / (r_cond + (r_tissue if math.isinf(shunt)
                                  else shunt * r_tissue / (shunt + r_tissue)))
        impedance = volts / edge
        return impedance, edge * 1000.0, mean_tip * 1000.0, mean_tip * width * 1000.0, tip_edge

    def do_step(self, current_time, step_size):
        active = self.fault != 0 and current_time + step_size > self.fault_time
        self.fault_active = 1 if active else 0
        _, _, _, coupling, gain = self.circuit(active)
        if self.V_pace_v > 0.0 and self.pulse_width_v > 0.0:  # a pulse starts with this step
            impedance, edge, _, charge, _ = self.pulse(self.V_pace_v, self.pulse_width_v, active)
            self.impedance, self.I_lead, self.charge = impedance, edge, charge
            self._pulse = [self.V_pace_v, self.pulse_width_v, 0.0]
        volts, width, elapsed = self._pulse
        if width - elapsed > PULSE_END:  # the pulse, or what remains of it, in this step
            end = width if width - (elapsed + 1000.0 * step_size) < PULSE_END \
                else elapsed + 1000.0 * step_size
            self.I_stim = 1000.0 * self.mean_tip(volts, elapsed, end, active) * coupling
            self.stim_width = end - elapsed
            self._pulse[2] = end
        else:
            self.I_stim = 0.0
            self.stim_width = 0.0
        noise = 0.0
        if active and self.fault == 5:
            self._random_state, draw = uniform(self._random_state)
            if draw < self.noise_rate * step_size:
                self._random_state, sign = uniform(self._random_state)
                noise = self.noise_amplitude * (1.0 if sign < 0.5 else -1.0)
        self.V_sense = gain * self.egm + noise
        end = current_time + step_size
        self.next_event_time = self.fault_time if self.fault != 0 and \
            self.fault_time > end else end
        return True

    def _get_fmu_state(self):
        state = {name: getattr(self, name) for name in (
            "I_stim", "stim_width", "I_lead", "charge", "impedance", "V_sense", "fault_active",
            "next_event_time",
            "V_pace_v", "pulse_width_v", "egm")}
        state["random_state"] = self._random_state
        state["pulse"] = list(self._pulse)
        return state

    def _set_fmu_state(self, state):
        for name, value in state.items():
            if name not in ("random_state", "pulse"):
                setattr(self, name, value)
        self._random_state = state["random_state"]
        self._pulse = list(state["pulse"])
