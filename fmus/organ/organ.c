/*
 * Organ: left heart and systemic circulation, lumped; a time-varying elastance ventricle in a
 * closed loop. docs/models/organ.md.
 *
 *     P_lv = E(t) (V_lv - V_0),   E(t) = E_min + (E_max - E_min) e(t)
 *     P_a = V_a / C_a,  P_v = V_v / C_v             (stressed volumes of the two vessel pools)
 *     Q_ao = max(0, (P_lv - P_a) / (R_av + R_c))    aortic valve (diode) into the Windkessel
 *     Q_mv = max(0, (P_v - P_lv) / R_mv)            mitral valve (diode) from the venous pool
 *     Q_p  = (P_a - P_v) / R_p                      peripheral resistance
 *     dV_lv = Q_mv - Q_ao,  dV_a = Q_ao - Q_p,  dV_v = Q_p - Q_mv
 *     P_ao = P_a + R_c Q_ao                         aortic root pressure
 *
 * Excitation-contraction: the tissue's activation drives the contraction state through two
 * first-order lags, a -> c -> e, each with time constant tau_act while rising and tau_rel
 * while falling. Classical RK4 (substeps of at most h_max and a quarter of the loop's fastest
 * time constant). Beats are detected from activation crossing activation_threshold upward;
 * per-beat haemodynamics are published at each onset. The same arithmetic, in the same
 * order, as the Python edition (cosim_organ.py).
 */
#include <math.h>
#include <stddef.h>

#include "model.h"

typedef struct {
    /* parameters */
    Real E_max, E_min, V_0, tau_act, tau_rel, R_av, R_mv, R_c, R_p, C_a, C_v, V_total;
    Real V_unstressed, V_lv_init, P_a_init, activation_threshold, asystole_timeout, h_max;
    /* input */
    Real activation;
    /* outputs */
    Real P_lv, V_lv, P_ao, P_ven, Q_ao, P_sys, P_dia, EDV, ESV, stroke_volume;
    Real ejection_fraction, cardiac_output, heart_rate;
    Integer beat_count;
    /* state: volumes (mL), contraction lags, beat detection and the current beat's window */
    Real v_lv, v_a, v_v, c, e, t, last_onset, window_start;
    Real win_max, win_min, win_vmin, win_edv, win_flow, h_limit;
    Integer armed;
} Organ;

#define P(member, start, unit, text) PARAMETER_REAL(Organ, member, start, unit, text)
#define O(member, unit, text) OUTPUT_REAL(Organ, member, 0.0, unit, text)
static const Variable VARIABLES[] = {
    P(E_max, 2.8, "mmHg/mL", "end-systolic (maximal) LV elastance"),
    P(E_min, 0.06, "mmHg/mL", "diastolic (minimal) LV elastance"),
    P(V_0, 10.0, "mL", "LV volume at zero pressure"),
    P(tau_act, 60.0, "ms", "time constant of each contraction lag while rising"),
    P(tau_rel, 30.0, "ms", "time constant of each contraction lag while relaxing"),
    P(R_av, 0.005, "mmHg*s/mL", "aortic valve resistance (open)"),
    P(R_mv, 0.005, "mmHg*s/mL", "mitral valve resistance (open)"),
    P(R_c, 0.04, "mmHg*s/mL", "characteristic impedance of the aorta (Windkessel R_c)"),
    P(R_p, 1.05, "mmHg*s/mL", "peripheral resistance (Windkessel R_p)"),
    P(C_a, 1.8, "mL/mmHg", "arterial compliance (Windkessel C)"),
    P(C_v, 100.0, "mL/mmHg", "venous and left-atrial compliance"),
    P(V_total, 5000.0, "mL", "total blood volume"),
    P(V_unstressed, 4030.0, "mL", "unstressed volume of the arterial and venous pools"),
    P(V_lv_init, 120.0, "mL", "initial LV volume"),
    P(P_a_init, 90.0, "mmHg", "initial arterial (Windkessel) pressure"),
    P(activation_threshold, 0.5, "1", "activation level whose upward crossing marks a beat"),
    P(asystole_timeout, 2.0, "s", "longest beat interval; beyond it heart_rate is 0"),
    P(h_max, 1.0, "ms", "largest RK4 substep"),
    INPUT_REAL(Organ, activation, 0.0, "1", "fraction of myocardium depolarised, 0..1"),
    O(P_lv, "mmHg", "LV pressure"),
    O(V_lv, "mL", "LV volume"),
    O(P_ao, "mmHg", "aortic root pressure"),
    O(P_ven, "mmHg", "venous / left-atrial pressure"),
    O(Q_ao, "mL/s", "aortic valve flow"),
    O(P_sys, "mmHg", "highest P_ao over the last beat"),
    O(P_dia, "mmHg", "lowest P_ao over the last beat"),
    O(EDV, "mL", "LV volume at the onset of the last beat"),
    O(ESV, "mL", "lowest LV volume over the last beat"),
    O(stroke_volume, "mL", "aortic outflow integrated over the last beat"),
    O(ejection_fraction, "1", "stroke_volume / EDV, a fraction"),
    O(cardiac_output, "L/min", "stroke_volume x heart_rate"),
    O(heart_rate, "1/min", "60 / interval between the last two onsets; 0 if none"),
    OUTPUT_INTEGER(Organ, beat_count, 0, "number of beat onsets detected"),
};
#undef P
#undef O

/* P_lv, Q_ao, P_ao and P_v of the present state. */
static void instant(const Organ *o, double *p_lv, double *q_ao, double *p_ao, double *p_v) {
    const double p_a = o->v_a / o->C_a;
    double q;
    *p_lv = (o->E_min + (o->E_max - o->E_min) * o->e) * (o->v_lv - o->V_0);
    q = (*p_lv - p_a) / (o->R_av + o->R_c);
    *q_ao = q > 0.0 ? q : 0.0;
    *p_ao = p_a + o->R_c * *q_ao;
    *p_v = o->v_v / o->C_v;
}

static void update_outputs(Organ *o) {
    instant(o, &o->P_lv, &o->Q_ao, &o->P_ao, &o->P_ven);
    o->V_lv = o->v_lv;
}

static void reset_window(Organ *o) {
    double p_lv, q_ao, p_ao, p_v;
    instant(o, &p_lv, &q_ao, &p_ao, &p_v);
    o->win_max = o->win_min = p_ao;
    o->win_vmin = o->win_edv = o->v_lv;
    o->win_flow = 0.0;
}

/* Shortest relaxation time of the loop (s), bounding the explicit RK4 substep. */
static double fastest_time_constant(const Organ *o) {
    const double candidates[5] = {
        (o->R_av + o->R_c) / (o->E_max + 1.0 / o->C_a), o->R_mv / (o->E_max + 1.0 / o->C_v),
        o->R_p * o->C_a * o->C_v / (o->C_a + o->C_v), 1e-3 * o->tau_act, 1e-3 * o->tau_rel};
    double fastest = candidates[0];
    int i;
    for (i = 1; i < 5; i++)
        if (candidates[i] < fastest) fastest = candidates[i];
    return fastest;
}

static int initialize(void *model, double start_time, Logger *logger) {
    Organ *o = (Organ *)model;
    double limit;
    (void)start_time;
    (void)logger;
    o->v_lv = o->V_lv_init;
    o->v_a = o->C_a * o->P_a_init;
    o->v_v = o->V_total - o->V_unstressed - o->v_lv - o->v_a;
    o->c = o->e = 0.0;
    o->t = 0.0;
    o->armed = 1;
    o->last_onset = -1.0; /* < 0: the current window did not start at a beat onset */
    o->window_start = 0.0;
    reset_window(o);
    o->beat_count = 0;
    limit = 0.25 * fastest_time_constant(o);
    o->h_limit = 1e-3 * o->h_max < limit ? 1e-3 * o->h_max : limit;
    o->P_sys = o->P_dia = o->EDV = o->ESV = o->stroke_volume = 0.0;
    o->ejection_fraction = o->cardiac_output = o->heart_rate = 0.0;
    update_outputs(o);
    return 0;
}

static void close_window(Organ *o, int beat) {
    if (!beat) o->heart_rate = 0.0;
    o->P_sys = o->win_max;
    o->P_dia = o->win_min;
    o->EDV = o->win_edv;
    o->ESV = o->win_vmin;
    o->stroke_volume = o->win_flow;
    o->ejection_fraction = o->win_edv > 0.0 ? o->win_flow / o->win_edv : 0.0;
    o->cardiac_output = o->stroke_volume * o->heart_rate * 1e-3;
}

/* A beat starts: publish the window that it closes, open a new one. */
static void onset(Organ *o, double time) {
    o->armed = 0;
    o->beat_count += 1;
    if (o->last_onset >= 0.0 && time > o->last_onset) {
        o->heart_rate = 60.0 / (time - o->last_onset);
        close_window(o, 1);
    }
    o->last_onset = time;
    o->window_start = time;
    reset_window(o);
}

typedef struct {
    double v_lv, v_a, v_v, c, e;
} Volumes;

typedef struct {
    double v_lv, v_a, v_v, c, e, q_ao;
} Rates;

static Rates rates(const Organ *o, double a, Volumes y) {
    const double g_out = 1.0 / (o->R_av + o->R_c), g_mv = 1.0 / o->R_mv, g_p = 1.0 / o->R_p;
    const double k_act = 1e3 / o->tau_act, k_rel = 1e3 / o->tau_rel;
    const double p_lv = (o->E_min + (o->E_max - o->E_min) * y.e) * (y.v_lv - o->V_0);
    const double p_a = y.v_a * (1.0 / o->C_a);
    const double p_v = y.v_v * (1.0 / o->C_v);
    double q_ao = (p_lv - p_a) * g_out, q_mv = (p_v - p_lv) * g_mv;
    const double q_p = (p_a - p_v) * g_p;
    Rates r;
    if (q_ao < 0.0) q_ao = 0.0;
    if (q_mv < 0.0) q_mv = 0.0;
    r.v_lv = q_mv - q_ao;
    r.v_a = q_ao - q_p;
    r.v_v = q_p - q_mv;
    r.c = (a - y.c) * (a > y.c ? k_act : k_rel);
    r.e = (y.c - y.e) * (y.c > y.e ? k_act : k_rel);
    r.q_ao = q_ao;
    return r;
}

static Volumes advanced(Volumes y, double h, Rates r) {
    Volumes next = {y.v_lv + h * r.v_lv, y.v_a + h * r.v_a, y.v_v + h * r.v_v, y.c + h * r.c,
                    y.e + h * r.e};
    return next;
}

/* n classical RK4 substeps of length h (s), activation held at a. */
static void integrate(Organ *o, double a, double h, long n) {
    const double h2 = 0.5 * h, h6 = h / 6.0, k_a = 1.0 / o->C_a;
    Volumes y = {o->v_lv, o->v_a, o->v_v, o->c, o->e};
    long i;
    for (i = 0; i < n; i++) {
        const Rates r1 = rates(o, a, y);
        const Rates r2 = rates(o, a, advanced(y, h2, r1));
        const Rates r3 = rates(o, a, advanced(y, h2, r2));
        const Rates r4 = rates(o, a, advanced(y, h, r3));
        double p_lv, p_a, q_ao, p_ao;
        y.v_lv += h6 * (r1.v_lv + 2.0 * (r2.v_lv + r3.v_lv) + r4.v_lv);
        y.v_a += h6 * (r1.v_a + 2.0 * (r2.v_a + r3.v_a) + r4.v_a);
        y.v_v += h6 * (r1.v_v + 2.0 * (r2.v_v + r3.v_v) + r4.v_v);
        y.c += h6 * (r1.c + 2.0 * (r2.c + r3.c) + r4.c);
        y.e += h6 * (r1.e + 2.0 * (r2.e + r3.e) + r4.e);
        o->win_flow += h6 * (r1.q_ao + 2.0 * (r2.q_ao + r3.q_ao) + r4.q_ao);
        p_lv = (o->E_min + (o->E_max - o->E_min) * y.e) * (y.v_lv - o->V_0);
        p_a = y.v_a * k_a;
        q_ao = (p_lv - p_a) * (1.0 / (o->R_av + o->R_c));
        p_ao = q_ao > 0.0 ? p_a + o->R_c * q_ao : p_a;
        if (p_ao > o->win_max) o->win_max = p_ao;
        if (p_ao < o->win_min) o->win_min = p_ao;
        if (y.v_lv < o->win_vmin) o->win_vmin = y.v_lv;
    }
    o->v_lv = y.v_lv;
    o->v_a = y.v_a;
    o->v_v = y.v_v;
    o->c = y.c;
    o->e = y.e;
}

static int step(void *model, double time, double step_size, Logger *logger) {
    Organ *o = (Organ *)model;
    const double a = o->activation, threshold = o->activation_threshold;
    double substeps = ceil(step_size / o->h_limit - 1e-9);
    (void)logger;
    if (o->armed && a >= threshold) onset(o, time);
    else if (!o->armed && a < 0.5 * threshold) o->armed = 1;
    if (substeps < 1.0) substeps = 1.0;
    integrate(o, a, step_size / substeps, (long)substeps);
    o->t = time + step_size;
    if (o->t - o->window_start > o->asystole_timeout + 1e-9) {
        close_window(o, 0);
        o->window_start = o->t;
        o->last_onset = -1.0;
        reset_window(o);
    }
    update_outputs(o);
    return 0;
}

const Model MODEL = {
    "Organ",
    "Time-varying elastance left ventricle with diode valves, 3-element Windkessel and "
    "venous return (closed loop)",
    VARIABLES,
    sizeof VARIABLES / sizeof VARIABLES[0],
    sizeof(Organ),
    10.0,
    0.001,
    NULL,
    initialize,
    step,
};
