"""Monodomain myocardium (fibre, sheet or slab) with Mitchell-Schaeffer kinetics.

    dv/dt = div(D grad v) + h v^2 (1 - v)/tau_in - v/tau_out + J
    dh/dt = (1 - h)/tau_open  if v < v_gate  else  -h/tau_close

v is dimensionless (V = V_rest + (V_peak - V_rest) v), time in ms, space in mm; fibres run
along x (D_long), across them along y and z (D_trans: transversely isotropic), no-flux
boundaries. Forward Euler for v with a 5-point (7-point in a slab) finite-volume stencil (face
fluxes), exact exponential update for h, exact exponential
relaxation of the electrode node toward the cell FMU's potential. Adaptive substeps: ``dt``
while anything depolarises or a stimulus is on, ``dt_max`` otherwise; when every node is below
V_QUIET and no input is active, the sheet is advanced analytically in O(1) (lazy decay of v
and recovery of h).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from pythonfmu import Fmi2Causality, Fmi2Initial, Fmi2Slave, Fmi2Variability, Integer, Real

V_QUIET = 0.01  # every node below this (1 mV above rest) and no input: quiescent
FRONT_RATE = 0.005  # 1/ms (0.5 mV/ms): a faster depolarisation anywhere selects the fine step
SIGNALS = ("V_source", "I_stim", "stim_width", "V_electrode", "activation", "egm", "egm_bipolar",
           "activation_time_far", "cv_measured", "substeps", "next_event_time")  # inputs and
# outputs, saved
V_ACT = 0.5  # a node counts in ``activation`` above this (-35 mV at the defaults)


def ionic_rate(v: np.ndarray, h: np.ndarray, tau_in: float, tau_out: float) -> np.ndarray:
    """Mitchell-Schaeffer membrane rate dv/dt without diffusion and stimulus [1/ms]."""
    return h * v * v * (1.0 - v) / tau_in - v / tau_out


def laplacian(nx: int, ny: int, dx: float, d_long: float, d_trans: float,
              nz: int = 1) -> sp.csr_matrix:
    """Anisotropic 5-point (7-point for nz > 1) operator div(D grad .), cell-centred, no-flux
    boundaries [1/ms]; D_trans across the fibres along y and z. Node (x, y, z) is row
    (z ny + y) nx + x.

    Symmetric, and every row and column sums to zero (charge is conserved).
    """

    def second_difference(n: int) -> sp.csr_matrix:
        if n == 1:
            return sp.csr_matrix((1, 1))
        main = -2.0 * np.ones(n)
        main[[0, -1]] = -1.0  # cell-centred: no flux through the outer faces
        off = np.ones(n - 1)
        return sp.diags([off, main, off], [-1, 0, 1], format="csr")

    along = sp.kron(sp.identity(nz * ny), second_difference(nx))
    across = sp.kron(sp.identity(nz), sp.kron(second_difference(ny), sp.identity(nx)))
    through = sp.kron(second_difference(nz), sp.identity(ny * nx))
    return ((d_long * along + d_trans * (across + through)) / dx**2).tocsr()


def stability_limit(nx: int, ny: int, dx: float, d_long: float, d_trans: float,
                    tau_in: float, nz: int = 1) -> float:
    """Largest stable forward-Euler step [ms]: diffusion dx^2/(2 sum D) and reaction tau_in."""
    total = (d_long if nx > 1 else 0.0) + (d_trans if ny > 1 else 0.0) + \
        (d_trans if nz > 1 else 0.0)
    diffusion = dx**2 / (2.0 * total) if total > 0 else math.inf
    return min(diffusion, tau_in)


class Tissue(Fmi2Slave):
    author = "cosim"
    description = "Monodomain myocardium, Mitchell-Schaeffer kinetics, electrogram at the lead tip"

    UNITS = {"dx": "mm", "D_long": "mm**2/ms", "D_trans": "mm**2/ms", "dt": "ms", "dt_max": "ms",
             "tau_in": "ms", "tau_out": "ms", "tau_open": "ms", "tau_close": "ms",
             "V_rest": "mV", "V_peak": "mV", "C_m": "uF/cm**2", "V_activation": "mV",
             "g_coupling": "mS/cm**2",
             "electrode_height": "mm", "ring_spacing": "mm", "egm_gain": "mm",
             "intrinsic_rate": "1/min",
             "intrinsic_delay": "s", "intrinsic_current": "uA/cm**2", "intrinsic_width": "ms",
             "intrinsic_radius": "mm", "V_source": "mV", "I_stim": "uA/cm**2",
             "stim_width": "ms", "V_electrode": "mV", "egm": "mV", "egm_bipolar": "mV",
             "activation_time_far": "s", "cv_measured": "m/s", "next_event_time": "s"}
    OUTPUT_DEPENDENCIES = {"V_electrode": [], "activation": [], "egm": [], "egm_bipolar": [],
                           "activation_time_far": [], "cv_measured": [], "substeps": [],
                           "next_event_time": []}
    CAN_GET_AND_SET_STATE = True

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.nx = 81
        self.ny = 1
        self.nz = 1
        self.dx = 0.5
        self.D_long = 0.33
        self.D_trans = 0.0436
        self.dt = 0.1
        self.dt_max = 0.35
        self.tau_in = 0.3
        self.tau_out = 6.0
        self.tau_open = 120.0
        self.tau_close = 185.0
        self.v_gate = 0.13
        self.V_rest = -85.0
        self.V_peak = 15.0
        self.C_m = 1.0
        self.V_activation = -35.0
        self.electrode_x = 0
        self.electrode_y = -1
        self.g_coupling = 1.0
        self.electrode_height = 1.0
        self.ring_spacing = 10.0
        self.egm_gain = 10.0
        self.intrinsic_rate = 0.0
        self.intrinsic_delay = 0.5
        self.intrinsic_x = -1
        self.intrinsic_y = -1
        self.intrinsic_z = -1
        self.intrinsic_cube = 0
        self.intrinsic_current = 100.0
        self.intrinsic_width = 2.0
        self.intrinsic_radius = 1.0
        self.intrinsic_reset = 0
        self.V_source = -85.0
        self.I_stim = 0.0
        self.stim_width = 0.0
        self.V_electrode = -85.0
        self.activation = 0.0
        self.egm = 0.0
        self.egm_bipolar = 0.0
        self.activation_time_far = -1.0
        self.cv_measured = 0.0
        self.substeps = 0.0
        for name in ("nx", "ny", "nz", "electrode_x", "electrode_y", "intrinsic_x",
                     "intrinsic_y", "intrinsic_z"):
            self.register_variable(Integer(name, causality=Fmi2Causality.parameter,
                                           variability=Fmi2Variability.fixed))
        self.register_variable(Integer(
            "intrinsic_reset", causality=Fmi2Causality.parameter,
            variability=Fmi2Variability.fixed,
            description="1: a wave reaching the intrinsic site restarts its cycle (an escape "
                        "focus reset by paced beats); 0: fixed rate (a sinus node)"))
        self.register_variable(Integer(
            "intrinsic_cube", causality=Fmi2Causality.parameter,
            variability=Fmi2Variability.fixed,
            description="1: the intrinsic stimulus covers the nodes within intrinsic_radius of "
                        "the entry site along each axis (a cube); 0: within that distance (a "
                        "ball)"))
        for name in ("dx", "D_long", "D_trans", "dt", "dt_max", "tau_in", "tau_out",
                     "tau_open", "tau_close", "v_gate", "V_rest", "V_peak", "C_m",
                     "V_activation", "g_coupling",
                     "electrode_height", "ring_spacing", "egm_gain", "intrinsic_rate",
                     "intrinsic_delay",
                     "intrinsic_current", "intrinsic_width", "intrinsic_radius"):
            self.register_variable(Real(name, causality=Fmi2Causality.parameter,
                                        variability=Fmi2Variability.fixed))
        for name in ("V_source", "I_stim", "stim_width"):
            self.register_variable(Real(name, causality=Fmi2Causality.input))
        for name in ("V_electrode", "activation", "egm", "egm_bipolar", "activation_time_far",
                     "cv_measured"):
            self.register_variable(Real(name, causality=Fmi2Causality.output,
                                        initial=Fmi2Initial.calculated))
        self.register_variable(Real("substeps", causality=Fmi2Causality.output,
                                    initial=Fmi2Initial.calculated,
                                    description="substeps taken since initialisation (a work "
                                                "counter)"))
        self.next_event_time = 0.0
        self._start = 0.0
        self.register_variable(Real("next_event_time", causality=Fmi2Causality.output,
                                    initial=Fmi2Initial.calculated))
        self._ready = False

    # ------------------------------------------------------------------ initialisation
    def exit_initialization_mode(self):
        nx, ny, nz, dx = int(self.nx), int(self.ny), int(self.nz), float(self.dx)
        if nx < 1 or ny < 1 or nz < 1 or dx <= 0 or self.D_long < 0 or self.D_trans < 0:
            raise ValueError(f"Tissue: need nx, ny, nz >= 1, dx > 0, D >= 0 (nx={nx}, ny={ny}, "
                             f"nz={nz}, dx={dx}, D_long={self.D_long}, D_trans={self.D_trans})")
        limit = stability_limit(nx, ny, dx, self.D_long, self.D_trans, self.tau_in, nz)
        if not 0 < self.dt <= limit:
            raise ValueError(f"Tissue: dt = {self.dt} ms is unstable for forward Euler; need "
                             f"0 < dt <= {limit:.4g} ms = min(dx^2/(2 (D_long + D_trans per "
                             f"transverse axis)), tau_in) at dx = {dx} mm")
        self._n = nx * ny * nz
        self._dt_coarse = max(float(self.dt), min(float(self.dt_max), 0.9 * limit))
        self._shape = (nz, ny, nx)
        self._ax, self._ay = self.D_long / dx**2, self.D_trans / dx**2
        self._flux_x = np.empty((nz, ny, nx - 1))
        self._flux_y = np.empty((nz, ny - 1, nx))
        self._flux_z = np.empty((nz - 1, ny, nx))
        self._rate = np.empty(self._n)
        self._work = np.empty(self._n)
        self._dv = self.V_peak - self.V_rest
        self._v_act = (self.V_activation - self.V_rest) / self._dv
        ex = self._index(self.electrode_x, nx, 0, "electrode_x")
        ey = self._index(self.electrode_y, ny, ny // 2, "electrode_y")
        sx = self._index(self.intrinsic_x, nx, nx - 1, "intrinsic_x")
        sy = self._index(self.intrinsic_y, ny, ny // 2, "intrinsic_y")
        sz = self._index(self.intrinsic_z, nz, 0, "intrinsic_z")
        self._e = ey * nx + ex  # on layer z = 0, the surface the lead touches
        iz, iy, ix = (a.ravel() for a in np.meshgrid(np.arange(nz), np.arange(ny),
                                                     np.arange(nx), indexing="ij"))
        far_x = nx - 1 if ex <= (nx - 1) / 2 else 0
        far_y = ny - 1 if ey <= (ny - 1) / 2 else 0
        self._far = ((nz - 1) * ny + far_y) * nx + far_x
        offsets = np.abs(np.stack((ix - sx, iy - sy, iz - sz)))
        if self.intrinsic_cube:
            dist = offsets.max(axis=0) * dx
        else:
            dist = np.sqrt((offsets**2).sum(axis=0)) * dx  # integers: exact under the root
        self._site = np.flatnonzero(dist <= max(self.intrinsic_radius, 0.0) + 1e-9)
        # CV probes on the electrode row, a quarter and three quarters of the way from the
        # electrode to the far end (both on one side: a wave from the electrode passes them
        # in turn, wherever the electrode sits)
        reach, side = abs(far_x - ex), 1 if far_x >= ex else -1
        self._probes = (ey * nx + ex + side * (reach // 4), ey * nx + ex + side * (3 * reach // 4))
        self._probe_dist = (3 * reach // 4 - reach // 4) * dx
        # phi = -(1/4pi) k sum D grad v . grad(1/r) dA = +(k dA/4pi) v . (L_D / D_long)(1/r)
        operator = laplacian(nx, ny, dx, self.D_long, self.D_trans, nz)
        scale = self._dv * self.egm_gain * dx**2 / (4.0 * math.pi * self.D_long)
        lateral = ((ix - ex) * dx) ** 2 + ((iy - ey) * dx) ** 2
        depth = iz * dx  # the electrodes lie outside the slab, beyond layer 0
        tip = self.electrode_height + depth
        self._egm_w = scale * (operator @ (1.0 / np.sqrt(lateral + tip**2)))
        ring = self.electrode_height + max(float(self.ring_spacing), 0.0) + depth  # lead normal
        self._bipolar_w = self._egm_w - scale * (operator @ (1.0 / np.sqrt(lateral + ring**2)))
        self._v = np.zeros(self._n)
        self._h = np.ones(self._n)
        self._t_act = np.full(self._n, -1.0)
        self._quiet = True
        self._quiet_time = 0.0
        self._egm_at_quiet = 0.0
        self._bipolar_at_quiet = 0.0
        self._origin = 1000.0 * self.intrinsic_delay  # ms: time of intrinsic beat k = 0
        self._site_seen = -1.0  # ms: last activation of the intrinsic site already handled
        self.substeps = 0.0  # work counter: substeps taken since initialisation
        self._ready = True
        self._outputs()
        self.next_event_time = self._next_beat(1000.0 * self._start) / 1000.0

    @staticmethod
    def _index(value: int, size: int, default: int, name: str) -> int:
        value = int(value)
        if value < 0:
            return default
        if value >= size:
            raise ValueError(f"Tissue: {name} = {value} is outside the sheet (0..{size - 1})")
        return value

    # ------------------------------------------------------------------ time stepping
    def do_step(self, current_time, step_size):
        t0 = current_time * 1000.0
        length = step_size * 1000.0
        cuts = {0.0, length}
        stim_end = length if (self.stim_width <= 0 or self.stim_width >= length) \
            else float(self.stim_width)
        if self.I_stim != 0.0:
            cuts.add(stim_end)
        windows = self._intrinsic_windows(t0, length)
        for start, end in windows:
            cuts.update((start, end))
        cuts = sorted(c for c in cuts if 0.0 <= c <= length)
        j_unit = 1.0 / (self.C_m * self._dv)
        for a, b in zip(cuts[:-1], cuts[1:], strict=False):
            if b - a <= 1e-12:
                continue
            mid = 0.5 * (a + b)
            j_e = self.I_stim * j_unit if (self.I_stim != 0.0 and mid < stim_end) else 0.0
            on = any(start <= mid < end for start, end in windows)
            j_site = self.intrinsic_current * j_unit if on else 0.0
            self._advance(t0 + a, b - a, j_e, j_site)
        if self.intrinsic_reset and self.intrinsic_rate > 0 and self._site.size:
            self._reset_intrinsic_cycle()
        self._outputs()
        self.next_event_time = self._next_beat(t0 + length) / 1000.0
        return True

    def _next_beat(self, now: float) -> float:
        """The start of the next intrinsic beat after ``now`` (ms), ``now`` if there is none."""
        if self.intrinsic_rate <= 0 or not self._site.size:
            return now
        period = 60000.0 / self.intrinsic_rate
        k = max(0.0, math.floor((now - self._origin) / period))
        due = self._origin + k * period
        while due <= now + 1e-9:
            k += 1
            due = self._origin + k * period
        return due

    def setup_experiment(self, start_time, stop_time=None, tolerance=None):
        self._start = start_time

    def _reset_intrinsic_cycle(self) -> None:
        """A wave from elsewhere activated the intrinsic site: its next beat is a period later."""
        t_site = float(self._t_act[self._site].max())
        if t_site <= self._site_seen:
            return
        self._site_seen = t_site
        period = 60000.0 / self.intrinsic_rate
        own = self._origin + math.floor((t_site - self._origin) / period) * period
        if not (t_site >= self._origin and t_site - own < self.intrinsic_width + 10.0):
            self._origin = t_site + period

    def _intrinsic_windows(self, t0: float, length: float) -> list[tuple[float, float]]:
        """Intrinsic stimulus windows overlapping [t0, t0 + length], relative to t0 [ms]."""
        if self.intrinsic_rate <= 0 or self._site.size == 0:
            return []
        period = 60000.0 / self.intrinsic_rate
        first = self._origin
        k = max(0, math.floor((t0 - first - self.intrinsic_width) / period))
        windows = []
        while first + k * period < t0 + length:
            start = first + k * period - t0
            end = start + self.intrinsic_width
            if end > 0:
                windows.append((max(start, 0.0), min(end, length)))
            k += 1
        return windows

    def _advance(self, t_start: float, length: float, j_e: float, j_site: float) -> None:
        """Integrate a segment of constant inputs of ``length`` ms starting at ``t_start``."""
        vs = (self.V_source - self.V_rest) / self._dv
        if self._quiet and j_e == 0.0 and j_site == 0.0 and abs(vs) < V_QUIET:
            self._quiet_time += length
            return
        self._wake()
        v, h, e = self._v, self._h, self._e
        g = self.g_coupling / self.C_m
        k_in, k_out = 1.0 / self.tau_in, 1.0 / self.tau_out
        rate, work = self._rate, self._work
        up = None  # activated before the substep; refreshed lazily (only fine substeps use it)
        t = 0.0
        while t < length - 1e-12:
            self._diffusion(v, rate)
            np.subtract(1.0, v, out=work)  # ionic: v (h v (1 - v)/tau_in - 1/tau_out)
            work *= h
            work *= v
            work *= k_in
            work -= k_out
            work *= v
            rate += work
            if j_e:
                rate[e] += j_e
            if j_site:
                rate[self._site] += j_site
            own = rate[e]
            rate[e] += g * (vs - v[e])  # the electrode node's net rate includes its coupling
            fine = j_e or j_site or rate.max() > FRONT_RATE
            rate[e] = own
            dt = min(self.dt if fine else self._dt_coarse, length - t)
            gate_open = v < self.v_gate
            if fine and up is None:
                up = v >= self._v_act
            rate *= dt
            v += rate
            if g > 0:
                v[e] = vs + (v[e] - vs) * math.exp(-g * dt)
            e_open = math.exp(-dt / self.tau_open)  # h -> 1 (open) or 0 (closing), exactly
            np.subtract(h, gate_open, out=work)
            work *= np.where(gate_open, e_open, math.exp(-dt / self.tau_close))
            np.add(gate_open, work, out=h)
            if fine:  # a node can only cross upwards on a front, where substeps are fine
                now_up = v >= self._v_act
                crossed = now_up > up
                if crossed.any():
                    idx = np.flatnonzero(crossed)
                    old = v[idx] - rate[idx]
                    frac = np.clip((self._v_act - old) / np.maximum(v[idx] - old, 1e-12), 0.0,
                                   1.0)
                    self._t_act[idx] = t_start + t + dt * frac
                up = now_up
            else:
                up = None
            t += dt
            self.substeps += 1.0
        if abs(vs) < V_QUIET and v.max() < V_QUIET:
            self._quiet = True
            self._quiet_time = 0.0
            self._egm_at_quiet = float(self._egm_w @ v)
            self._bipolar_at_quiet = float(self._bipolar_w @ v)

    def _diffusion(self, v: np.ndarray, out: np.ndarray) -> None:
        """out = div(D grad v), the same operator as ``laplacian()``, from face fluxes."""
        grid = v.reshape(self._shape)
        lap = out.reshape(self._shape)
        lap.fill(0.0)
        if self._shape[2] > 1:
            flux = self._flux_x
            np.subtract(grid[:, :, 1:], grid[:, :, :-1], out=flux)
            flux *= self._ax
            lap[:, :, :-1] += flux
            lap[:, :, 1:] -= flux
        if self._shape[1] > 1:
            flux = self._flux_y
            np.subtract(grid[:, 1:], grid[:, :-1], out=flux)
            flux *= self._ay
            lap[:, :-1] += flux
            lap[:, 1:] -= flux
        if self._shape[0] > 1:
            flux = self._flux_z
            np.subtract(grid[1:], grid[:-1], out=flux)
            flux *= self._ay
            lap[:-1] += flux
            lap[1:] -= flux

    def _wake(self) -> None:
        """Apply the lazily accumulated quiescent interval (exact for the linearised rest)."""
        if not self._quiet:
            return
        if self._quiet_time > 0:
            self._v *= math.exp(-self._quiet_time / self.tau_out)
            e_open = math.exp(-self._quiet_time / self.tau_open)
            self._h *= e_open
            self._h += 1.0 - e_open
        self._quiet = False
        self._quiet_time = 0.0

    def _outputs(self) -> None:
        if self._quiet:
            decay = math.exp(-self._quiet_time / self.tau_out)
            self.V_electrode = self.V_rest + self._dv * float(self._v[self._e]) * decay
            self.egm = self._egm_at_quiet * decay
            self.egm_bipolar = self._bipolar_at_quiet * decay
            self.activation = 0.0
        else:
            v = self._v
            self.V_electrode = self.V_rest + self._dv * float(v[self._e])
            self.egm = float(self._egm_w @ v)
            self.egm_bipolar = float(self._bipolar_w @ v)
            self.activation = float(np.count_nonzero(v > V_ACT)) / self._n
        t_far = float(self._t_act[self._far])
        self.activation_time_far = t_far / 1000.0 if t_far >= 0 else -1.0
        t1, t2 = float(self._t_act[self._probes[0]]), float(self._t_act[self._probes[1]])
        if t1 >= 0 and t2 >= 0 and t1 != t2 and self._probe_dist > 0:
            cv = self._probe_dist / abs(t2 - t1)
            if cv > 0.05:  # slower than 0.05 m/s: the probes saw different beats
                self.cv_measured = cv

    # ------------------------------------------------------------------ inspection and state
    def potential_map(self) -> np.ndarray:
        """Membrane potential of every node [mV], shape (ny, nx), or (nz, ny, nx) in a slab."""
        self._wake()
        return (self.V_rest + self._dv * self._v).reshape(self._map_shape())

    def activation_map(self) -> np.ndarray:
        """Last activation time of every node [ms], -1 where never activated (a copy), shaped
        as ``potential_map``."""
        return self._t_act.reshape(self._map_shape()).copy()

    def _map_shape(self) -> tuple[int, ...]:
        nz, ny, nx = int(self.nz), int(self.ny), int(self.nx)
        return (ny, nx) if nz == 1 else (nz, ny, nx)

    def _get_fmu_state(self):
        state = {name: getattr(self, name) for name in SIGNALS}
        state.update(origin=self._origin, site_seen=self._site_seen)
        if self._ready:
            state.update(v=self._v.tolist(), h=self._h.tolist(), t_act=self._t_act.tolist(),
                         quiet=self._quiet, quiet_time=self._quiet_time,
                         egm_at_quiet=self._egm_at_quiet,
                         bipolar_at_quiet=self._bipolar_at_quiet)
        return state

    def _set_fmu_state(self, state):
        for name in SIGNALS:
            setattr(self, name, state[name])
        self._origin, self._site_seen = state["origin"], state["site_seen"]
        if "v" in state:
            self._v = np.array(state["v"], dtype=float)
            self._h = np.array(state["h"], dtype=float)
            self._t_act = np.array(state["t_act"], dtype=float)
            self._quiet = bool(state["quiet"])
            self._quiet_time = float(state["quiet_time"])
            self._egm_at_quiet = float(state["egm_at_quiet"])
            self._bipolar_at_quiet = float(state["bipolar_at_quiet"])
