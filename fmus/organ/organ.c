/*
 * Organ: the heart and circulation of Smith, Chase, Nokes, Shaw & Wake 2004 (Med Eng Phys
 * 26:131), a minimal closed-loop model: both ventricles with direct interaction (septum,
 * pericardium), systemic and pulmonary circulation, valves with inertia that open on pressure
 * and close on flow. docs/models/organ.md.
 *
 *     e(t) = A min(1, sum over the last two beat onsets t_k of exp(-B (t - t_k - C)^2))
 *     P(V) = e E_es (V - V_d) + (1 - e) P_0 (exp(lambda (V - V_0)) - 1)      each free wall
 *     P_peri = P_0_pcd (exp(lambda_pcd (V_lv + V_rv - V_0_pcd)) - 1) + P_th
 *     septum: P_spt(V_spt) = P_lvf(V_lv - V_spt) - P_rvf(V_rv + V_spt)          (Newton)
 *     P_lv = P_lvf(V_lv - V_spt) + P_peri,  P_rv = P_rvf(V_rv + V_spt) + P_peri
 *     P_ao = E_es_ao (V_ao - V_d_ao), P_vc = E_es_vc (V_vc - V_d_vc)
 *     P_pa = E_es_pa (V_pa - V_d_pa) + P_th, P_pu = E_es_pu (V_pu - V_d_pu) + P_th
 *     Q_sys = (P_ao - P_vc)/R_sys, Q_pul = (P_pa - P_pu)/R_pul
 *     valve (upstream u, downstream d): L dQ/dt = P_u - P_d - R Q while P_u > P_d or Q > 0,
 *         else dQ/dt = 0 and Q = 0 (closed)
 *     dV_lv = Q_mt - Q_av, dV_ao = Q_av - Q_sys, dV_vc = Q_sys - Q_tc,
 *     dV_rv = Q_tc - Q_pv, dV_pa = Q_pv - Q_pul, dV_pu = Q_pul - Q_mt
 *
 * A beat onset is the tissue's activation crossing activation_threshold upward; per-beat
 * haemodynamics are published at each onset. Classical RK4, substeps of at most h_max and half
 * the loop's fastest time constant. The same arithmetic, in the same order, as the Python
 * edition (cosim_organ.py).
 */
#include <math.h>
#include <stddef.h>

#include "model.h"

#define NEWTON_TOLERANCE 1e-6 /* mL: septal volume converged (pressures to 1e-4 mmHg) */
#define NEWTON_LIMIT 40       /* iterations */
#define NEWTON_STEP 10.0      /* mL: largest Newton step (the root is unique, f increases) */
#define LONG_AGO (-1e3)       /* s: onset time of beats that never happened */

typedef struct {
    /* parameters: driver, free walls, septum, pericardium, vessels, valves, initial volumes */
    Real A, B, C;
    Real E_es_lvf, V_d_lvf, P_0_lvf, lambda_lvf, V_0_lvf;
    Real E_es_rvf, V_d_rvf, P_0_rvf, lambda_rvf, V_0_rvf;
    Real E_es_spt, V_d_spt, P_0_spt, lambda_spt, V_0_spt;
    Real P_0_pcd, V_0_pcd, lambda_pcd, P_th;
    Real E_es_ao, V_d_ao, E_es_vc, V_d_vc, E_es_pa, V_d_pa, E_es_pu, V_d_pu;
    Real R_sys, R_pul, R_mt, R_av, R_tc, R_pv, L_mt, L_av, L_tc, L_pv;
    Real V_lv_init, V_rv_init, V_ao_init, V_vc_init, V_pa_init, V_pu_init;
    Real activation_threshold, asystole_timeout, h_max;
    /* input */
    Real activation;
    /* outputs */
    Real P_lv, P_rv, P_ao, P_vc, P_pa, P_pu, V_lv, V_rv, V_spt, Q_mt, Q_av, Q_tc, Q_pv, e;
    Real P_sys, P_dia, EDV, ESV, stroke_volume, ejection_fraction, cardiac_output, heart_rate;
    Integer beat_count;
    /* state: volumes (mL), valve flows (mL/s), the septum's last solution, the driver's
     * onsets, beat detection and the current beat's window */
    Real v_lv, v_rv, v_ao, v_vc, v_pa, v_pu, q_mt, q_av, q_tc, q_pv, v_spt;
    Real onset_latest, onset_before, t, last_onset, window_start;
    Real win_max, win_min, win_vmin, win_vmax, win_flow, h_limit;
    Integer armed;
} Organ;

#define P(member, start, unit, text) PARAMETER_REAL(Organ, member, start, unit, text)
#define O(member, unit, text) OUTPUT_REAL(Organ, member, 0.0, unit, text)
static const Variable VARIABLES[] = {
    P(A, 1.0, "1", "driver amplitude (peak activation of the elastance)"),
    P(B, 80.0, "1/s**2", "driver width: e = A exp(-B (t - onset - C)^2)"),
    P(C, 0.375, "s", "driver delay: from a beat onset to peak elastance"),
    P(E_es_lvf, 2.8798, "mmHg/mL", "LV free wall end-systolic elastance"),
    P(V_d_lvf, 0.0, "mL", "LV free wall volume at zero end-systolic pressure"),
    P(P_0_lvf, 0.1203, "mmHg", "LV free wall end-diastolic pressure scale"),
    P(lambda_lvf, 0.033, "1/mL", "LV free wall end-diastolic stiffness"),
    P(V_0_lvf, 0.0, "mL", "LV free wall volume at zero end-diastolic pressure"),
    P(E_es_rvf, 0.585, "mmHg/mL", "RV free wall end-systolic elastance"),
    P(V_d_rvf, 0.0, "mL", "RV free wall volume at zero end-systolic pressure"),
    P(P_0_rvf, 0.2157, "mmHg", "RV free wall end-diastolic pressure scale"),
    P(lambda_rvf, 0.023, "1/mL", "RV free wall end-diastolic stiffness"),
    P(V_0_rvf, 0.0, "mL", "RV free wall volume at zero end-diastolic pressure"),
    P(E_es_spt, 48.754, "mmHg/mL", "septum end-systolic elastance"),
    P(V_d_spt, 2.0, "mL", "septum volume at zero end-systolic pressure"),
    P(P_0_spt, 1.1101, "mmHg", "septum end-diastolic pressure scale"),
    P(lambda_spt, 0.435, "1/mL", "septum end-diastolic stiffness"),
    P(V_0_spt, 2.0, "mL", "septum volume at zero end-diastolic pressure"),
    P(P_0_pcd, 0.5003, "mmHg", "pericardium pressure scale"),
    P(V_0_pcd, 200.0, "mL", "pericardium volume at zero pressure"),
    P(lambda_pcd, 0.03, "1/mL", "pericardium stiffness"),
    P(P_th, -4.0, "mmHg", "thoracic pressure (around the heart and pulmonary vessels)"),
    P(E_es_ao, 0.6913, "mmHg/mL", "aorta (systemic arteries) elastance"),
    P(V_d_ao, 0.0, "mL", "aorta unstressed volume"),
    P(E_es_vc, 0.0059, "mmHg/mL", "vena cava (systemic veins) elastance"),
    P(V_d_vc, 0.0, "mL", "vena cava unstressed volume"),
    P(E_es_pa, 0.369, "mmHg/mL", "pulmonary artery elastance"),
    P(V_d_pa, 0.0, "mL", "pulmonary artery unstressed volume"),
    P(E_es_pu, 0.0073, "mmHg/mL", "pulmonary vein elastance"),
    P(V_d_pu, 0.0, "mL", "pulmonary vein unstressed volume"),
    P(R_sys, 1.0889, "mmHg*s/mL", "systemic vascular resistance"),
    P(R_pul, 0.1552, "mmHg*s/mL", "pulmonary vascular resistance"),
    P(R_mt, 0.0158, "mmHg*s/mL", "mitral valve resistance"),
    P(R_av, 0.018, "mmHg*s/mL", "aortic valve resistance"),
    P(R_tc, 0.0237, "mmHg*s/mL", "tricuspid valve resistance"),
    P(R_pv, 0.0055, "mmHg*s/mL", "pulmonary valve resistance"),
    P(L_mt, 7.6968e-5, "mmHg*s**2/mL", "mitral valve inertance"),
    P(L_av, 1.2189e-4, "mmHg*s**2/mL", "aortic valve inertance"),
    P(L_tc, 8.0093e-5, "mmHg*s**2/mL", "tricuspid valve inertance"),
    P(L_pv, 1.4868e-4, "mmHg*s**2/mL", "pulmonary valve inertance"),
    P(V_lv_init, 94.6812, "mL", "initial LV volume"),
    P(V_rv_init, 90.7302, "mL", "initial RV volume"),
    P(V_ao_init, 133.3381, "mL", "initial aortic volume"),
    P(V_vc_init, 329.7803, "mL", "initial vena cava volume"),
    P(V_pa_init, 43.0123, "mL", "initial pulmonary artery volume"),
    P(V_pu_init, 808.4579, "mL", "initial pulmonary vein volume"),
    P(activation_threshold, 0.5, "1", "activation level whose upward crossing marks a beat"),
    P(asystole_timeout, 2.0, "s", "longest beat interval; beyond it heart_rate is 0"),
    P(h_max, 1.0, "ms", "largest RK4 substep"),
    INPUT_REAL(Organ, activation, 0.0, "1", "fraction of myocardium depolarised, 0..1"),
    O(P_lv, "mmHg", "LV pressure"),
    O(P_rv, "mmHg", "RV pressure"),
    O(P_ao, "mmHg", "aortic pressure"),
    O(P_vc, "mmHg", "vena cava pressure"),
    O(P_pa, "mmHg", "pulmonary artery pressure"),
    O(P_pu, "mmHg", "pulmonary vein (LV filling) pressure"),
    O(V_lv, "mL", "LV volume"),
    O(V_rv, "mL", "RV volume"),
    O(V_spt, "mL", "septal volume (its deflection into the RV)"),
    O(Q_mt, "mL/s", "mitral valve flow"),
    O(Q_av, "mL/s", "aortic valve flow"),
    O(Q_tc, "mL/s", "tricuspid valve flow"),
    O(Q_pv, "mL/s", "pulmonary valve flow"),
    O(e, "1", "driver: activation of the ventricular elastances, 0..1"),
    O(P_sys, "mmHg", "highest P_ao over the last beat"),
    O(P_dia, "mmHg", "lowest P_ao over the last beat"),
    O(EDV, "mL", "largest LV volume over the last beat (end-diastolic)"),
    O(ESV, "mL", "lowest LV volume over the last beat"),
    O(stroke_volume, "mL", "aortic valve flow integrated over the last beat"),
    O(ejection_fraction, "1", "stroke_volume / EDV, a fraction"),
    O(cardiac_output, "L/min", "stroke_volume x heart_rate"),
    O(heart_rate, "1/min", "60 / interval between the last two onsets; 0 if none"),
    OUTPUT_INTEGER(Organ, beat_count, 0, "number of beat onsets detected"),
};
#undef P
#undef O

typedef struct {
    double v_lv, v_rv, v_ao, v_vc, v_pa, v_pu, q_mt, q_av, q_tc, q_pv;
} State;

/* Pressures and flows of a state (mmHg, mL/s). */
typedef struct {
    double p_lv, p_rv, p_ao, p_vc, p_pa, p_pu, q_sys, q_pul;
} Pressures;

/* exp(x), skipping the call where the result is 0 (underflow is a slow path in libm). */
static double decayed(double x) {
    return x < -746.0 ? 0.0 : exp(x);
}

/* The driver at time t (s). */
static double driver(const Organ *o, double t) {
    const double a = t - o->onset_latest - o->C, b = t - o->onset_before - o->C;
    const double sum = decayed(-o->B * (a * a)) + decayed(-o->B * (b * b));
    return o->A * (sum < 1.0 ? sum : 1.0);
}

/* The septal volume at driver e and the free walls' exponentials there. */
typedef struct {
    double v, x_lvf, x_rvf;
} Septum;

/* The root of P_spt(V) - P_lvf(v_lv - V) + P_rvf(v_rv + V), increasing in V, by Newton's
 * method from the last solution (o->v_spt, updated): the last point evaluated, once the step
 * it gives is below NEWTON_TOLERANCE. */
static Septum septum(Organ *o, double e, double v_lv, double v_rv) {
    const double f_e = 1.0 - e;
    Septum s;
    int i;
    s.v = o->v_spt;
    for (i = 0;; i++) {
        const double v = s.v;
        const double x_spt = exp(o->lambda_spt * (v - o->V_0_spt));
        double f, slope, change;
        s.x_lvf = exp(o->lambda_lvf * (v_lv - v - o->V_0_lvf));
        s.x_rvf = exp(o->lambda_rvf * (v_rv + v - o->V_0_rvf));
        if (i == NEWTON_LIMIT) break;
        f = e * o->E_es_spt * (v - o->V_d_spt) + f_e * o->P_0_spt * (x_spt - 1.0) -
            (e * o->E_es_lvf * (v_lv - v - o->V_d_lvf) + f_e * o->P_0_lvf * (s.x_lvf - 1.0)) +
            (e * o->E_es_rvf * (v_rv + v - o->V_d_rvf) + f_e * o->P_0_rvf * (s.x_rvf - 1.0));
        slope = e * o->E_es_spt + f_e * o->P_0_spt * o->lambda_spt * x_spt +
                (e * o->E_es_lvf + f_e * o->P_0_lvf * o->lambda_lvf * s.x_lvf) +
                (e * o->E_es_rvf + f_e * o->P_0_rvf * o->lambda_rvf * s.x_rvf);
        change = f / slope;
        if (change > NEWTON_STEP) change = NEWTON_STEP;
        if (change < -NEWTON_STEP) change = -NEWTON_STEP;
        if (fabs(change) <= NEWTON_TOLERANCE) break;
        s.v = v - change;
    }
    o->v_spt = s.v;
    return s;
}

static Pressures pressures(Organ *o, double e, const State *y) {
    const double f_e = 1.0 - e;
    const double p_peri =
        o->P_0_pcd * (exp(o->lambda_pcd * (y->v_lv + y->v_rv - o->V_0_pcd)) - 1.0) + o->P_th;
    const Septum s = septum(o, e, y->v_lv, y->v_rv);
    const double v_lvf = y->v_lv - s.v, v_rvf = y->v_rv + s.v;
    Pressures p;
    p.p_lv = e * o->E_es_lvf * (v_lvf - o->V_d_lvf) + f_e * o->P_0_lvf * (s.x_lvf - 1.0) + p_peri;
    p.p_rv = e * o->E_es_rvf * (v_rvf - o->V_d_rvf) + f_e * o->P_0_rvf * (s.x_rvf - 1.0) + p_peri;
    p.p_ao = o->E_es_ao * (y->v_ao - o->V_d_ao);
    p.p_vc = o->E_es_vc * (y->v_vc - o->V_d_vc);
    p.p_pa = o->E_es_pa * (y->v_pa - o->V_d_pa) + o->P_th;
    p.p_pu = o->E_es_pu * (y->v_pu - o->V_d_pu) + o->P_th;
    p.q_sys = (p.p_ao - p.p_vc) / o->R_sys;
    p.q_pul = (p.p_pa - p.p_pu) / o->R_pul;
    return p;
}

/* A valve's dQ/dt: open while the pressure drop drives flow or flow continues. */
static double valve(double drop, double q, double r, double l) {
    return drop > 0.0 || q > 0.0 ? (drop - r * q) / l : 0.0;
}

static double forward(double q) {
    return q > 0.0 ? q : 0.0;
}

static State rates(Organ *o, double e, const State *y) {
    const Pressures p = pressures(o, e, y);
    const double q_mt = forward(y->q_mt), q_av = forward(y->q_av);
    const double q_tc = forward(y->q_tc), q_pv = forward(y->q_pv);
    State r;
    r.v_lv = q_mt - q_av;
    r.v_rv = q_tc - q_pv;
    r.v_ao = q_av - p.q_sys;
    r.v_vc = p.q_sys - q_tc;
    r.v_pa = q_pv - p.q_pul;
    r.v_pu = p.q_pul - q_mt;
    r.q_mt = valve(p.p_pu - p.p_lv, y->q_mt, o->R_mt, o->L_mt);
    r.q_av = valve(p.p_lv - p.p_ao, y->q_av, o->R_av, o->L_av);
    r.q_tc = valve(p.p_vc - p.p_rv, y->q_tc, o->R_tc, o->L_tc);
    r.q_pv = valve(p.p_rv - p.p_pa, y->q_pv, o->R_pv, o->L_pv);
    return r;
}

static State advanced(const State *y, double h, const State *r) {
    State next = {y->v_lv + h * r->v_lv, y->v_rv + h * r->v_rv, y->v_ao + h * r->v_ao,
                  y->v_vc + h * r->v_vc, y->v_pa + h * r->v_pa, y->v_pu + h * r->v_pu,
                  y->q_mt + h * r->q_mt, y->q_av + h * r->q_av, y->q_tc + h * r->q_tc,
                  y->q_pv + h * r->q_pv};
    return next;
}

static double combined(double h6, double k1, double k2, double k3, double k4) {
    return h6 * (k1 + 2.0 * (k2 + k3) + k4);
}

/* Shortest time constant of the loop (s), bounding the explicit RK4 substep: each valve's
 * L/R, each valve's resistance against the elastances on its two sides, the driver's rise. */
static double fastest_time_constant(const Organ *o) {
    const double candidates[9] = {
        o->L_mt / o->R_mt, o->L_av / o->R_av, o->L_tc / o->R_tc, o->L_pv / o->R_pv,
        o->R_mt / (o->E_es_lvf + o->E_es_pu), o->R_av / (o->E_es_lvf + o->E_es_ao),
        o->R_tc / (o->E_es_rvf + o->E_es_vc), o->R_pv / (o->E_es_rvf + o->E_es_pa),
        1.0 / sqrt(o->B)};
    double fastest = candidates[0];
    int i;
    for (i = 1; i < 9; i++)
        if (candidates[i] < fastest) fastest = candidates[i];
    return fastest;
}

static State state_of(const Organ *o) {
    State y = {o->v_lv, o->v_rv, o->v_ao, o->v_vc, o->v_pa, o->v_pu,
               o->q_mt, o->q_av, o->q_tc, o->q_pv};
    return y;
}

static void update_outputs(Organ *o) {
    const State y = state_of(o);
    const double e = driver(o, o->t);
    const Pressures p = pressures(o, e, &y);
    o->P_lv = p.p_lv;
    o->P_rv = p.p_rv;
    o->P_ao = p.p_ao;
    o->P_vc = p.p_vc;
    o->P_pa = p.p_pa;
    o->P_pu = p.p_pu;
    o->V_lv = o->v_lv;
    o->V_rv = o->v_rv;
    o->V_spt = o->v_spt;
    o->Q_mt = o->q_mt;
    o->Q_av = o->q_av;
    o->Q_tc = o->q_tc;
    o->Q_pv = o->q_pv;
    o->e = e;
}

static void reset_window(Organ *o) {
    o->win_max = o->win_min = o->E_es_ao * (o->v_ao - o->V_d_ao);
    o->win_vmin = o->win_vmax = o->v_lv;
    o->win_flow = 0.0;
}

/* The parameter that makes the model meaningless, or NULL. */
static const char *invalid(const Organ *o) {
    const double positive[11] = {o->R_sys, o->R_pul, o->R_mt, o->R_av, o->R_tc, o->R_pv,
                                 o->L_mt, o->L_av, o->L_tc, o->L_pv, o->h_max};
    static const char *names[11] = {"R_sys", "R_pul", "R_mt", "R_av", "R_tc", "R_pv",
                                    "L_mt", "L_av", "L_tc", "L_pv", "h_max"};
    int i;
    for (i = 0; i < 11; i++)
        if (!(positive[i] > 0.0)) return names[i];
    if (!(o->B > 0.0)) return "B";
    if (!(o->asystole_timeout > 0.0)) return "asystole_timeout";
    return NULL;
}

static int initialize(void *model, double start_time, Logger *logger) {
    Organ *o = (Organ *)model;
    const char *wrong = invalid(o);
    double limit;
    if (wrong != NULL) {
        model_error(logger, "Organ: %s must be > 0", wrong);
        return -1;
    }
    limit = 0.5 * fastest_time_constant(o);
    o->v_lv = o->V_lv_init;
    o->v_rv = o->V_rv_init;
    o->v_ao = o->V_ao_init;
    o->v_vc = o->V_vc_init;
    o->v_pa = o->V_pa_init;
    o->v_pu = o->V_pu_init;
    o->q_mt = o->q_av = o->q_tc = o->q_pv = 0.0; /* at rest, valves closed */
    o->v_spt = o->V_d_spt;
    o->onset_latest = o->onset_before = LONG_AGO;
    o->t = start_time;
    o->armed = 1;
    o->last_onset = -1.0; /* < 0: the current window did not start at a beat onset */
    o->window_start = start_time;
    reset_window(o);
    o->beat_count = 0;
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
    o->EDV = o->win_vmax;
    o->ESV = o->win_vmin;
    o->stroke_volume = o->win_flow;
    o->ejection_fraction = o->win_vmax > 0.0 ? o->win_flow / o->win_vmax : 0.0;
    o->cardiac_output = o->stroke_volume * o->heart_rate * 1e-3;
}

/* A beat starts: the driver's next contraction, the last window published, a new one. */
static void onset(Organ *o, double time) {
    o->armed = 0;
    o->beat_count += 1;
    o->onset_before = o->onset_latest;
    o->onset_latest = time;
    if (o->last_onset >= 0.0 && time > o->last_onset) {
        o->heart_rate = 60.0 / (time - o->last_onset);
        close_window(o, 1);
    }
    o->last_onset = time;
    o->window_start = time;
    reset_window(o);
}

/* n classical RK4 substeps of length h (s) from `time`; valves close at zero flow. */
static void integrate(Organ *o, double time, double h, long n) {
    const double h2 = 0.5 * h, h6 = h / 6.0;
    State y = state_of(o);
    long k;
    for (k = 0; k < n; k++) {
        const double t0 = time + (double)k * h;
        const double e_middle = driver(o, t0 + h2); /* stages 2 and 3 share their time */
        const State r1 = rates(o, driver(o, t0), &y);
        const State y2 = advanced(&y, h2, &r1);
        const State r2 = rates(o, e_middle, &y2);
        const State y3 = advanced(&y, h2, &r2);
        const State r3 = rates(o, e_middle, &y3);
        const State y4 = advanced(&y, h, &r3);
        const State r4 = rates(o, driver(o, t0 + h), &y4);
        double p_ao;
        o->win_flow += combined(h6, forward(y.q_av), forward(y2.q_av), forward(y3.q_av),
                                forward(y4.q_av));
        y.v_lv += combined(h6, r1.v_lv, r2.v_lv, r3.v_lv, r4.v_lv);
        y.v_rv += combined(h6, r1.v_rv, r2.v_rv, r3.v_rv, r4.v_rv);
        y.v_ao += combined(h6, r1.v_ao, r2.v_ao, r3.v_ao, r4.v_ao);
        y.v_vc += combined(h6, r1.v_vc, r2.v_vc, r3.v_vc, r4.v_vc);
        y.v_pa += combined(h6, r1.v_pa, r2.v_pa, r3.v_pa, r4.v_pa);
        y.v_pu += combined(h6, r1.v_pu, r2.v_pu, r3.v_pu, r4.v_pu);
        y.q_mt = forward(y.q_mt + combined(h6, r1.q_mt, r2.q_mt, r3.q_mt, r4.q_mt));
        y.q_av = forward(y.q_av + combined(h6, r1.q_av, r2.q_av, r3.q_av, r4.q_av));
        y.q_tc = forward(y.q_tc + combined(h6, r1.q_tc, r2.q_tc, r3.q_tc, r4.q_tc));
        y.q_pv = forward(y.q_pv + combined(h6, r1.q_pv, r2.q_pv, r3.q_pv, r4.q_pv));
        p_ao = o->E_es_ao * (y.v_ao - o->V_d_ao);
        if (p_ao > o->win_max) o->win_max = p_ao;
        if (p_ao < o->win_min) o->win_min = p_ao;
        if (y.v_lv < o->win_vmin) o->win_vmin = y.v_lv;
        if (y.v_lv > o->win_vmax) o->win_vmax = y.v_lv;
    }
    o->v_lv = y.v_lv;
    o->v_rv = y.v_rv;
    o->v_ao = y.v_ao;
    o->v_vc = y.v_vc;
    o->v_pa = y.v_pa;
    o->v_pu = y.v_pu;
    o->q_mt = y.q_mt;
    o->q_av = y.q_av;
    o->q_tc = y.q_tc;
    o->q_pv = y.q_pv;
}

static int step(void *model, double time, double step_size, Logger *logger) {
    Organ *o = (Organ *)model;
    const double a = o->activation, threshold = o->activation_threshold;
    double substeps = ceil(step_size / o->h_limit - 1e-9);
    (void)logger;
    if (o->armed && a >= threshold) onset(o, time);
    else if (!o->armed && a < 0.5 * threshold) o->armed = 1;
    if (substeps < 1.0) substeps = 1.0;
    integrate(o, time, step_size / substeps, (long)substeps);
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
    "Heart and circulation of Smith et al. 2004: both ventricles with septal and pericardial "
    "interaction, systemic and pulmonary circulation, valves with inertia (closed loop)",
    VARIABLES,
    sizeof VARIABLES / sizeof VARIABLES[0],
    sizeof(Organ),
    10.0,
    0.001,
    NULL,
    initialize,
    step,
    NULL, /* no array outputs */
    0,
};
