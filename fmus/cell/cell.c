/*
 * Cell: ventricular myocyte under the pacing electrode, Mitchell & Schaeffer 2003
 * (Bull Math Biol 65:767) loaded by the surrounding tissue. docs/models/cell.md.
 *
 *     dv/dt = h v^2 (1 - v) / tau_in - v / tau_out + J_stim + (g_load / C_m)(v_tissue - v)
 *     dh/dt = (1 - h) / tau_open  if v < v_gate,   -h / tau_close  otherwise
 *     V = V_rest + (V_peak - V_rest) v,   J_stim = I_stim / (C_m (V_peak - V_rest))
 *
 * Time inside the model is in ms; the FMU's communication time is in s. I_stim is applied for
 * stim_width ms from the start of the step (<= 0 or >= the step: the whole step).
 *
 * Numerics: Rosenbrock-Euler (exponential Euler with the exact df/dv = a) for v, substeps
 * limited so that the step's change |dv| = |f| (e^(a dt) - 1)/a <= DV_MAX (by construction, also
 * near threshold where f ~ 0 and a > 0) and |dh| <= DH_MAX, and the stimulus's end is hit
 * exactly; exact exponential update of h over each substep. The same arithmetic, in the same order, as the
 * Python edition (cosim_cell.py), so that both agree bit for bit.
 */
#include <math.h>
#include <stddef.h>

#include "model.h"

#define DV_MAX 0.01 /* largest change of v in one substep (1 mV at the defaults) */
#define DH_MAX 0.01 /* largest change of h in one substep */
#define DT_MAX 1.0  /* ms: longest substep */

/* (e^z - 1)/z, the growth of a Rosenbrock-Euler step (1 + z/2 near 0). */
static double phi1(double z) { return fabs(z) > 1e-9 ? expm1(z) / z : 1.0 + 0.5 * z; }

typedef struct {
    /* parameters */
    Real tau_in, tau_out, tau_open, tau_close, v_gate, V_rest, V_peak, C_m, g_load;
    Real V_capture_threshold;
    /* inputs */
    Real I_stim, stim_width, V_tissue;
    /* outputs */
    Real V, v, h, activation_time, apd90;
    Integer captured, beat_count;
    /* internal state: the action potential being tracked */
    Integer in_action_potential; /* an upstroke was seen and APD90 is not reached yet */
    Real upstroke_ms;            /* time of that upstroke (ms) */
    Real peak;                   /* highest v since that upstroke */
} Cell;

static const Variable VARIABLES[] = {
    PARAMETER_REAL(Cell, tau_in, 0.027, "ms",
                   "inward (depolarising) current time constant (calibrated)"),
    PARAMETER_REAL(Cell, tau_out, 0.54, "ms",
                   "outward (repolarising) current time constant (calibrated)"),
    PARAMETER_REAL(Cell, tau_open, 120.0, "ms", "gate recovery time constant"),
    PARAMETER_REAL(Cell, tau_close, 185.0, "ms",
                   "gate closing time constant (human APD calibration)"),
    PARAMETER_REAL(Cell, v_gate, 0.13, "", "gate switching threshold (dimensionless)"),
    PARAMETER_REAL(Cell, V_rest, -85.0, "mV", "resting membrane potential"),
    PARAMETER_REAL(Cell, V_peak, 40.0, "mV", "potential at v = 1 (calibrated: overshoot)"),
    PARAMETER_REAL(Cell, C_m, 1.0, "uF/cm**2", "membrane capacitance"),
    PARAMETER_REAL(Cell, g_load, 6.0, "mS/cm**2",
                   "electrotonic load of the surrounding tissue (calibrated)"),
    PARAMETER_REAL(Cell, V_capture_threshold, -40.0, "mV",
                   "an upstroke crossing this potential is a beat"),
    INPUT_REAL(Cell, I_stim, 0.0, "uA/cm**2", "stimulus current density, > 0 depolarises"),
    INPUT_REAL(Cell, stim_width, 0.0, "ms", "stimulus duration from the step start (<= 0: step)"),
    INPUT_REAL(Cell, V_tissue, -85.0, "mV", "potential of the surrounding tissue node"),
    OUTPUT_REAL(Cell, V, -85.0, "mV", "membrane potential"),
    OUTPUT_REAL(Cell, v, 0.0, "", "dimensionless potential"),
    OUTPUT_REAL(Cell, h, 1.0, "", "inactivation gate"),
    OUTPUT_REAL(Cell, activation_time, -1.0, "s", "time of the last upstroke"),
    OUTPUT_REAL(Cell, apd90, 0.0, "ms", "APD90 of the last completed action potential"),
    OUTPUT_INTEGER(Cell, captured, 0, "1 in a step where the membrane fired, else 0"),
    OUTPUT_INTEGER(Cell, beat_count, 0, "number of upstrokes so far"),
};

static int initialize(void *model, double start_time, Logger *logger) {
    Cell *c = (Cell *)model;
    (void)start_time;
    if (c->tau_in <= 0 || c->tau_out <= 0 || c->tau_open <= 0 || c->tau_close <= 0) {
        model_error(logger, "Cell: time constants must be positive (tau_in = %g, tau_out = %g, "
                    "tau_open = %g, tau_close = %g ms)", c->tau_in, c->tau_out, c->tau_open,
                    c->tau_close);
        return -1;
    }
    c->V = c->V_rest + (c->V_peak - c->V_rest) * c->v;
    c->in_action_potential = 0;
    c->peak = 0.0;
    return 0;
}

static int step(void *model, double time, double step_size, Logger *logger) {
    Cell *c = (Cell *)model;
    const double span = c->V_peak - c->V_rest;
    double t = time * 1000.0;
    const double end = t + step_size * 1000.0;
    const double j_stim = c->I_stim / (c->C_m * span);
    const double k_in = 1.0 / c->tau_in, k_out = 1.0 / c->tau_out;
    const double load = c->g_load / c->C_m;
    const double v_tissue = (c->V_tissue - c->V_rest) / span;
    const double threshold = (c->V_capture_threshold - c->V_rest) / span;
    double stim_end = 0.0 < c->stim_width && c->stim_width < end - t ? t + c->stim_width : end;
    double v = c->v, h = c->h;
    int captured = 0;
    (void)logger;
    if (c->I_stim == 0.0) stim_end = t;
    if (stim_end == t && v < 1e-7 && fabs(v_tissue) < 1e-7) { /* at rest: exact, in one go */
        const double dt = end - t;
        h = 1.0 - (1.0 - h) * exp(-dt / c->tau_open);
        v *= exp(-dt / c->tau_out);
        t = end;
    }
    while (t < end - 1e-12) {
        const int stimulating = t < stim_end;
        const double edge = stimulating ? stim_end : end; /* the pulse's end is hit exactly */
        /* Rosenbrock-Euler: v += dt phi1(dt a) f(v), a = df/dv at the substep's start */
        double f = h * v * v * (1.0 - v) * k_in - v * k_out + load * (v_tissue - v);
        const double a = h * v * (2.0 - 3.0 * v) * k_in - k_out - load;
        double dt = DT_MAX < edge - t ? DT_MAX : edge - t;
        double rate, v_new;
        if (stimulating) f += j_stim;
        if (fabs(f) * dt * phi1(a * dt) > DV_MAX) { /* |dv| = |f| (e^(a dt) - 1)/a <= DV_MAX: */
            const double ratio = DV_MAX * a / fabs(f); /* the largest such dt (|dv| grows) */
            if (ratio > -1.0) {
                const double limit = a != 0.0 ? log1p(ratio) / a : DV_MAX / fabs(f);
                if (limit < dt) dt = limit;
            }
        }
        rate = v < c->v_gate ? (1.0 - h) / c->tau_open : h / c->tau_close;
        if (rate * dt > DH_MAX) dt = DH_MAX / rate;
        v_new = v + dt * f * phi1(a * dt);
        if (v < c->v_gate)
            h = 1.0 - (1.0 - h) * exp(-dt / c->tau_open);
        else
            h *= exp(-dt / c->tau_close);
        t = edge - t - dt < 1e-12 ? edge : t + dt;
        if (v < threshold && threshold <= v_new && !c->in_action_potential) {
            c->in_action_potential = 1;
            c->upstroke_ms = t - dt * (v_new - threshold) / (v_new - v);
            c->peak = v_new;
            captured = 1;
            c->beat_count += 1;
            c->activation_time = c->upstroke_ms / 1000.0;
        }
        if (c->in_action_potential) {
            double level;
            if (v_new > c->peak) c->peak = v_new;
            level = 0.1 * c->peak;
            if (v_new < level && level <= v && t - c->upstroke_ms > 20.0) {
                const double crossing = t - dt * (level - v_new) / (v - v_new);
                c->apd90 = crossing - c->upstroke_ms;
                c->in_action_potential = 0;
            }
        }
        v = v_new;
    }
    c->v = v;
    c->h = h;
    c->V = c->V_rest + span * v;
    c->captured = captured;
    return 0;
}

const Model MODEL = {
    "Cell",
    "Mitchell-Schaeffer ventricular myocyte under the pacing electrode",
    VARIABLES,
    sizeof VARIABLES / sizeof VARIABLES[0],
    sizeof(Cell),
    1.0,   /* DefaultExperiment: 1 s */
    0.001, /* at the library's 1 ms communication step */
    NULL,
    initialize,
    step,
    NULL, /* no array outputs */
    0,
};
