"""Left heart and systemic circulation, lumped: a time-varying elastance ventricle in a closed loop.

    P_lv = E(t) (V_lv - V_0),   E(t) = E_min + (E_max - E_min) e(t)
    P_a = V_a / C_a,  P_v = V_v / C_v              (stressed volumes of the two vessel pools)
    Q_ao = max(0, (P_lv - P_a) / (R_av + R_c))     aortic valve (diode) into the Windkessel
    Q_mv = max(0, (P_v - P_lv) / R_mv)             mitral valve (diode) from the venous pool
    Q_p  = (P_a - P_v) / R_p                       peripheral resistance
    dV_lv = Q_mv - Q_ao,  dV_a = Q_ao - Q_p,  dV_v = Q_p - Q_mv
    P_ao = P_a + R_c Q_ao                          aortic root pressure

Excitation-contraction: the tissue's ``activation`` (fraction of myocardium depolarised) drives
the contraction state through two first-order lags, a -> c -> e, each with time constant
``tau_act`` while rising and ``tau_rel`` while falling. Integrated with classical RK4 in plain
Python floats (a few substeps per communication step). Beats are detected from ``activation``
crossing ``activation_threshold`` upward; per-beat haemodynamics are published at each onset.
"""

import math

from pythonfmu import Fmi2Causality, Fmi2Initial, Fmi2Slave, Fmi2Variability, Integer, Real

_PARAMETERS = {  # name: (default, unit, description)
    "E_max": (2.8, "mmHg/mL", "end-systolic (maximal) LV elastance"),
    "E_min": (0.06, "mmHg/mL", "diastolic (minimal) LV elastance"),
    "V_0": (10.0, "mL", "LV volume at zero pressure"),
    "tau_act": (60.0, "ms", "time constant of each contraction lag while rising"),
    "tau_rel": (30.0, "ms", "time constant of each contraction lag while relaxing"),
    "R_av": (0.005, "mmHg*s/mL", "aortic valve resistance (open)"),
    "R_mv": (0.005, "mmHg*s/mL", "mitral valve resistance (open)"),
    "R_c": (0.04, "mmHg*s/mL", "characteristic impedance of the aorta (Windkessel R_c)"),
    "R_p": (1.05, "mmHg*s/mL", "peripheral resistance (Windkessel R_p)"),
    "C_a": (1.8, "mL/mmHg", "arterial compliance (Windkessel C)"),
    "C_v": (100.0, "mL/mmHg", "venous and left-atrial compliance"),
    "V_total": (5000.0, "mL", "total blood volume"),
    "V_unstressed": (4030.0, "mL", "unstressed volume of the arterial and venous pools"),
    "V_lv_init": (120.0, "mL", "initial LV volume"),
    "P_a_init": (90.0, "mmHg", "initial arterial (Windkessel) pressure"),
    "activation_threshold": (0.5, "1", "activation level whose upward crossing marks a beat"),
    "asystole_timeout": (2.0, "s", "longest beat interval; beyond it heart_rate is 0"),
    "h_max": (1.0, "ms", "largest RK4 substep"),
}

_OUTPUTS = {  # name: (unit, description)
    "P_lv": ("mmHg", "LV pressure"),
    "V_lv": ("mL", "LV volume"),
    "P_ao": ("mmHg", "aortic root pressure"),
    "P_ven": ("mmHg", "venous / left-atrial pressure"),
    "Q_ao": ("mL/s", "aortic valve flow"),
    "P_sys": ("mmHg", "highest P_ao over the last beat"),
    "P_dia": ("mmHg", "lowest P_ao over the last beat"),
    "EDV": ("mL", "LV volume at the onset of the last beat"),
    "ESV": ("mL", "lowest LV volume over the last beat"),
    "stroke_volume": ("mL", "aortic outflow integrated over the last beat"),
    "ejection_fraction": ("1", "stroke_volume / EDV, a fraction"),
    "cardiac_output": ("L/min", "stroke_volume x heart_rate"),
    "heart_rate": ("1/min", "60 / interval between the last two onsets; 0 if none"),
}


class Organ(Fmi2Slave):
    author = "cosim"
    description = ("Time-varying elastance left ventricle with diode valves, 3-element "
                   "Windkessel and venous return (closed loop)")

    UNITS = {"activation": "1",
             **{name: spec[1] for name, spec in _PARAMETERS.items()},
             **{name: spec[0] for name, spec in _OUTPUTS.items()}}
    OUTPUT_DEPENDENCIES = {**dict.fromkeys(_OUTPUTS, []), "beat_count": []}
    CAN_GET_AND_SET_STATE = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name, (default, _unit, text) in _PARAMETERS.items():
            setattr(self, name, default)
            self.register_variable(Real(name, causality=Fmi2Causality.parameter,
                                        variability=Fmi2Variability.fixed, description=text))
        self.activation = 0.0
        self.register_variable(Real("activation", causality=Fmi2Causality.input,
                                    description="fraction of myocardium depolarised, 0..1"))
        for name, (_unit, text) in _OUTPUTS.items():
            setattr(self, name, 0.0)
            self.register_variable(Real(name, causality=Fmi2Causality.output,
                                        initial=Fmi2Initial.calculated, description=text))
        self.beat_count = 0
        self.register_variable(Integer("beat_count", causality=Fmi2Causality.output,
                                       variability=Fmi2Variability.discrete,
                                       initial=Fmi2Initial.calculated,
                                       description="number of beat onsets detected"))
        self.exit_initialization_mode()

    # --- initialisation -------------------------------------------------------------------

    def exit_initialization_mode(self):
        """Initial state from the parameters; the loop starts at rest (no contraction)."""
        self.v_lv = float(self.V_lv_init)
        self.v_a = float(self.C_a * self.P_a_init)
        self.v_v = float(self.V_total - self.V_unstressed - self.v_lv - self.v_a)
        self.c = 0.0
        self.e = 0.0
        self.t = 0.0
        self.armed = True
        self.last_onset = -1.0  # < 0: the current window did not start at a beat onset
        self.window_start = 0.0
        self._reset_window()
        self.beat_count = 0
        self._h_limit = min(1e-3 * self.h_max, 0.25 * self.fastest_time_constant())
        for name in ("P_sys", "P_dia", "EDV", "ESV", "stroke_volume", "ejection_fraction",
                     "cardiac_output", "heart_rate"):
            setattr(self, name, 0.0)
        self._update_outputs()

    def _reset_window(self) -> None:
        p_ao = self._instant()[2]
        self.win_max = p_ao
        self.win_min = p_ao
        self.win_vmin = self.v_lv
        self.win_edv = self.v_lv
        self.win_flow = 0.0

    def _instant(self) -> tuple[float, float, float, float]:
        """(P_lv, Q_ao, P_ao, P_v) of the present state."""
        p_lv = (self.E_min + (self.E_max - self.E_min) * self.e) * (self.v_lv - self.V_0)
        p_a = self.v_a / self.C_a
        q_ao = max(0.0, (p_lv - p_a) / (self.R_av + self.R_c))
        return p_lv, q_ao, p_a + self.R_c * q_ao, self.v_v / self.C_v

    def fastest_time_constant(self) -> float:
        """Shortest relaxation time of the loop (s), bounding the explicit RK4 substep."""
        e_max, r_out = self.E_max, self.R_av + self.R_c
        return min(r_out / (e_max + 1.0 / self.C_a),
                   self.R_mv / (e_max + 1.0 / self.C_v),
                   self.R_p * self.C_a * self.C_v / (self.C_a + self.C_v),
                   1e-3 * self.tau_act, 1e-3 * self.tau_rel)

    # --- time stepping --------------------------------------------------------------------

    def do_step(self, current_time, step_size):
        a = float(self.activation)
        thr = self.activation_threshold
        if self.armed and a >= thr:
            self._onset(float(current_time))
        elif not self.armed and a < 0.5 * thr:
            self.armed = True
        n = max(1, math.ceil(step_size / self._h_limit - 1e-9))
        self._integrate(a, step_size / n, n)
        self.t = float(current_time + step_size)
        if self.t - self.window_start > self.asystole_timeout + 1e-9:
            self._close_window(beat=False)
            self.window_start = self.t
            self.last_onset = -1.0
            self._reset_window()
        self._update_outputs()
        return True

    def _onset(self, time: float) -> None:
        """A beat starts: publish the window that it closes, open a new one."""
        self.armed = False
        self.beat_count += 1
        if self.last_onset >= 0.0 and time > self.last_onset:
            self.heart_rate = 60.0 / (time - self.last_onset)
            self._close_window(beat=True)
        self.last_onset = time
        self.window_start = time
        self._reset_window()

    def _close_window(self, beat: bool) -> None:
        if not beat:
            self.heart_rate = 0.0
        self.P_sys = self.win_max
        self.P_dia = self.win_min
        self.EDV = self.win_edv
        self.ESV = self.win_vmin
        self.stroke_volume = self.win_flow
        self.ejection_fraction = self.win_flow / self.win_edv if self.win_edv > 0.0 else 0.0
        self.cardiac_output = self.stroke_volume * self.heart_rate * 1e-3

    def _integrate(self, a: float, h: float, n: int) -> None:
        """n classical RK4 substeps of length h (s), activation held at a."""
        e_min, de_span, v0 = self.E_min, self.E_max - self.E_min, self.V_0
        g_out, g_mv, g_p = 1.0 / (self.R_av + self.R_c), 1.0 / self.R_mv, 1.0 / self.R_p
        k_a, k_v, r_c = 1.0 / self.C_a, 1.0 / self.C_v, self.R_c
        k_act, k_rel = 1e3 / self.tau_act, 1e3 / self.tau_rel
        v_lv, v_a, v_v, c, e = self.v_lv, self.v_a, self.v_v, self.c, self.e
        w_max, w_min, w_vmin, w_flow = self.win_max, self.win_min, self.win_vmin, self.win_flow

        def rates(v_lv, v_a, v_v, c, e):
            p_lv = (e_min + de_span * e) * (v_lv - v0)
            p_a = v_a * k_a
            p_v = v_v * k_v
            q_ao = (p_lv - p_a) * g_out
            if q_ao < 0.0:
                q_ao = 0.0
            q_mv = (p_v - p_lv) * g_mv
            if q_mv < 0.0:
                q_mv = 0.0
            q_p = (p_a - p_v) * g_p
            dc = (a - c) * (k_act if a > c else k_rel)
            de = (c - e) * (k_act if c > e else k_rel)
            return q_mv - q_ao, q_ao - q_p, q_p - q_mv, dc, de, q_ao

        h2, h6 = 0.5 * h, h / 6.0
        for _ in range(n):
            a1, b1, c1, d1, e1, f1 = rates(v_lv, v_a, v_v, c, e)
            a2, b2, c2, d2, e2, f2 = rates(v_lv + h2 * a1, v_a + h2 * b1, v_v + h2 * c1,
                                           c + h2 * d1, e + h2 * e1)
            a3, b3, c3, d3, e3, f3 = rates(v_lv + h2 * a2, v_a + h2 * b2, v_v + h2 * c2,
                                           c + h2 * d2, e + h2 * e2)
            a4, b4, c4, d4, e4, f4 = rates(v_lv + h * a3, v_a + h * b3, v_v + h * c3,
                                           c + h * d3, e + h * e3)
            v_lv += h6 * (a1 + 2.0 * (a2 + a3) + a4)
            v_a += h6 * (b1 + 2.0 * (b2 + b3) + b4)
            v_v += h6 * (c1 + 2.0 * (c2 + c3) + c4)
            c += h6 * (d1 + 2.0 * (d2 + d3) + d4)
            e += h6 * (e1 + 2.0 * (e2 + e3) + e4)
            w_flow += h6 * (f1 + 2.0 * (f2 + f3) + f4)
            p_lv = (e_min + de_span * e) * (v_lv - v0)
            p_a = v_a * k_a
            q_ao = (p_lv - p_a) * g_out
            p_ao = p_a + r_c * q_ao if q_ao > 0.0 else p_a
            if p_ao > w_max:
                w_max = p_ao
            if p_ao < w_min:
                w_min = p_ao
            if v_lv < w_vmin:
                w_vmin = v_lv
        self.v_lv, self.v_a, self.v_v, self.c, self.e = v_lv, v_a, v_v, c, e
        self.win_max, self.win_min, self.win_vmin, self.win_flow = w_max, w_min, w_vmin, w_flow

    def _update_outputs(self) -> None:
        self.P_lv, self.Q_ao, self.P_ao, self.P_ven = self._instant()
        self.V_lv = self.v_lv

    def total_volume(self) -> float:
        """Blood volume held by the model (mL): LV + both pools (stressed + unstressed)."""
        return self.v_lv + self.v_a + self.v_v + self.V_unstressed

    # --- FMU state ------------------------------------------------------------------------

    _STATE = ("v_lv", "v_a", "v_v", "c", "e", "t", "armed", "last_onset", "window_start",
              "win_max", "win_min", "win_vmin", "win_edv", "win_flow", "beat_count",
              "activation", *_OUTPUTS)

    def _get_fmu_state(self):
        return {name: getattr(self, name) for name in self._STATE}

    def _set_fmu_state(self, state):
        for name in self._STATE:
            setattr(self, name, state[name])
