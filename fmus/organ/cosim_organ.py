"""Heart and circulation of Smith, Chase, Nokes, Shaw & Wake 2004 (Med Eng Phys 26:131).

A minimal closed-loop model: both ventricles with direct interaction (septum, pericardium),
systemic and pulmonary circulation, valves with inertia that open on pressure and close on flow.

    e(t) = A min(1, sum over the last two beat onsets t_k of exp(-B (t - t_k - C)^2))
    P(V) = e E_es (V - V_d) + (1 - e) P_0 (exp(lambda (V - V_0)) - 1)       each free wall
    P_peri = P_0_pcd (exp(lambda_pcd (V_lv + V_rv - V_0_pcd)) - 1) + P_th
    septum: P_spt(V_spt) = P_lvf(V_lv - V_spt) - P_rvf(V_rv + V_spt)           (Newton)
    P_lv = P_lvf(V_lv - V_spt) + P_peri,  P_rv = P_rvf(V_rv + V_spt) + P_peri
    P_ao = E_es_ao (V_ao - V_d_ao), P_vc = E_es_vc (V_vc - V_d_vc)
    P_pa = E_es_pa (V_pa - V_d_pa) + P_th, P_pu = E_es_pu (V_pu - V_d_pu) + P_th
    Q_sys = (P_ao - P_vc)/R_sys, Q_pul = (P_pa - P_pu)/R_pul
    valve (upstream u, downstream d): L dQ/dt = P_u - P_d - R Q while P_u > P_d or Q > 0,
        else dQ/dt = 0 and Q = 0 (closed)
    dV_lv = Q_mt - Q_av, dV_ao = Q_av - Q_sys, dV_vc = Q_sys - Q_tc,
    dV_rv = Q_tc - Q_pv, dV_pa = Q_pv - Q_pul, dV_pu = Q_pul - Q_mt

A beat onset is the tissue's ``activation`` crossing ``activation_threshold`` upward; per-beat
haemodynamics are published at each onset. Classical RK4 in plain Python floats, substeps of at
most ``h_max`` and half the loop's fastest time constant.
"""

import math

from pythonfmu import Fmi2Causality, Fmi2Initial, Fmi2Slave, Fmi2Variability, Integer, Real

NEWTON_TOLERANCE = 1e-6  # mL: septal volume converged (pressures to 1e-4 mmHg)
NEWTON_LIMIT = 40  # iterations
NEWTON_STEP = 10.0  # mL: largest Newton step (the root is unique, f increases)
LONG_AGO = -1e3  # s: onset time of beats that never happened

_PARAMETERS = {  # name: (default, unit, description); Smith et al. 2004, healthy human, HR 80
    "A": (1.0, "1", "driver amplitude (peak activation of the elastance)"),
    "B": (80.0, "1/s**2", "driver width: e = A exp(-B (t - onset - C)^2)"),
    "C": (0.375, "s", "driver delay: from a beat onset to peak elastance"),
    "E_es_lvf": (2.8798, "mmHg/mL", "LV free wall end-systolic elastance"),
    "V_d_lvf": (0.0, "mL", "LV free wall volume at zero end-systolic pressure"),
    "P_0_lvf": (0.1203, "mmHg", "LV free wall end-diastolic pressure scale"),
    "lambda_lvf": (0.033, "1/mL", "LV free wall end-diastolic stiffness"),
    "V_0_lvf": (0.0, "mL", "LV free wall volume at zero end-diastolic pressure"),
    "E_es_rvf": (0.585, "mmHg/mL", "RV free wall end-systolic elastance"),
    "V_d_rvf": (0.0, "mL", "RV free wall volume at zero end-systolic pressure"),
    "P_0_rvf": (0.2157, "mmHg", "RV free wall end-diastolic pressure scale"),
    "lambda_rvf": (0.023, "1/mL", "RV free wall end-diastolic stiffness"),
    "V_0_rvf": (0.0, "mL", "RV free wall volume at zero end-diastolic pressure"),
    "E_es_spt": (48.754, "mmHg/mL", "septum end-systolic elastance"),
    "V_d_spt": (2.0, "mL", "septum volume at zero end-systolic pressure"),
    "P_0_spt": (1.1101, "mmHg", "septum end-diastolic pressure scale"),
    "lambda_spt": (0.435, "1/mL", "septum end-diastolic stiffness"),
    "V_0_spt": (2.0, "mL", "septum volume at zero end-diastolic pressure"),
    "P_0_pcd": (0.5003, "mmHg", "pericardium pressure scale"),
    "V_0_pcd": (200.0, "mL", "pericardium volume at zero pressure"),
    "lambda_pcd": (0.03, "1/mL", "pericardium stiffness"),
    "P_th": (-4.0, "mmHg", "thoracic pressure (around the heart and pulmonary vessels)"),
    "E_es_ao": (0.6913, "mmHg/mL", "aorta (systemic arteries) elastance"),
    "V_d_ao": (0.0, "mL", "aorta unstressed volume"),
    "E_es_vc": (0.0059, "mmHg/mL", "vena cava (systemic veins) elastance"),
    "V_d_vc": (0.0, "mL", "vena cava unstressed volume"),
    "E_es_pa": (0.369, "mmHg/mL", "pulmonary artery elastance"),
    "V_d_pa": (0.0, "mL", "pulmonary artery unstressed volume"),
    "E_es_pu": (0.0073, "mmHg/mL", "pulmonary vein elastance"),
    "V_d_pu": (0.0, "mL", "pulmonary vein unstressed volume"),
    "R_sys": (1.0889, "mmHg*s/mL", "systemic vascular resistance"),
    "R_pul": (0.1552, "mmHg*s/mL", "pulmonary vascular resistance"),
    "R_mt": (0.0158, "mmHg*s/mL", "mitral valve resistance"),
    "R_av": (0.018, "mmHg*s/mL", "aortic valve resistance"),
    "R_tc": (0.0237, "mmHg*s/mL", "tricuspid valve resistance"),
    "R_pv": (0.0055, "mmHg*s/mL", "pulmonary valve resistance"),
    "L_mt": (7.6968e-5, "mmHg*s**2/mL", "mitral valve inertance"),
    "L_av": (1.2189e-4, "mmHg*s**2/mL", "aortic valve inertance"),
    "L_tc": (8.0093e-5, "mmHg*s**2/mL", "tricuspid valve inertance"),
    "L_pv": (1.4868e-4, "mmHg*s**2/mL", "pulmonary valve inertance"),
    "V_lv_init": (94.6812, "mL", "initial LV volume"),
    "V_rv_init": (90.7302, "mL", "initial RV volume"),
    "V_ao_init": (133.3381, "mL", "initial aortic volume"),
    "V_vc_init": (329.7803, "mL", "initial vena cava volume"),
    "V_pa_init": (43.0123, "mL", "initial pulmonary artery volume"),
    "V_pu_init": (808.4579, "mL", "initial pulmonary vein volume"),
    "activation_threshold": (0.5, "1", "activation level whose upward crossing marks a beat"),
    "asystole_timeout": (2.0, "s", "longest beat interval; beyond it heart_rate is 0"),
    "h_max": (1.0, "ms", "largest RK4 substep"),
}
_POSITIVE = ("R_sys", "R_pul", "R_mt", "R_av", "R_tc", "R_pv", "L_mt", "L_av", "L_tc", "L_pv",
             "h_max", "B", "asystole_timeout")

_OUTPUTS = {  # name: (unit, description)
    "P_lv": ("mmHg", "LV pressure"),
    "P_rv": ("mmHg", "RV pressure"),
    "P_ao": ("mmHg", "aortic pressure"),
    "P_vc": ("mmHg", "vena cava pressure"),
    "P_pa": ("mmHg", "pulmonary artery pressure"),
    "P_pu": ("mmHg", "pulmonary vein (LV filling) pressure"),
    "V_lv": ("mL", "LV volume"),
    "V_rv": ("mL", "RV volume"),
    "V_spt": ("mL", "septal volume (its deflection into the RV)"),
    "Q_mt": ("mL/s", "mitral valve flow"),
    "Q_av": ("mL/s", "aortic valve flow"),
    "Q_tc": ("mL/s", "tricuspid valve flow"),
    "Q_pv": ("mL/s", "pulmonary valve flow"),
    "e": ("1", "driver: activation of the ventricular elastances, 0..1"),
    "P_sys": ("mmHg", "highest P_ao over the last beat"),
    "P_dia": ("mmHg", "lowest P_ao over the last beat"),
    "EDV": ("mL", "largest LV volume over the last beat (end-diastolic)"),
    "ESV": ("mL", "lowest LV volume over the last beat"),
    "stroke_volume": ("mL", "aortic valve flow integrated over the last beat"),
    "ejection_fraction": ("1", "stroke_volume / EDV, a fraction"),
    "cardiac_output": ("L/min", "stroke_volume x heart_rate"),
    "heart_rate": ("1/min", "60 / interval between the last two onsets; 0 if none"),
}
VOLUMES = ("v_lv", "v_rv", "v_ao", "v_vc", "v_pa", "v_pu")
FLOWS = ("q_mt", "q_av", "q_tc", "q_pv")


def decayed(x: float) -> float:
    """exp(x), skipping the call where the result is 0 (as the C edition does)."""
    return 0.0 if x < -746.0 else math.exp(x)


def forward(q: float) -> float:
    """Flow through a valve: its state, or none when closed."""
    return q if q > 0.0 else 0.0


def valve(drop: float, q: float, r: float, inertance: float) -> float:
    """A valve's dQ/dt: open while the pressure drop drives flow or flow continues."""
    return (drop - r * q) / inertance if drop > 0.0 or q > 0.0 else 0.0


def combined(h6: float, k1: float, k2: float, k3: float, k4: float) -> float:
    return h6 * (k1 + 2.0 * (k2 + k3) + k4)


class Organ(Fmi2Slave):
    author = "cosim"
    description = ("Heart and circulation of Smith et al. 2004: both ventricles with septal and "
                   "pericardial interaction, systemic and pulmonary circulation, valves with "
                   "inertia (closed loop)")

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

    def setup_experiment(self, start_time, stop_time=None, tolerance=None):
        self._start_time = float(start_time)

    def exit_initialization_mode(self):
        """Initial state from the parameters: Smith's volumes, valves closed, no contraction."""
        for name in _POSITIVE:
            if not getattr(self, name) > 0.0:
                raise ValueError(f"Organ: {name} must be > 0")
        start_time = getattr(self, "_start_time", 0.0)
        for volume in VOLUMES:  # v_lv from V_lv_init, ...
            setattr(self, volume, float(getattr(self, "V" + volume[1:] + "_init")))
        for flow in FLOWS:
            setattr(self, flow, 0.0)
        self.v_spt = float(self.V_d_spt)
        self.onset_latest = self.onset_before = LONG_AGO
        self.t = float(start_time)
        self.armed = True
        self.last_onset = -1.0  # < 0: the current window did not start at a beat onset
        self.window_start = float(start_time)
        self._reset_window()
        self.beat_count = 0
        self._h_limit = min(1e-3 * self.h_max, 0.5 * self.fastest_time_constant())
        for name in ("P_sys", "P_dia", "EDV", "ESV", "stroke_volume", "ejection_fraction",
                     "cardiac_output", "heart_rate"):
            setattr(self, name, 0.0)
        self._update_outputs()

    def fastest_time_constant(self) -> float:
        """Shortest time constant of the loop (s), bounding the explicit RK4 substep: each
        valve's L/R, each valve's resistance against the elastances on its two sides, the
        driver's rise."""
        return min(self.L_mt / self.R_mt, self.L_av / self.R_av, self.L_tc / self.R_tc,
                   self.L_pv / self.R_pv, self.R_mt / (self.E_es_lvf + self.E_es_pu),
                   self.R_av / (self.E_es_lvf + self.E_es_ao),
                   self.R_tc / (self.E_es_rvf + self.E_es_vc),
                   self.R_pv / (self.E_es_rvf + self.E_es_pa), 1.0 / math.sqrt(self.B))

    def _reset_window(self) -> None:
        p_ao = self.E_es_ao * (self.v_ao - self.V_d_ao)
        self.win_max = p_ao
        self.win_min = p_ao
        self.win_vmin = self.v_lv
        self.win_vmax = self.v_lv
        self.win_flow = 0.0

    # --- the model ------------------------------------------------------------------------

    def driver(self, t: float) -> float:
        """e at time t (s)."""
        a = t - self.onset_latest - self.C
        b = t - self.onset_before - self.C
        total = decayed(-self.B * (a * a)) + decayed(-self.B * (b * b))
        return self.A * (total if total < 1.0 else 1.0)

    def septum(self, e: float, v_lv: float, v_rv: float) -> tuple[float, float, float]:
        """(V_spt, the LV and RV free walls' exponentials there): the root of
        P_spt(V) - P_lvf(v_lv - V) + P_rvf(v_rv + V), increasing in V, by Newton's method from
        the last solution (updated): the last point evaluated, once the step it gives is below
        NEWTON_TOLERANCE."""
        f_e = 1.0 - e
        v = self.v_spt
        i = 0
        while True:
            x_spt = math.exp(self.lambda_spt * (v - self.V_0_spt))
            x_lvf = math.exp(self.lambda_lvf * (v_lv - v - self.V_0_lvf))
            x_rvf = math.exp(self.lambda_rvf * (v_rv + v - self.V_0_rvf))
            if i == NEWTON_LIMIT:
                break
            f = (e * self.E_es_spt * (v - self.V_d_spt) + f_e * self.P_0_spt * (x_spt - 1.0)
                 - (e * self.E_es_lvf * (v_lv - v - self.V_d_lvf)
                    + f_e * self.P_0_lvf * (x_lvf - 1.0))
                 + (e * self.E_es_rvf * (v_rv + v - self.V_d_rvf)
                    + f_e * self.P_0_rvf * (x_rvf - 1.0)))
            slope = (e * self.E_es_spt + f_e * self.P_0_spt * self.lambda_spt * x_spt
                     + (e * self.E_es_lvf + f_e * self.P_0_lvf * self.lambda_lvf * x_lvf)
                     + (e * self.E_es_rvf + f_e * self.P_0_rvf * self.lambda_rvf * x_rvf))
            change = f / slope
            if change > NEWTON_STEP:
                change = NEWTON_STEP
            if change < -NEWTON_STEP:
                change = -NEWTON_STEP
            if abs(change) <= NEWTON_TOLERANCE:
                break
            v = v - change
            i += 1
        self.v_spt = v
        return v, x_lvf, x_rvf

    def pressures(self, e: float, y: tuple[float, ...]) -> tuple[float, ...]:
        """(P_lv, P_rv, P_ao, P_vc, P_pa, P_pu, Q_sys, Q_pul) of a state (volumes, flows)."""
        v_lv, v_rv, v_ao, v_vc, v_pa, v_pu = y[:6]
        f_e = 1.0 - e
        p_peri = (self.P_0_pcd * (math.exp(self.lambda_pcd * (v_lv + v_rv - self.V_0_pcd))
                                  - 1.0) + self.P_th)
        v_spt, x_lvf, x_rvf = self.septum(e, v_lv, v_rv)
        v_lvf, v_rvf = v_lv - v_spt, v_rv + v_spt
        p_lv = (e * self.E_es_lvf * (v_lvf - self.V_d_lvf) + f_e * self.P_0_lvf * (x_lvf - 1.0)
                + p_peri)
        p_rv = (e * self.E_es_rvf * (v_rvf - self.V_d_rvf) + f_e * self.P_0_rvf * (x_rvf - 1.0)
                + p_peri)
        p_ao = self.E_es_ao * (v_ao - self.V_d_ao)
        p_vc = self.E_es_vc * (v_vc - self.V_d_vc)
        p_pa = self.E_es_pa * (v_pa - self.V_d_pa) + self.P_th
        p_pu = self.E_es_pu * (v_pu - self.V_d_pu) + self.P_th
        return (p_lv, p_rv, p_ao, p_vc, p_pa, p_pu, (p_ao - p_vc) / self.R_sys,
                (p_pa - p_pu) / self.R_pul)

    def rates(self, e: float, y: tuple[float, ...]) -> tuple[float, ...]:
        p_lv, p_rv, p_ao, p_vc, p_pa, p_pu, q_sys, q_pul = self.pressures(e, y)
        q_mt, q_av, q_tc, q_pv = (forward(q) for q in y[6:])
        return (q_mt - q_av, q_tc - q_pv, q_av - q_sys, q_sys - q_tc, q_pv - q_pul,
                q_pul - q_mt,
                valve(p_pu - p_lv, y[6], self.R_mt, self.L_mt),
                valve(p_lv - p_ao, y[7], self.R_av, self.L_av),
                valve(p_vc - p_rv, y[8], self.R_tc, self.L_tc),
                valve(p_rv - p_pa, y[9], self.R_pv, self.L_pv))

    # --- time stepping --------------------------------------------------------------------

    def do_step(self, current_time, step_size):
        a = float(self.activation)
        thr = self.activation_threshold
        if self.armed and a >= thr:
            self._onset(float(current_time))
        elif not self.armed and a < 0.5 * thr:
            self.armed = True
        n = max(1, math.ceil(step_size / self._h_limit - 1e-9))
        self._integrate(float(current_time), step_size / n, n)
        self.t = float(current_time + step_size)
        if self.t - self.window_start > self.asystole_timeout + 1e-9:
            self._close_window(beat=False)
            self.window_start = self.t
            self.last_onset = -1.0
            self._reset_window()
        self._update_outputs()
        return True

    def _onset(self, time: float) -> None:
        """A beat starts: the driver's next contraction, the last window published, a new
        one."""
        self.armed = False
        self.beat_count += 1
        self.onset_before = self.onset_latest
        self.onset_latest = time
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
        self.EDV = self.win_vmax
        self.ESV = self.win_vmin
        self.stroke_volume = self.win_flow
        self.ejection_fraction = self.win_flow / self.win_vmax if self.win_vmax > 0.0 else 0.0
        self.cardiac_output = self.stroke_volume * self.heart_rate * 1e-3

    def _integrate(self, time: float, h: float, n: int) -> None:
        """n classical RK4 substeps of length h (s) from ``time``; valves close at zero flow."""
        h2, h6 = 0.5 * h, h / 6.0
        y = tuple(getattr(self, name) for name in VOLUMES + FLOWS)
        for k in range(n):
            t0 = time + float(k) * h
            e_middle = self.driver(t0 + h2)  # stages 2 and 3 share their time
            r1 = self.rates(self.driver(t0), y)
            y2 = tuple(a + h2 * b for a, b in zip(y, r1, strict=True))
            r2 = self.rates(e_middle, y2)
            y3 = tuple(a + h2 * b for a, b in zip(y, r2, strict=True))
            r3 = self.rates(e_middle, y3)
            y4 = tuple(a + h * b for a, b in zip(y, r3, strict=True))
            r4 = self.rates(self.driver(t0 + h), y4)
            self.win_flow += combined(h6, forward(y[7]), forward(y2[7]), forward(y3[7]),
                                      forward(y4[7]))
            step = [combined(h6, *k_i) for k_i in zip(r1, r2, r3, r4, strict=True)]
            y = tuple([y[i] + step[i] for i in range(6)]
                      + [forward(y[i] + step[i]) for i in range(6, 10)])
            p_ao = self.E_es_ao * (y[2] - self.V_d_ao)
            if p_ao > self.win_max:
                self.win_max = p_ao
            if p_ao < self.win_min:
                self.win_min = p_ao
            if y[0] < self.win_vmin:
                self.win_vmin = y[0]
            if y[0] > self.win_vmax:
                self.win_vmax = y[0]
        for name, value in zip(VOLUMES + FLOWS, y, strict=True):
            setattr(self, name, value)

    def _update_outputs(self) -> None:
        y = tuple(getattr(self, name) for name in VOLUMES + FLOWS)
        e = self.driver(self.t)
        (self.P_lv, self.P_rv, self.P_ao, self.P_vc, self.P_pa, self.P_pu, _,
         _) = self.pressures(e, y)
        self.V_lv, self.V_rv, self.V_spt = self.v_lv, self.v_rv, self.v_spt
        self.Q_mt, self.Q_av, self.Q_tc, self.Q_pv = self.q_mt, self.q_av, self.q_tc, self.q_pv
        self.e = e

    def total_volume(self) -> float:
        """Stressed blood volume held by the model (mL): the six compartments."""
        return sum(getattr(self, name) for name in VOLUMES)

    # --- FMU state ------------------------------------------------------------------------

    _STATE = (*VOLUMES, *FLOWS, "v_spt", "onset_latest", "onset_before", "t", "armed",
              "last_onset", "window_start", "win_max", "win_min", "win_vmin", "win_vmax",
              "win_flow", "beat_count", "activation", *_OUTPUTS)

    def _get_fmu_state(self):
        return {name: getattr(self, name) for name in self._STATE}

    def _set_fmu_state(self, state):
        for name in self._STATE:
            setattr(self, name, state[name])
