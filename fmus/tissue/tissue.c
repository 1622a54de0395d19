/*
 * Tissue: monodomain myocardium (a fibre, a sheet or a slab) with Mitchell-Schaeffer kinetics,
 * and the electrogram at the lead tip. docs/models/tissue.md.
 *
 *     dv/dt = div(D grad v) + h v^2 (1 - v)/tau_in - v/tau_out + J
 *     dh/dt = (1 - h)/tau_open  if v < v_gate  else  -h/tau_close
 *
 * v is dimensionless (V = V_rest + (V_peak - V_rest) v), time in ms, space in mm; fibres run
 * along x (D_long), across them along y and z (D_trans: transversely isotropic), no-flux
 * boundaries. Forward Euler for v with a 5-point (7-point in a slab) finite-volume stencil
 * (face fluxes), exact exponential update for h, exact
 * exponential relaxation of the electrode node toward the cell's potential. Adaptive
 * substeps: dt while anything depolarises or a stimulus is on, dt_max otherwise; when every
 * node is below V_QUIET and no input is active, the sheet is advanced analytically in O(1)
 * (lazy decay of v and recovery of h). The same arithmetic, in the same order, as the Python
 * edition (cosim_tissue.py), so v and h agree bit for bit; the electrogram sums in another
 * order (agreement to rounding).
 */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

#define V_QUIET 0.01    /* every node below this (1 mV above rest) and no input: quiescent */
#define FRONT_RATE 0.005 /* 1/ms (0.5 mV/ms): a faster depolarisation selects the fine step */
#define V_ACT 0.5       /* a node counts in `activation` above this (-35 mV) */
#define MAX_CUTS 256    /* segments of constant input in one communication step */
#define PI 3.14159265358979323846

typedef struct {
    /* parameters */
    Integer nx, ny, nz, electrode_x, electrode_y, intrinsic_x, intrinsic_y, intrinsic_z;
    Integer intrinsic_reset, intrinsic_cube;
    Real dx, D_long, D_trans, dt, dt_max, tau_in, tau_out, tau_open, tau_close, v_gate;
    Real V_rest, V_peak, C_m, V_activation, g_coupling, electrode_height, ring_spacing;
    Real egm_gain, intrinsic_rate, intrinsic_delay, intrinsic_current, intrinsic_width;
    Real intrinsic_radius;
    /* inputs */
    Real V_source, I_stim, stim_width;
    /* outputs */
    Real V_electrode, activation, egm, egm_bipolar, activation_time_far, cv_measured, substeps;
    Real next_event_time;
    /* derived at initialisation */
    long n, electrode, far, probe1, probe2, sites;
    Real dt_coarse, ax, ay, span, probe_distance, v_activation;
    /* state */
    Integer quiet;
    Real quiet_time, egm_at_quiet, bipolar_at_quiet, origin, site_seen;
    /* offsets of the arrays in the block (bytes) */
    size_t v, h, t_act, rate, egm_w, bipolar_w, site, up;
} Tissue;

#define P(member, start, unit, text) PARAMETER_REAL(Tissue, member, start, unit, text)
#define O(member, start, unit, text) OUTPUT_REAL(Tissue, member, start, unit, text)
static const Variable VARIABLES[] = {
    PARAMETER_INTEGER(Tissue, nx, 81, "nodes along the fibres (x)"),
    PARAMETER_INTEGER(Tissue, ny, 1, "nodes across the fibres (y); 1: a fibre"),
    PARAMETER_INTEGER(Tissue, nz, 1,
                      "layers through the wall (z, across the fibres); 1: a sheet or a fibre"),
    PARAMETER_INTEGER(Tissue, electrode_x, 0, "x index of the electrode node (< 0: 0)"),
    PARAMETER_INTEGER(Tissue, electrode_y, -1,
                      "y index of the electrode node (< 0: the middle row, ny/2)"),
    PARAMETER_INTEGER(Tissue, intrinsic_x, -1,
                      "x index of the intrinsic beats' entry site (< 0: nx - 1, the far edge)"),
    PARAMETER_INTEGER(Tissue, intrinsic_y, -1,
                      "y index of the intrinsic beats' entry site (< 0: the middle row)"),
    PARAMETER_INTEGER(Tissue, intrinsic_z, -1,
                      "z index of the intrinsic beats' entry site (< 0: 0, the electrode's "
                      "surface)"),
    PARAMETER_INTEGER(Tissue, intrinsic_reset, 0,
                      "1: a wave reaching the intrinsic site restarts its cycle (an escape "
                      "focus reset by paced beats); 0: fixed rate (a sinus node)"),
    PARAMETER_INTEGER(Tissue, intrinsic_cube, 0,
                      "1: the intrinsic stimulus covers the nodes within intrinsic_radius of the "
                      "entry site along each axis (a cube); 0: within that distance (a ball)"),
    P(dx, 0.5, "mm", "node spacing"),
    P(D_long, 0.33, "mm**2/ms", "diffusivity along the fibres, sigma/(chi C_m)"),
    P(D_trans, 0.0436, "mm**2/ms", "diffusivity across the fibres (y and z)"),
    P(dt, 0.1, "ms", "substep while anything depolarises or a stimulus is on"),
    P(dt_max, 0.35, "ms", "substep otherwise (at most 0.9 x the stability limit)"),
    P(tau_in, 0.3, "ms", "Mitchell-Schaeffer inward current time constant"),
    P(tau_out, 6.0, "ms", "Mitchell-Schaeffer outward current time constant"),
    P(tau_open, 120.0, "ms", "gate recovery time constant"),
    P(tau_close, 185.0, "ms", "gate closing time constant (human APD calibration)"),
    P(v_gate, 0.13, "", "gate switching threshold (dimensionless)"),
    P(V_rest, -85.0, "mV", "resting potential (v = 0)"),
    P(V_peak, 15.0, "mV", "potential at v = 1"),
    P(C_m, 1.0, "uF/cm**2", "membrane capacitance"),
    P(V_activation, -35.0, "mV",
      "a node's activation time is its upward crossing of this potential"),
    P(g_coupling, 1.0, "mS/cm**2", "conductance pulling the electrode node to V_source"),
    P(electrode_height, 1.0, "mm", "height of the point electrode above the sheet"),
    P(ring_spacing, 10.0, "mm", "tip-to-ring spacing of a bipolar lead (normal to the sheet)"),
    P(egm_gain, 10.0, "mm", "electrogram gain (wall thickness and conductivity ratio)"),
    P(intrinsic_rate, 0.0, "1/min", "rate of intrinsic beats (0: none)"),
    P(intrinsic_delay, 0.5, "s", "time of the first intrinsic beat"),
    P(intrinsic_current, 100.0, "uA/cm**2", "intrinsic stimulus current density"),
    P(intrinsic_width, 2.0, "ms", "intrinsic stimulus duration"),
    P(intrinsic_radius, 1.0, "mm", "nodes within this distance of the entry site are stimulated"),
    INPUT_REAL(Tissue, V_source, -85.0, "mV", "potential of the cell FMU at the electrode"),
    INPUT_REAL(Tissue, I_stim, 0.0, "uA/cm**2",
               "stimulus at the electrode node (> 0 depolarises)"),
    INPUT_REAL(Tissue, stim_width, 0.0, "ms",
               "duration of I_stim from the step start (<= 0 or >= the step: whole step)"),
    O(V_electrode, -85.0, "mV", "potential of the electrode node"),
    O(activation, 0.0, "", "fraction of nodes with v > 0.5 (V > -35 mV)"),
    O(egm, 0.0, "mV", "unipolar electrogram at the tip"),
    O(egm_bipolar, 0.0, "mV", "bipolar electrogram, tip minus ring"),
    O(activation_time_far, -1.0, "s",
      "last activation of the node farthest from the electrode (-1: never)"),
    O(cv_measured, 0.0, "m/s",
      "conduction velocity between two probes on the electrode row (held)"),
    O(substeps, 0.0, "", "substeps taken since initialisation (a work counter)"),
    O(next_event_time, 0.0, "s", "start of the next intrinsic beat (a master lands on it: "
      "docs/scenario-format.md, events); the current time when none is due"),
};
#undef P
#undef O

#define ARRAY(t, member) MODEL_ARRAY(double, t, (t)->member)

static double next_beat(const Tissue *t, double now);

/* The node index a parameter chooses (< 0: the default); -1 after logging if outside. */
static long node_index(long value, long size, long fallback, const char *name, Logger *logger) {
    if (value < 0) return fallback;
    if (value >= size) {
        model_error(logger, "Tissue: %s = %ld is outside the sheet (0..%ld)", name, value,
                    size - 1);
        return -1;
    }
    return value;
}

/* Largest stable forward-Euler step [ms]: diffusion dx^2/(2 sum D) and reaction tau_in. */
static double stability_limit(const Tissue *t) {
    const double total = (t->nx > 1 ? t->D_long : 0.0) + (t->ny > 1 ? t->D_trans : 0.0) +
                         (t->nz > 1 ? t->D_trans : 0.0);
    const double diffusion = total > 0 ? pow(t->dx, 2.0) / (2.0 * total) : INFINITY;
    return diffusion < t->tau_in ? diffusion : t->tau_in;
}

/* The intrinsic stimulus' nodes: within intrinsic_radius of the entry site (a ball), or
 * within it along each axis (a cube, intrinsic_cube = 1). */
static long count_sites(const Tissue *t, long sx, long sy, long sz, int *site) {
    const double radius = (t->intrinsic_radius > 0.0 ? t->intrinsic_radius : 0.0) + 1e-9;
    long count = 0, x, y, z;
    for (z = 0; z < t->nz; z++)
        for (y = 0; y < t->ny; y++)
            for (x = 0; x < t->nx; x++) {
                const long ax = labs(x - sx), ay = labs(y - sy), az = labs(z - sz);
                const long widest = ax > ay ? (ax > az ? ax : az) : (ay > az ? ay : az);
                const double distance = t->intrinsic_cube
                                            ? (double)widest * t->dx
                                            : sqrt((double)(ax * ax + ay * ay + az * az)) * t->dx;
                if (distance <= radius) {
                    if (site != NULL) site[count] = (int)((z * t->ny + y) * t->nx + x);
                    count++;
                }
            }
    return count;
}

static long arrays(const void *model, Logger *logger) {
    const Tissue *t = (const Tissue *)model;
    long n, sites, sx, sy, sz;
    double limit;
    if (t->nx < 1 || t->ny < 1 || t->nz < 1 || !(t->dx > 0) || t->D_long < 0 ||
        t->D_trans < 0) {
        model_error(logger, "Tissue: need nx, ny, nz >= 1, dx > 0, D >= 0 (nx=%d, ny=%d, "
                    "nz=%d, dx=%g, D_long=%g, D_trans=%g)", t->nx, t->ny, t->nz, t->dx,
                    t->D_long, t->D_trans);
        return -1;
    }
    limit = stability_limit(t);
    if (!(0 < t->dt && t->dt <= limit)) {
        model_error(logger, "Tissue: dt = %g ms is unstable for forward Euler; need 0 < dt <= "
                    "%.4g ms = min(dx^2/(2 (D_long + D_trans per transverse axis)), tau_in) "
                    "at dx = %g mm", t->dt, limit, t->dx);
        return -1;
    }
    n = (long)t->nx * t->ny * t->nz;
    sx = node_index(t->intrinsic_x, t->nx, t->nx - 1, "intrinsic_x", logger);
    sy = node_index(t->intrinsic_y, t->ny, t->ny / 2, "intrinsic_y", logger);
    sz = node_index(t->intrinsic_z, t->nz, 0, "intrinsic_z", logger);
    if (sx < 0 || sy < 0 || sz < 0 ||
        node_index(t->electrode_x, t->nx, 0, "electrode_x", logger) < 0 ||
        node_index(t->electrode_y, t->ny, t->ny / 2, "electrode_y", logger) < 0)
        return -1;
    sites = count_sites(t, sx, sy, sz, NULL);
    /* v, h, t_act, rate, egm_w, bipolar_w, up (1.0: activated before the substep); sites */
    return (long)(7 * n * sizeof(double) + sites * sizeof(int));
}

/* out = the x part of div(D grad v) on one row (row = z ny + y): the flux through each face
 * along x. */
static void diffusion_along(const Tissue *t, const double *restrict v, double *restrict out,
                            long y) {
    const long nx = t->nx;
    const double ax = t->ax, *row = v + y * nx;
    double *lap = out + y * nx;
    long i;
    if (nx == 1) {
        lap[0] = 0.0;
        return;
    }
    lap[0] = (row[1] - row[0]) * ax;
    for (i = 1; i < nx - 1; i++) lap[i] = (row[i + 1] - row[i]) * ax - (row[i] - row[i - 1]) * ax;
    lap[nx - 1] = 0.0 - (row[nx - 1] - row[nx - 2]) * ax;
}

/* rate += the fluxes through the faces across the fibres along one axis (neighbours `stride`
 * nodes away: nx for y, nx ny for z) on nodes [first, last), the next face's before the
 * previous one's, as the Python edition adds them; with `membrane`, then the Mitchell-Schaeffer
 * membrane rate, and the return value is 1.0 if a rate exceeds FRONT_RATE (else `fast`). One
 * loop per kind of row, without branches, so that the compiler vectorises it (flags as
 * doubles); inline, so that the choice of loop is made once per row (a call costs 7 % on a
 * 100 x 100 sheet). */
#define MEMBRANE(i) ((((1.0 - v[i]) * h[i] * v[i]) * k_in - k_out) * v[i])
#define NEXT(i) (v[i + stride] - v[i]) * a
#define PREVIOUS(i) (v[i] - v[i - stride]) * a
#define ACCUMULATE(expression)                                                  \
    for (i = first; i < last; i++) {                                            \
        const double r = (expression);                                          \
        rate[i] = r;                                                            \
        fast = r > FRONT_RATE ? 1.0 : fast;                                     \
    }
#define ADD(expression) \
    for (i = first; i < last; i++) rate[i] = (expression);
static inline double across(const double *restrict v, const double *restrict h,
                            double *restrict rate, long first, long last, long stride, double a,
                            int next, int previous, int membrane, double k_in, double k_out,
                            double fast) {
    long i;
    if (membrane) {
        if (next && previous) {
            ACCUMULATE(rate[i] + NEXT(i) - PREVIOUS(i) + MEMBRANE(i))
        } else if (next) {
            ACCUMULATE(rate[i] + NEXT(i) + MEMBRANE(i))
        } else if (previous) {
            ACCUMULATE(rate[i] - PREVIOUS(i) + MEMBRANE(i))
        } else {
            ACCUMULATE(rate[i] + MEMBRANE(i))
        }
    } else if (next && previous) {
        ADD(rate[i] + NEXT(i) - PREVIOUS(i))
    } else if (next) {
        ADD(rate[i] + NEXT(i))
    } else if (previous) {
        ADD(rate[i] - PREVIOUS(i))
    }
    return fast;
}
#undef ADD
#undef ACCUMULATE
#undef PREVIOUS
#undef NEXT
#undef MEMBRANE

/* rate = div(D grad v) + the membrane rate on nodes [from, to) of a row (row = z ny + y; rate
 * holds the x part already): the y fluxes, then the z ones, then the membrane. Returns 1.0 if
 * a rate exceeds FRONT_RATE (else `fast`). */
static double rates(const Tissue *t, const double *restrict v, const double *restrict h,
                    double *restrict rate, long row, long from, long to, double k_in,
                    double k_out, double fast) {
    const long nx = t->nx, ny = t->ny, first = row * nx + from, last = row * nx + to;
    const long y = row % ny, z = row / ny;
    const int y_next = y + 1 < ny, y_previous = y > 0;
    if (t->nz == 1)
        return across(v, h, rate, first, last, nx, t->ay, y_next, y_previous, 1, k_in, k_out,
                      fast);
    across(v, h, rate, first, last, nx, t->ay, y_next, y_previous, 0, k_in, k_out, fast);
    return across(v, h, rate, first, last, nx * ny, t->ay, z + 1 < t->nz, z > 0, 1, k_in,
                  k_out, fast);
}

/* One substep of dt for every node: v += rate dt (rate becomes rate dt), the gate's exact
 * update; on fine substeps the nodes' 'up' flags (1.0: v >= v_act, the activation threshold,
 * before the substep). Returns 1.0 if a node crossed v_act upwards (fine substeps only). */
static double update(double *restrict v, double *restrict h, double *restrict rate,
                     double *restrict up, long n, double dt, double v_gate, double e_open,
                     double e_close, int fine, double v_act) {
    double crossed = 0.0;
    long i;
    if (fine) {
        for (i = 0; i < n; i++) {
            const double r = rate[i] * dt, v_old = v[i], v_new = v_old + r;
            const int open = v_old < v_gate, was_up = v_old >= v_act;
            rate[i] = r;
            up[i] = was_up ? 1.0 : 0.0;
            v[i] = v_new;
            const double gate = open ? 1.0 : 0.0; /* h relaxes exactly toward 1 or 0 */
            h[i] = gate + (h[i] - gate) * (open ? e_open : e_close);
            crossed = v_new >= v_act && !was_up ? 1.0 : crossed;
        }
    } else {
        for (i = 0; i < n; i++) {
            const int open = v[i] < v_gate;
            const double gate = open ? 1.0 : 0.0;
            v[i] += rate[i] * dt;
            h[i] = gate + (h[i] - gate) * (open ? e_open : e_close);
        }
    }
    return crossed;
}

/* out = div(D grad v), the whole sheet or slab (for the electrogram weights). */
static void diffusion(const Tissue *t, const double *v, double *out) {
    const long nx = t->nx, ny = t->ny, layer = nx * ny;
    long row, i;
    for (row = 0; row < ny * t->nz; row++) {
        const long y = row % ny, z = row / ny;
        diffusion_along(t, v, out, row);
        for (i = row * nx; i < (row + 1) * nx; i++) {
            if (y + 1 < ny) out[i] += (v[i + nx] - v[i]) * t->ay;
            if (y > 0) out[i] -= (v[i] - v[i - nx]) * t->ay;
            if (z + 1 < t->nz) out[i] += (v[i + layer] - v[i]) * t->ay;
            if (z > 0) out[i] -= (v[i] - v[i - layer]) * t->ay;
        }
    }
}

static void outputs(Tissue *t) {
    const double *v = ARRAY(t, v), *t_act = ARRAY(t, t_act);
    double t_far, t1, t2;
    if (t->quiet) {
        const double decay = exp(-t->quiet_time / t->tau_out);
        t->V_electrode = t->V_rest + t->span * v[t->electrode] * decay;
        t->egm = t->egm_at_quiet * decay;
        t->egm_bipolar = t->bipolar_at_quiet * decay;
        t->activation = 0.0;
    } else {
        const double *w = ARRAY(t, egm_w), *wb = ARRAY(t, bipolar_w);
        double egm = 0.0, bipolar = 0.0;
        long i, active = 0;
        for (i = 0; i < t->n; i++) {
            egm += w[i] * v[i];
            bipolar += wb[i] * v[i];
            active += v[i] > V_ACT;
        }
        t->V_electrode = t->V_rest + t->span * v[t->electrode];
        t->egm = egm;
        t->egm_bipolar = bipolar;
        t->activation = (double)active / (double)t->n;
    }
    t_far = t_act[t->far];
    t->activation_time_far = t_far >= 0 ? t_far / 1000.0 : -1.0;
    t1 = t_act[t->probe1];
    t2 = t_act[t->probe2];
    if (t1 >= 0 && t2 >= 0 && t1 != t2 && t->probe_distance > 0) {
        const double cv = t->probe_distance / fabs(t2 - t1);
        if (cv > 0.05) t->cv_measured = cv; /* slower: the probes saw different beats */
    }
}

static int initialize(void *model, double start_time, Logger *logger) {
    Tissue *t = (Tissue *)model;
    const long nx = t->nx, ny = t->ny, nz = t->nz, n = (long)nx * ny * nz;
    const double dx = t->dx, dx2 = pow(dx, 2.0);
    const long ex = t->electrode_x < 0 ? 0 : t->electrode_x;
    const long ey = t->electrode_y < 0 ? ny / 2 : t->electrode_y;
    const long sx = t->intrinsic_x < 0 ? nx - 1 : t->intrinsic_x;
    const long sy = t->intrinsic_y < 0 ? ny / 2 : t->intrinsic_y;
    const long sz = t->intrinsic_z < 0 ? 0 : t->intrinsic_z;
    const double limit = stability_limit(t);
    const double coarse = t->dt_max < 0.9 * limit ? t->dt_max : 0.9 * limit;
    const double ring = t->electrode_height + (t->ring_spacing > 0.0 ? t->ring_spacing : 0.0);
    double scale, *w, *wb, *scratch, *v, *h, *t_act;
    long i, x, y, z;
    (void)logger;
    t->n = n;
    t->dt_coarse = t->dt > coarse ? t->dt : coarse;
    t->ax = t->D_long / dx2;
    t->ay = t->D_trans / dx2;
    t->span = t->V_peak - t->V_rest;
    t->v_activation = (t->V_activation - t->V_rest) / t->span;
    t->electrode = ey * nx + ex; /* on layer z = 0, the surface the lead touches */
    t->far = ((nz - 1) * ny + (ey <= (ny - 1) / 2.0 ? ny - 1 : 0)) * nx +
             (ex <= (nx - 1) / 2.0 ? nx - 1 : 0);
    { /* CV probes on the electrode row, 1/4 and 3/4 of the way from the electrode to the far
       * end: on one side, so that a wave from the electrode passes them in turn */
        const long far_x = t->far % nx, reach = far_x >= ex ? far_x - ex : ex - far_x;
        const long side = far_x >= ex ? 1 : -1;
        t->probe1 = ey * nx + ex + side * (reach / 4);
        t->probe2 = ey * nx + ex + side * (3 * reach / 4);
        t->probe_distance = (double)(3 * reach / 4 - reach / 4) * dx;
    }
    t->v = sizeof(Tissue);
    t->h = t->v + n * sizeof(double);
    t->t_act = t->h + n * sizeof(double);
    t->rate = t->t_act + n * sizeof(double);
    t->egm_w = t->rate + n * sizeof(double);
    t->bipolar_w = t->egm_w + n * sizeof(double);
    t->up = t->bipolar_w + n * sizeof(double);
    t->site = t->up + n * sizeof(double);
    t->sites = count_sites(t, sx, sy, sz, MODEL_ARRAY(int, t, t->site));
    /* electrogram weights: phi = w . v, w = scale L(1/r) (summation by parts, tissue.md) */
    scale = t->span * t->egm_gain * dx2 / (4.0 * PI * t->D_long);
    w = ARRAY(t, egm_w);
    wb = ARRAY(t, bipolar_w);
    scratch = ARRAY(t, rate);
    for (z = 0; z < nz; z++) /* the electrodes lie outside the slab, beyond layer 0 */
        for (y = 0; y < ny; y++)
            for (x = 0; x < nx; x++) {
                const double lx = (double)(x - ex) * dx, ly = (double)(y - ey) * dx;
                const double lateral = lx * lx + ly * ly, depth = (double)z * dx;
                const long i_node = (z * ny + y) * nx + x;
                scratch[i_node] = 1.0 / sqrt(lateral + pow(t->electrode_height + depth, 2.0));
                wb[i_node] = 1.0 / sqrt(lateral + pow(ring + depth, 2.0));
            }
    diffusion(t, scratch, w);
    diffusion(t, wb, scratch);
    for (i = 0; i < n; i++) {
        w[i] *= scale;
        wb[i] = w[i] - scale * scratch[i];
    }
    v = ARRAY(t, v);
    h = ARRAY(t, h);
    t_act = ARRAY(t, t_act);
    for (i = 0; i < n; i++) {
        v[i] = 0.0;
        h[i] = 1.0;
        t_act[i] = -1.0;
    }
    t->quiet = 1;
    t->quiet_time = 0.0;
    t->egm_at_quiet = t->bipolar_at_quiet = 0.0;
    t->origin = 1000.0 * t->intrinsic_delay; /* ms: time of intrinsic beat k = 0 */
    t->site_seen = -1.0; /* ms: last activation of the intrinsic site already handled */
    t->substeps = 0.0;
    outputs(t);
    t->next_event_time = next_beat(t, 1000.0 * start_time) / 1000.0;
    return 0;
}

/* Apply the lazily accumulated quiescent interval (exact for the linearised rest). */
static void wake(Tissue *t) {
    double *v = ARRAY(t, v), *h = ARRAY(t, h);
    long i;
    if (!t->quiet) return;
    if (t->quiet_time > 0) {
        const double decay = exp(-t->quiet_time / t->tau_out);
        const double e_open = exp(-t->quiet_time / t->tau_open);
        for (i = 0; i < t->n; i++) {
            v[i] *= decay;
            h[i] = h[i] * e_open + (1.0 - e_open);
        }
    }
    t->quiet = 0;
    t->quiet_time = 0.0;
}

/* Integrate a segment of constant inputs of `length` ms starting at t_start (ms). */
static void advance(Tissue *t, double t_start, double length, double j_e, double j_site) {
    const double vs = (t->V_source - t->V_rest) / t->span;
    const double g = t->g_coupling / t->C_m;
    const double k_in = 1.0 / t->tau_in, k_out = 1.0 / t->tau_out;
    const double v_act = t->v_activation;
    const long n = t->n, e = t->electrode, nx = t->nx, ex = e % nx, ey = e / nx;
    double *v, *h, *rate, *t_act;
    double *up;
    const int *site;
    double now = 0.0;
    long i, row;
    if (t->quiet && j_e == 0.0 && j_site == 0.0 && fabs(vs) < V_QUIET) {
        t->quiet_time += length;
        return;
    }
    wake(t);
    v = ARRAY(t, v);
    h = ARRAY(t, h);
    rate = ARRAY(t, rate);
    t_act = ARRAY(t, t_act);
    up = ARRAY(t, up);
    site = MODEL_ARRAY(int, t, t->site);
    while (now < length - 1e-12) {
        double own, dt, e_open, e_close, relax;
        double fast = 0.0, crossed;
        int fine;
        for (row = 0; row < t->ny * t->nz; row++) { /* the electrode's row is row ey */
            diffusion_along(t, v, rate, row);
            if (row != ey) {
                fast = rates(t, v, h, rate, row, 0, nx, k_in, k_out, fast);
            } else { /* the electrode node's rate counts with its coupling, below */
                fast = rates(t, v, h, rate, row, 0, ex, k_in, k_out, fast);
                rates(t, v, h, rate, row, ex, ex + 1, k_in, k_out, fast);
                fast = rates(t, v, h, rate, row, ex + 1, nx, k_in, k_out, fast);
            }
        }
        if (j_e != 0.0) rate[e] += j_e;
        if (j_site != 0.0)
            for (i = 0; i < t->sites; i++) rate[site[i]] += j_site;
        own = rate[e] + g * (vs - v[e]); /* the electrode node's net rate */
        fine = j_e != 0.0 || j_site != 0.0 || fast != 0.0 || own > FRONT_RATE;
        dt = fine ? t->dt : t->dt_coarse;
        if (length - now < dt) dt = length - now;
        e_open = exp(-dt / t->tau_open);
        e_close = exp(-dt / t->tau_close);
        crossed = update(v, h, rate, up, n, dt, t->v_gate, e_open, e_close, fine, v_act);
        if (g > 0) {
            relax = exp(-g * dt);
            v[e] = vs + (v[e] - vs) * relax;
            if (fine && v[e] >= v_act && up[e] == 0.0) crossed = 1.0;
        }
        if (crossed != 0.0) { /* a node can only cross v_act upwards on a front: fine substeps */
            for (i = 0; i < n; i++)
                if (v[i] >= v_act && up[i] == 0.0) {
                    const double old = v[i] - rate[i];
                    const double rise = v[i] - old > 1e-12 ? v[i] - old : 1e-12;
                    double fraction = (v_act - old) / rise;
                    fraction = fraction < 0.0 ? 0.0 : fraction > 1.0 ? 1.0 : fraction;
                    t_act[i] = t_start + now + dt * fraction;
                }
        }
        now += dt;
        t->substeps += 1.0;
    }
    if (fabs(vs) < V_QUIET) {
        double highest = -INFINITY;
        for (i = 0; i < n; i++) highest = v[i] > highest ? v[i] : highest;
        if (highest < V_QUIET) {
            const double *w = ARRAY(t, egm_w), *wb = ARRAY(t, bipolar_w);
            double egm = 0.0, bipolar = 0.0;
            for (i = 0; i < n; i++) {
                egm += w[i] * v[i];
                bipolar += wb[i] * v[i];
            }
            t->quiet = 1;
            t->quiet_time = 0.0;
            t->egm_at_quiet = egm;
            t->bipolar_at_quiet = bipolar;
        }
    }
}

/* The start of the next intrinsic beat after `now` (ms), `now` if there is none. */
static double next_beat(const Tissue *t, double now) {
    double period, k, due;
    if (t->intrinsic_rate <= 0 || t->sites == 0) return now;
    period = 60000.0 / t->intrinsic_rate;
    k = floor((now - t->origin) / period);
    if (k < 0) k = 0;
    due = t->origin + k * period;
    while (due <= now + 1e-9) {
        k += 1;
        due = t->origin + k * period;
    }
    return due;
}

/* A wave from elsewhere activated the intrinsic site: its next beat is a period later. */
static void reset_intrinsic_cycle(Tissue *t) {
    const double *t_act = ARRAY(t, t_act);
    const int *site = MODEL_ARRAY(int, t, t->site);
    const double period = 60000.0 / t->intrinsic_rate;
    double t_site = t_act[site[0]], own;
    long i;
    for (i = 1; i < t->sites; i++)
        if (t_act[site[i]] > t_site) t_site = t_act[site[i]];
    if (t_site <= t->site_seen) return;
    t->site_seen = t_site;
    own = t->origin + floor((t_site - t->origin) / period) * period;
    if (!(t_site >= t->origin && t_site - own < t->intrinsic_width + 10.0))
        t->origin = t_site + period;
}

/* Intrinsic stimulus windows overlapping [t0, t0 + length], relative to t0 (ms); count. */
static int intrinsic_windows(const Tissue *t, double t0, double length, double *starts,
                             double *ends, int capacity) {
    double period, first, k;
    int count = 0;
    if (t->intrinsic_rate <= 0 || t->sites == 0) return 0;
    period = 60000.0 / t->intrinsic_rate;
    first = t->origin;
    k = floor((t0 - first - t->intrinsic_width) / period);
    if (k < 0) k = 0;
    while (first + k * period < t0 + length) {
        const double start = first + k * period - t0, end = start + t->intrinsic_width;
        if (end > 0) {
            if (count == capacity) return -1;
            starts[count] = start >= 0.0 ? start : 0.0;
            ends[count] = length < end ? length : end;
            count++;
        }
        k += 1;
    }
    return count;
}

/* Adds `value` to the sorted, duplicate-free cuts if it lies in [0, length]. */
static int add_cut(double *cuts, int count, double value, double length) {
    int i, j;
    if (!(0.0 <= value && value <= length)) return count;
    for (i = 0; i < count && cuts[i] < value; i++) {
    }
    if (i < count && cuts[i] == value) return count;
    for (j = count; j > i; j--) cuts[j] = cuts[j - 1];
    cuts[i] = value;
    return count + 1;
}

static int step(void *model, double time, double step_size, Logger *logger) {
    Tissue *t = (Tissue *)model;
    const double t0 = time * 1000.0, length = step_size * 1000.0;
    const double stim_end = t->stim_width <= 0 || t->stim_width >= length ? length
                                                                          : t->stim_width;
    const double j_unit = 1.0 / (t->C_m * t->span);
    double starts[MAX_CUTS / 2 - 2], ends[MAX_CUTS / 2 - 2], cuts[MAX_CUTS];
    int windows, count = 0, i, k;
    windows = intrinsic_windows(t, t0, length, starts, ends, MAX_CUTS / 2 - 2);
    if (windows < 0) {
        model_error(logger, "Tissue: more than %d intrinsic beats in one step of %g ms: lower "
                    "intrinsic_rate or the communication step", MAX_CUTS / 2 - 2, length);
        return -1;
    }
    count = add_cut(cuts, count, 0.0, length);
    count = add_cut(cuts, count, length, length);
    if (t->I_stim != 0.0) count = add_cut(cuts, count, stim_end, length);
    for (k = 0; k < windows; k++) {
        count = add_cut(cuts, count, starts[k], length);
        count = add_cut(cuts, count, ends[k], length);
    }
    for (i = 0; i + 1 < count; i++) {
        const double a = cuts[i], b = cuts[i + 1], middle = 0.5 * (a + b);
        double j_e, j_site;
        int on = 0;
        if (b - a <= 1e-12) continue;
        j_e = t->I_stim != 0.0 && middle < stim_end ? t->I_stim * j_unit : 0.0;
        for (k = 0; k < windows; k++) on |= starts[k] <= middle && middle < ends[k];
        j_site = on ? t->intrinsic_current * j_unit : 0.0;
        advance(t, t0 + a, b - a, j_e, j_site);
    }
    if (t->intrinsic_reset && t->intrinsic_rate > 0 && t->sites > 0) reset_intrinsic_cycle(t);
    outputs(t);
    t->next_event_time = next_beat(t, t0 + length) / 1000.0;
    return 0;
}

/* The membrane potential of every node (mV), [z][y][x]: as V_electrode for the electrode
 * node, the quiescent interval's decay included. */
static void membrane_potentials(const void *model, double *out) {
    const Tissue *t = (const Tissue *)model;
    const double *v = ARRAY(t, v);
    long i;
    if (t->quiet) {
        const double decay = exp(-t->quiet_time / t->tau_out);
        for (i = 0; i < t->n; i++) out[i] = t->V_rest + t->span * v[i] * decay;
    } else {
        for (i = 0; i < t->n; i++) out[i] = t->V_rest + t->span * v[i];
    }
}

static const ArrayOutput ARRAY_OUTPUTS[] = {
    {"V", -85.0, "mV", "membrane potential of every node, indexed [z][y][x] (a map of the "
     "tissue; the FMI 3.0 edition only)", "nz ny nx", membrane_potentials},
};

const Model MODEL = {
    "Tissue",
    "Monodomain myocardium, Mitchell-Schaeffer kinetics, electrogram at the lead tip",
    VARIABLES,
    sizeof VARIABLES / sizeof VARIABLES[0],
    sizeof(Tissue),
    1.0,
    0.001,
    arrays,
    initialize,
    step,
    ARRAY_OUTPUTS, /* V, the map (FMI 3.0 only) */
    sizeof ARRAY_OUTPUTS / sizeof ARRAY_OUTPUTS[0],
};
