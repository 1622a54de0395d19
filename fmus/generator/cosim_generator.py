"""Pacemaker pulse generator: the timing cycles of a single- or dual-chamber pacemaker.

The generator is clocked by the communication step. In ``do_step(t0, h)`` it samples the sense
inputs once (their value over the step, taken as the signal at ``t0``), registers senses at
``t0``, and delivers every pace that falls due by ``t1 = t0 + h`` at ``t1``: the pace output
is non-zero during the next step, which is the one in which the pulse starts. Timing is thus
exact on a step grid and otherwise late by less than one step. Modes (NBG code): 0 OOO, 1 VOO,
2 VVI, 3 AAI, 4 DDD, 5 AOO, 6 DOO. Times are kept in ms internally.
"""

from pythonfmu import (
    Fmi2Causality,
    Fmi2Initial,
    Fmi2Slave,
    Fmi2Variability,
    Integer,
    Real,
    String,
)

MODES = {"OOO": 0, "VOO": 1, "VVI": 2, "AAI": 3, "DDD": 4, "AOO": 5, "DOO": 6}
MODE_NAMES = {code: name for name, code in MODES.items()}
# Marker codes of the event channel (the last event of the step).
NONE, AP, AS, VP, VS, VR, AR = 0, 1, 2, 3, 4, 5, 6
EPS = 1e-6  # ms: tolerance of time comparisons (grid times carry rounding errors)
NEVER = -1.0e12  # ms: "long ago" for timers
MIN_IMPEDANCE = 10.0  # ohm: guard against division by zero in the pulse-charge estimate
HOURS_PER_YEAR = 8766.0  # Julian year

PARAMETERS_REAL = {
    "lower_rate": 60.0, "upper_rate": 120.0, "hysteresis_rate": 0.0,
    "av_delay": 150.0, "sensed_av_delay": 120.0,
    "vrp": 250.0, "arp": 250.0, "pvarp": 250.0,
    "v_blanking": 50.0, "a_blanking": 50.0, "cross_blanking": 30.0,
    "v_sensitivity": 2.5, "a_sensitivity": 0.75,
    "v_amplitude": 3.5, "v_pulse_width": 0.4, "a_amplitude": 3.5, "a_pulse_width": 0.4,
    "battery_capacity": 1.0, "static_current": 5.0,
    "impedance_low": 200.0, "impedance_high": 2000.0, "impedance_change": 0.3,
}
INPUTS = {"V_sense_v": 0.0, "V_sense_a": 0.0, "lead_impedance": 500.0}
OUTPUTS_REAL = ("V_pace_v", "pulse_width_v", "V_pace_a", "pulse_width_a", "last_vv_interval",
                "last_aa_interval", "pacing_rate", "impedance_alert_time",
                "battery_charge_used", "battery_longevity", "next_event_time")
PULSES = ("V_pace_v", "pulse_width_v", "V_pace_a", "pulse_width_a")  # variability discrete
OUTPUTS_INT = ("marker", "vp_count", "vs_count", "vr_count", "ap_count", "as_count", "ar_count",
               "impedance_alert", "impedance_alert_kind")
# Why the impedance alert latched (impedance_alert_kind).
ALERT_NONE, ALERT_HIGH, ALERT_LOW, ALERT_RISE, ALERT_DROP = 0, 1, 2, 3, 4
# Everything do_step changes: saved and restored by the FMU state functions.
STATE = INPUTS.keys() | set(OUTPUTS_REAL) | set(OUTPUTS_INT) | {
    "_start", "_last_v", "_last_a", "_v_sensed", "_a_sensed", "_v_refractory", "_a_refractory",
    "_v_blank", "_a_blank", "_above_v", "_above_a", "_phase_av", "_av_start", "_av_sensed",
    "_check_at", "_pending_vt", "_pulse_charge", "_last_impedance"}


class Generator(Fmi2Slave):
    author = "cosim"
    description = "Pacemaker pulse generator: timing cycles (VOO, VVI, AAI, DDD ...), battery"

    UNITS = {
        "lower_rate": "1/min", "upper_rate": "1/min", "hysteresis_rate": "1/min",
        "av_delay": "ms", "sensed_av_delay": "ms", "vrp": "ms", "arp": "ms", "pvarp": "ms",
        "v_blanking": "ms", "a_blanking": "ms", "cross_blanking": "ms",
        "v_sensitivity": "mV", "a_sensitivity": "mV", "v_amplitude": "V", "v_pulse_width": "ms",
        "a_amplitude": "V", "a_pulse_width": "ms", "battery_capacity": "A*h",
        "static_current": "uA", "impedance_low": "ohm", "impedance_high": "ohm",
        "impedance_change": "1",
        "V_sense_v": "mV", "V_sense_a": "mV", "lead_impedance": "ohm",
        "V_pace_v": "V", "pulse_width_v": "ms", "V_pace_a": "V", "pulse_width_a": "ms",
        "last_vv_interval": "ms", "last_aa_interval": "ms", "pacing_rate": "1/min",
        "impedance_alert_time": "s", "battery_charge_used": "uC", "battery_longevity": "year",
        "next_event_time": "s",
    }
    OUTPUT_DEPENDENCIES = {name: [] for name in OUTPUTS_REAL + OUTPUTS_INT}
    CAN_GET_AND_SET_STATE = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.mode = MODES["VVI"]
        self.mode_name = ""
        for name, value in PARAMETERS_REAL.items():
            setattr(self, name, value)
        for name, value in INPUTS.items():
            setattr(self, name, value)
        for name in OUTPUTS_REAL + OUTPUTS_INT:
            setattr(self, name, 0)
        self._start = 0.0
        self._reset()

        fixed = {"causality": Fmi2Causality.parameter, "variability": Fmi2Variability.fixed}
        self.register_variable(Integer("mode", **fixed))
        self.register_variable(String("mode_name", **fixed))
        for name in PARAMETERS_REAL:
            self.register_variable(Real(name, **fixed))
        for name in INPUTS:
            self.register_variable(Real(name, causality=Fmi2Causality.input))
        for name in OUTPUTS_REAL:  # pulses: discrete, as in the C edition (generator.c)
            self.register_variable(Real(name, causality=Fmi2Causality.output,
                                        initial=Fmi2Initial.calculated,
                                        **({"variability": Fmi2Variability.discrete}
                                           if name in PULSES else {})))
        for name in OUTPUTS_INT:
            self.register_variable(Integer(name, causality=Fmi2Causality.output,
                                           variability=Fmi2Variability.discrete,
                                           initial=Fmi2Initial.calculated))

    # ------------------------------------------------------------------ set-up
    def setup_experiment(self, start_time, stop_time=None, tolerance=None):
        self._start = 1000.0 * start_time

    def exit_initialization_mode(self):
        self._configure()
        self._reset()
        self.next_event_time = self._next_pace(self._start) / 1000.0

    def _configure(self) -> None:
        """Check the parameters and cache the derived constants (parameters are fixed)."""
        if self.mode_name:
            if self.mode_name.upper() not in MODES:
                raise ValueError(f"unknown mode_name '{self.mode_name}'; one of {list(MODES)}")
            self.mode = MODES[self.mode_name.upper()]
        if self.mode not in MODE_NAMES:
            raise ValueError(f"unknown mode {self.mode}; codes {MODE_NAMES}")
        if not 0.0 < self.lower_rate <= self.upper_rate:
            raise ValueError("need 0 < lower_rate <= upper_rate")
        if not self.impedance_change > 0.0:
            raise ValueError("impedance_change must be positive (a fraction, e.g. 0.3)")
        if not 0.0 <= self.hysteresis_rate < self.lower_rate:
            raise ValueError("hysteresis_rate must be 0 (off) or below lower_rate")
        if self.battery_capacity <= 0.0 or self.static_current <= 0.0:
            raise ValueError("battery_capacity and static_current must be positive")
        self._lri = 60000.0 / self.lower_rate
        self._hri = 60000.0 / self.hysteresis_rate if self.hysteresis_rate > 0 else self._lri
        self._uri = 60000.0 / self.upper_rate
        if self.mode in (MODES["DDD"], MODES["DOO"]) and not 0.0 < self.av_delay < self._lri:
            raise ValueError("av_delay must lie between 0 and the lower-rate interval")
        name = MODE_NAMES[self.mode]
        self._paces_v = name[0] in "VD"
        self._paces_a = name[0] in "AD"
        self._senses_v = name[1] in "VD"
        self._senses_a = name[1] in "AD"
        self._dual = name[0] == "D"
        self._atrial_timing = name[0] == "A"

    def _reset(self) -> None:
        """Timers at the start: as if a paced event in each chamber at the start time."""
        self._last_v = self._last_a = self._start
        self._v_sensed = self._a_sensed = False
        self._v_refractory = self._a_refractory = NEVER
        self._v_blank = self._a_blank = NEVER
        self._above_v = self._above_a = False
        self._phase_av = False
        self._av_start = NEVER
        self._av_sensed = False
        self._check_at = NEVER
        self._pending_vt = 0.0
        self._pulse_charge = 0.0
        self._last_impedance = 0.0  # ohm: the previous measurement (0: none yet)
        for name in OUTPUTS_REAL + OUTPUTS_INT:
            setattr(self, name, 0)
        self.impedance_alert_time = -1.0
        self.pulse_width_v = self.v_pulse_width
        self.pulse_width_a = self.a_pulse_width
        self._update_battery(self._start)

    # -------------------------------------------------------------------- step
    def do_step(self, current_time, step_size):
        t0 = 1000.0 * current_time
        t1 = t0 + 1000.0 * step_size
        self.V_pace_v = self.V_pace_a = 0.0
        self.marker = NONE
        self._check_impedance(t0)
        if self._dual:
            self._step_dual(t0, t1)
        elif self._atrial_timing:
            self._step_single_a(t0, t1)
        elif self._paces_v:
            self._step_single_v(t0, t1)
        self._update_battery(t1)
        self.next_event_time = self._next_pace(t1) / 1000.0
        return True

    def _next_pace(self, now: float) -> float:
        """When the next pace falls due if nothing is sensed before (ms), ``now`` if none
        ever will."""
        due = now
        if self._dual:
            if not self._phase_av:
                due = self._last_v + self._lri - self.av_delay
            else:
                delay = self.sensed_av_delay if self._av_sensed else self.av_delay
                by_delay, by_upper_rate = self._av_start + delay, self._last_v + self._uri
                due = by_delay if by_delay >= by_upper_rate else by_upper_rate
        elif self._atrial_timing:
            due = self._last_a + (self._hri if self._a_sensed else self._lri)
        elif self._paces_v:
            due = self._last_v + (self._hri if self._v_sensed else self._lri)
        return due if due > now else now

    def _crossing_v(self, t: float) -> bool:
        """An upward crossing of the ventricular sensitivity at ``t``, outside blanking."""
        above = abs(self.V_sense_v) >= self.v_sensitivity
        crossed = above and not self._above_v
        self._above_v = above
        return crossed and t >= self._v_blank - EPS

    def _crossing_a(self, t: float) -> bool:
        """An upward crossing of the atrial sensitivity at ``t``, outside blanking."""
        above = abs(self.V_sense_a) >= self.a_sensitivity
        crossed = above and not self._above_a
        self._above_a = above
        return crossed and t >= self._a_blank - EPS

    def _step_single_v(self, t0: float, t1: float) -> None:
        if self._senses_v and self._crossing_v(t0):
            if t0 < self._v_refractory - EPS:
                self._event(VR)
            else:
                self._ventricular_event(t0, VS)
        escape = self._hri if self._v_sensed else self._lri
        if t1 >= self._last_v + escape - EPS:
            self._pace_v(t1)

    def _step_single_a(self, t0: float, t1: float) -> None:
        if self._senses_a and self._crossing_a(t0):
            if t0 < self._a_refractory - EPS:
                self._event(AR)
            else:
                self._atrial_event(t0, AS)
        escape = self._hri if self._a_sensed else self._lri
        if t1 >= self._last_a + escape - EPS:
            self._pace_a(t1)

    def _step_dual(self, t0: float, t1: float) -> None:
        """DDD/DOO, ventricular-based lower-rate timing with an upper tracking rate."""
        if self._senses_a and self._crossing_a(t0):
            if self._phase_av or t0 < self._a_refractory - EPS:
                self._event(AR)  # inside the AV interval or PVARP: noted, not tracked
            else:
                self._atrial_event(t0, AS)
                self._phase_av, self._av_start, self._av_sensed = True, t0, True
        if self._senses_v and self._crossing_v(t0):
            if t0 < self._v_refractory - EPS:
                self._event(VR)
            else:
                self._ventricular_event(t0, VS)
                self._phase_av = False
                self._a_refractory = t0 + self.pvarp
        if not self._phase_av and t1 >= self._last_v + self._lri - self.av_delay - EPS:
            self._pace_a(t1)
            self._phase_av, self._av_start, self._av_sensed = True, t1, False
            self._v_blank = max(self._v_blank, t1 + self.cross_blanking)
        if self._phase_av:
            delay = self.sensed_av_delay if self._av_sensed else self.av_delay
            due = max(self._av_start + delay, self._last_v + self._uri)
            if t1 >= due - EPS:
                self._pace_v(t1)
                self._phase_av = False
                self._a_refractory = t1 + self.pvarp

    # ------------------------------------------------------------------ events
    def _event(self, code: int) -> None:
        self.marker = code
        if code == VR:
            self.vr_count += 1
        elif code == AR:
            self.ar_count += 1

    def _ventricular_event(self, t: float, code: int) -> None:
        if self.vp_count + self.vs_count > 0:
            self.last_vv_interval = t - self._last_v
            if not self._atrial_timing:
                self.pacing_rate = 60000.0 / self.last_vv_interval
        self._last_v = t
        self._v_sensed = code == VS
        self._v_refractory = t + self.vrp
        self.marker = code
        if code == VS:
            self.vs_count += 1
        else:
            self.vp_count += 1

    def _atrial_event(self, t: float, code: int) -> None:
        if self.ap_count + self.as_count > 0:
            self.last_aa_interval = t - self._last_a
            if self._atrial_timing:
                self.pacing_rate = 60000.0 / self.last_aa_interval
        self._last_a = t
        self._a_sensed = code == AS
        self._a_refractory = t + self.arp
        self.marker = code
        if code == AS:
            self.as_count += 1
        else:
            self.ap_count += 1

    def _pace_v(self, t: float) -> None:
        self._ventricular_event(t, VP)
        self._v_blank = t + self.v_blanking
        self.V_pace_v = self.v_amplitude
        self._pulse_delivered(t, self.v_amplitude * self.v_pulse_width)

    def _pace_a(self, t: float) -> None:
        self._atrial_event(t, AP)
        self._a_blank = t + self.a_blanking
        self.V_pace_a = self.a_amplitude
        self._pulse_delivered(t, self.a_amplitude * self.a_pulse_width)

    def _pulse_delivered(self, t: float, volt_ms: float) -> None:
        """The lead measures the impedance on this pulse; read it one step later."""
        self._pending_vt += volt_ms
        self._check_at = max(self._check_at, t + EPS)

    # ----------------------------------------------------------- lead, battery
    def _check_impedance(self, t0: float) -> None:
        """After a pulse: pulse charge V*t/R with the measured R, and the impedance alert: R
        outside [impedance_low, impedance_high], or changed abruptly (by more than
        impedance_change of the previous measurement)."""
        if self._pending_vt == 0.0 or t0 < self._check_at:
            return
        resistance = self.lead_impedance
        self._pulse_charge += 1000.0 * self._pending_vt / max(resistance, MIN_IMPEDANCE)  # uC
        self._pending_vt = 0.0
        previous, self._last_impedance = self._last_impedance, resistance
        if self.impedance_alert:
            return
        kind = ALERT_NONE
        if not self.impedance_low <= resistance <= self.impedance_high:
            kind = ALERT_LOW if resistance < self.impedance_low else ALERT_HIGH
        elif previous > 0.0 and abs(resistance - previous) > self.impedance_change * previous:
            kind = ALERT_RISE if resistance > previous else ALERT_DROP
        if kind != ALERT_NONE:
            self.impedance_alert = 1
            self.impedance_alert_kind = kind
            self.impedance_alert_time = t0 / 1000.0

    def _update_battery(self, t: float) -> None:
        elapsed = (t - self._start) / 1000.0  # s
        used = self.static_current * elapsed + self._pulse_charge  # uC
        mean_current = used / elapsed if elapsed > 0.0 else self.static_current  # uA
        remaining = self.battery_capacity * 3.6e9 - used  # uC
        self.battery_charge_used = used
        self.battery_longevity = max(remaining, 0.0) / mean_current / 3600.0 / HOURS_PER_YEAR

    # ------------------------------------------------------------------- state
    def _get_fmu_state(self):
        return {name: getattr(self, name) for name in sorted(STATE)}

    def _set_fmu_state(self, state):
        for name, value in state.items():
            setattr(self, name, value)
