/*
 * Generator: the timing cycles of a single- or dual-chamber pacemaker pulse generator.
 * docs/models/generator.md.
 *
 * Clocked by the communication step: step(t0, h) samples the sense inputs once (their value
 * over the step, taken as the signal at t0), registers senses at t0, and delivers every pace
 * that falls due by t1 = t0 + h at t1; the pace output is non-zero during the next step, the
 * one in which the pulse starts. Timing is exact on a step grid and otherwise late by less
 * than one step. Modes (NBG code, Bernstein et al. 2002, PACE 25:260): 0 OOO, 1 VOO, 2 VVI,
 * 3 AAI, 4 DDD, 5 AOO, 6 DOO. Times are kept in ms internally.
 */
#include <ctype.h>
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "model.h"

enum { OOO, VOO, VVI, AAI, DDD, AOO, DOO, N_MODES };
static const char *MODE_NAMES[N_MODES] = {"OOO", "VOO", "VVI", "AAI", "DDD", "AOO", "DOO"};
/* Marker codes of the event channel (the last event of the step). */
enum { MARK_NONE, AP, AS, VP, VS, VR, AR };
/* Why the impedance alert latched. */
enum { ALERT_NONE, ALERT_HIGH, ALERT_LOW, ALERT_RISE, ALERT_DROP };

#define EPS 1e-6            /* ms: tolerance of time comparisons (grid times carry rounding) */
#define NEVER -1.0e12       /* ms: "long ago" for timers */
#define MIN_IMPEDANCE 10.0  /* ohm: guard of the pulse-charge estimate */
#define HOURS_PER_YEAR 8766.0 /* Julian year */

typedef struct {
    /* parameters */
    Integer mode;
    char mode_name[STRING_CAPACITY];
    Real lower_rate, upper_rate, hysteresis_rate, av_delay, sensed_av_delay, vrp, arp, pvarp;
    Real v_blanking, a_blanking, cross_blanking, v_sensitivity, a_sensitivity;
    Real v_amplitude, v_pulse_width, a_amplitude, a_pulse_width;
    Real battery_capacity, static_current, impedance_low, impedance_high, impedance_change;
    /* inputs */
    Real V_sense_v, V_sense_a, lead_impedance;
    /* outputs */
    Real V_pace_v, pulse_width_v, V_pace_a, pulse_width_a, last_vv_interval, last_aa_interval;
    Real pacing_rate, impedance_alert_time, battery_charge_used, battery_longevity;
    Real next_event_time;
    Integer marker, vp_count, vs_count, vr_count, ap_count, as_count, ar_count, impedance_alert;
    Integer impedance_alert_kind;
    /* configuration derived from the parameters (ms) */
    Real lri, hri, uri, start;
    Integer paces_v, paces_a, senses_v, senses_a, dual, atrial_timing;
    /* timers and flags (ms) */
    Real last_v, last_a, v_refractory, a_refractory, v_blank, a_blank, av_start, check_at;
    Real pending_vt, pulse_charge, last_impedance;
    Integer v_sensed, a_sensed, above_v, above_a, phase_av, av_sensed;
} Generator;

#define P(member, start, unit, text) PARAMETER_REAL(Generator, member, start, unit, text)
static const Variable VARIABLES[] = {
    PARAMETER_INTEGER(Generator, mode, 2, "pacing mode (NBG code): 0 OOO, 1 VOO, 2 VVI, "
                      "3 AAI, 4 DDD, 5 AOO, 6 DOO"),
    PARAMETER_STRING(Generator, mode_name, "", "NBG name of the mode (OOO, VOO, VVI, AAI, "
                     "DDD, AOO, DOO); when not empty it selects the mode instead of 'mode'"),
    P(lower_rate, 60.0, "1/min", "lower rate limit"),
    P(upper_rate, 120.0, "1/min", "upper tracking rate (DDD)"),
    P(hysteresis_rate, 0.0, "1/min",
      "escape rate after a sensed beat, single chamber modes (0: off)"),
    P(av_delay, 150.0, "ms", "paced AV delay"),
    P(sensed_av_delay, 120.0, "ms", "AV delay after an atrial sense"),
    P(vrp, 250.0, "ms", "ventricular refractory period"),
    P(arp, 250.0, "ms", "atrial refractory period (AAI)"),
    P(pvarp, 250.0, "ms", "post-ventricular atrial refractory period (DDD)"),
    P(v_blanking, 50.0, "ms", "ventricular blanking after a ventricular pace"),
    P(a_blanking, 50.0, "ms", "atrial blanking after an atrial pace"),
    P(cross_blanking, 30.0, "ms", "ventricular blanking after an atrial pace"),
    P(v_sensitivity, 2.5, "mV", "ventricular sensing threshold"),
    P(a_sensitivity, 0.75, "mV", "atrial sensing threshold"),
    P(v_amplitude, 3.5, "V", "ventricular pulse amplitude"),
    P(v_pulse_width, 0.4, "ms", "ventricular pulse width"),
    P(a_amplitude, 3.5, "V", "atrial pulse amplitude"),
    P(a_pulse_width, 0.4, "ms", "atrial pulse width"),
    P(battery_capacity, 1.0, "A*h", "battery capacity"),
    P(static_current, 5.0, "uA", "drain of the circuitry without pacing"),
    P(impedance_low, 200.0, "ohm", "lead impedance below this raises the alert"),
    P(impedance_high, 2000.0, "ohm", "lead impedance above this raises the alert"),
    P(impedance_change, 0.3, "1", "a lead impedance that differs from the previous measurement "
      "by more than this fraction of it raises the alert (an abrupt change)"),
    INPUT_REAL(Generator, V_sense_v, 0.0, "mV", "ventricular sense-amplifier signal"),
    INPUT_REAL(Generator, V_sense_a, 0.0, "mV", "atrial sense-amplifier signal"),
    INPUT_REAL(Generator, lead_impedance, 500.0, "ohm",
               "pacing impedance measured by the lead on the last pulse"),
    DISCRETE_OUTPUT_REAL(Generator, V_pace_v, 0.0, "V",
                         "ventricular pulse amplitude during the step a pulse starts in, else 0"),
    DISCRETE_OUTPUT_REAL(Generator, pulse_width_v, 0.4, "ms",
                         "programmed ventricular pulse width"),
    DISCRETE_OUTPUT_REAL(Generator, V_pace_a, 0.0, "V",
                         "atrial pulse amplitude during the step a pulse starts in, else 0"),
    DISCRETE_OUTPUT_REAL(Generator, pulse_width_a, 0.4, "ms", "programmed atrial pulse width"),
    OUTPUT_REAL(Generator, last_vv_interval, 0.0, "ms", "last V-V interval (0: none yet)"),
    OUTPUT_REAL(Generator, last_aa_interval, 0.0, "ms", "last A-A interval (0: none yet)"),
    OUTPUT_REAL(Generator, pacing_rate, 0.0, "1/min",
                "60000 / last interval (V-V; A-A in AAI and AOO)"),
    OUTPUT_REAL(Generator, impedance_alert_time, -1.0, "s",
                "time the impedance alert latched (-1: never)"),
    OUTPUT_REAL(Generator, battery_charge_used, 0.0, "uC", "charge drawn since the start"),
    OUTPUT_REAL(Generator, battery_longevity, 0.0, "year",
                "remaining capacity / mean drain since the start"),
    OUTPUT_REAL(Generator, next_event_time, 0.0, "s",
                "time of the next pace if nothing is sensed before (a master lands on it: "
                "docs/scenario-format.md, events); the current time when none is due"),
    OUTPUT_INTEGER(Generator, marker, 0, "event of the step: 0 none, 1 AP (atrial pace), "
                   "2 AS (atrial sense), 3 VP (ventricular pace), 4 VS (ventricular sense), "
                   "5 VR (ventricular sense in the refractory period), 6 AR (atrial sense in "
                   "the refractory period)"),
    OUTPUT_INTEGER(Generator, vp_count, 0, "ventricular paces (marker 3) so far"),
    OUTPUT_INTEGER(Generator, vs_count, 0, "ventricular senses (marker 4) so far"),
    OUTPUT_INTEGER(Generator, vr_count, 0, "refractory ventricular senses (marker 5) so far"),
    OUTPUT_INTEGER(Generator, ap_count, 0, "atrial paces (marker 1) so far"),
    OUTPUT_INTEGER(Generator, as_count, 0, "atrial senses (marker 2) so far"),
    OUTPUT_INTEGER(Generator, ar_count, 0, "refractory atrial senses (marker 6) so far"),
    OUTPUT_INTEGER(Generator, impedance_alert, 0,
                   "1 once a measured lead impedance was outside the limits or changed "
                   "abruptly (latched)"),
    OUTPUT_INTEGER(Generator, impedance_alert_kind, 0, "why the impedance alert latched: "
                   "0 none, 1 above impedance_high, 2 below impedance_low, 3 abrupt rise, "
                   "4 abrupt drop (by more than impedance_change of the previous measurement)"),
};
#undef P

/* --------------------------------------------------------------------- set-up */

static int configure(Generator *g, Logger *logger) {
    const char *name;
    if (g->mode_name[0] != '\0') {
        int i, found = -1;
        for (i = 0; i < N_MODES; i++) {
            const char *a = g->mode_name, *b = MODE_NAMES[i];
            while (*a && *b && toupper((unsigned char)*a) == *b) a++, b++;
            if (*a == '\0' && *b == '\0') found = i;
        }
        if (found < 0) {
            model_error(logger, "Generator: unknown mode_name '%s'; one of OOO, VOO, VVI, AAI, "
                        "DDD, AOO, DOO", g->mode_name);
            return -1;
        }
        g->mode = found;
    }
    if (g->mode < 0 || g->mode >= N_MODES) {
        model_error(logger, "Generator: unknown mode %d; codes 0 OOO, 1 VOO, 2 VVI, 3 AAI, "
                    "4 DDD, 5 AOO, 6 DOO", g->mode);
        return -1;
    }
    if (!(0.0 < g->lower_rate && g->lower_rate <= g->upper_rate)) {
        model_error(logger, "Generator: need 0 < lower_rate <= upper_rate (%g, %g /min)",
                    g->lower_rate, g->upper_rate);
        return -1;
    }
    if (!(g->impedance_change > 0.0)) {
        model_error(logger, "Generator: impedance_change must be positive (a fraction, e.g. "
                    "0.3), not %g", g->impedance_change);
        return -1;
    }
    if (!(0.0 <= g->hysteresis_rate && g->hysteresis_rate < g->lower_rate)) {
        model_error(logger, "Generator: hysteresis_rate must be 0 (off) or below lower_rate "
                    "(%g, %g /min)", g->hysteresis_rate, g->lower_rate);
        return -1;
    }
    if (g->battery_capacity <= 0.0 || g->static_current <= 0.0) {
        model_error(logger, "Generator: battery_capacity and static_current must be positive");
        return -1;
    }
    g->lri = 60000.0 / g->lower_rate;
    g->hri = g->hysteresis_rate > 0 ? 60000.0 / g->hysteresis_rate : g->lri;
    g->uri = 60000.0 / g->upper_rate;
    if ((g->mode == DDD || g->mode == DOO) && !(0.0 < g->av_delay && g->av_delay < g->lri)) {
        model_error(logger, "Generator: av_delay (%g ms) must lie between 0 and the lower-rate "
                    "interval (%g ms)", g->av_delay, g->lri);
        return -1;
    }
    name = MODE_NAMES[g->mode];
    g->paces_v = name[0] == 'V' || name[0] == 'D';
    g->paces_a = name[0] == 'A' || name[0] == 'D';
    g->senses_v = name[1] == 'V' || name[1] == 'D';
    g->senses_a = name[1] == 'A' || name[1] == 'D';
    g->dual = name[0] == 'D';
    g->atrial_timing = name[0] == 'A';
    return 0;
}

static void update_battery(Generator *g, double t) {
    const double elapsed = (t - g->start) / 1000.0;                     /* s */
    const double used = g->static_current * elapsed + g->pulse_charge; /* uC */
    const double mean_current = elapsed > 0.0 ? used / elapsed : g->static_current; /* uA */
    const double remaining = g->battery_capacity * 3.6e9 - used;                     /* uC */
    g->battery_charge_used = used;
    g->battery_longevity = (remaining > 0.0 ? remaining : 0.0) / mean_current / 3600.0 /
                           HOURS_PER_YEAR;
}

/* Timers at the start: as if a paced event in each chamber at the start time. */
static void reset(Generator *g) {
    g->last_v = g->last_a = g->start;
    g->v_sensed = g->a_sensed = 0;
    g->v_refractory = g->a_refractory = NEVER;
    g->v_blank = g->a_blank = NEVER;
    g->above_v = g->above_a = 0;
    g->phase_av = 0;
    g->av_start = NEVER;
    g->av_sensed = 0;
    g->check_at = NEVER;
    g->pending_vt = 0.0;
    g->pulse_charge = 0.0;
    g->last_impedance = 0.0; /* ohm: the previous measurement (0: none yet) */
    g->V_pace_v = g->V_pace_a = g->last_vv_interval = g->last_aa_interval = 0.0;
    g->pacing_rate = g->battery_charge_used = g->battery_longevity = 0.0;
    g->marker = g->vp_count = g->vs_count = g->vr_count = 0;
    g->ap_count = g->as_count = g->ar_count = g->impedance_alert = g->impedance_alert_kind = 0;
    g->impedance_alert_time = -1.0;
    g->pulse_width_v = g->v_pulse_width;
    g->pulse_width_a = g->a_pulse_width;
    update_battery(g, g->start);
}

/* When the next pace falls due if nothing is sensed before (ms), `now` if none ever will. */
static double next_pace(const Generator *g, double now) {
    double due = now;
    if (g->dual) {
        if (!g->phase_av) {
            due = g->last_v + g->lri - g->av_delay;
        } else {
            const double delay = g->av_sensed ? g->sensed_av_delay : g->av_delay;
            const double by_delay = g->av_start + delay, by_upper_rate = g->last_v + g->uri;
            due = by_delay >= by_upper_rate ? by_delay : by_upper_rate;
        }
    } else if (g->atrial_timing) {
        due = g->last_a + (g->a_sensed ? g->hri : g->lri);
    } else if (g->paces_v) {
        due = g->last_v + (g->v_sensed ? g->hri : g->lri);
    }
    return due > now ? due : now;
}

static int initialize(void *model, double start_time, Logger *logger) {
    Generator *g = (Generator *)model;
    g->start = 1000.0 * start_time;
    if (configure(g, logger) != 0) return -1;
    reset(g);
    g->next_event_time = next_pace(g, g->start) / 1000.0;
    return 0;
}

/* --------------------------------------------------------------------- events */

static void event(Generator *g, int code) {
    g->marker = code;
    if (code == VR) g->vr_count += 1;
    else if (code == AR) g->ar_count += 1;
}

static void ventricular_event(Generator *g, double t, int code) {
    if (g->vp_count + g->vs_count > 0) {
        g->last_vv_interval = t - g->last_v;
        if (!g->atrial_timing) g->pacing_rate = 60000.0 / g->last_vv_interval;
    }
    g->last_v = t;
    g->v_sensed = code == VS;
    g->v_refractory = t + g->vrp;
    g->marker = code;
    if (code == VS) g->vs_count += 1;
    else g->vp_count += 1;
}

static void atrial_event(Generator *g, double t, int code) {
    if (g->ap_count + g->as_count > 0) {
        g->last_aa_interval = t - g->last_a;
        if (g->atrial_timing) g->pacing_rate = 60000.0 / g->last_aa_interval;
    }
    g->last_a = t;
    g->a_sensed = code == AS;
    g->a_refractory = t + g->arp;
    g->marker = code;
    if (code == AS) g->as_count += 1;
    else g->ap_count += 1;
}

/* The lead measures the impedance on this pulse; it is read one step later. */
static void pulse_delivered(Generator *g, double t, double volt_ms) {
    g->pending_vt += volt_ms;
    if (t + EPS > g->check_at) g->check_at = t + EPS;
}

static void pace_v(Generator *g, double t) {
    ventricular_event(g, t, VP);
    g->v_blank = t + g->v_blanking;
    g->V_pace_v = g->v_amplitude;
    pulse_delivered(g, t, g->v_amplitude * g->v_pulse_width);
}

static void pace_a(Generator *g, double t) {
    atrial_event(g, t, AP);
    g->a_blank = t + g->a_blanking;
    g->V_pace_a = g->a_amplitude;
    pulse_delivered(g, t, g->a_amplitude * g->a_pulse_width);
}

/* An upward crossing of the ventricular sensitivity at t, outside blanking. */
static int crossing_v(Generator *g, double t) {
    const int above = (g->V_sense_v < 0 ? -g->V_sense_v : g->V_sense_v) >= g->v_sensitivity;
    const int crossed = above && !g->above_v;
    g->above_v = above;
    return crossed && t >= g->v_blank - EPS;
}

static int crossing_a(Generator *g, double t) {
    const int above = (g->V_sense_a < 0 ? -g->V_sense_a : g->V_sense_a) >= g->a_sensitivity;
    const int crossed = above && !g->above_a;
    g->above_a = above;
    return crossed && t >= g->a_blank - EPS;
}

/* After a pulse: pulse charge V t / R with the measured R, and the impedance alert: R outside
 * [impedance_low, impedance_high], or changed abruptly (by more than impedance_change of the
 * previous measurement). */
static void check_impedance(Generator *g, double t0) {
    double resistance, previous;
    int kind = ALERT_NONE;
    if (g->pending_vt == 0.0 || t0 < g->check_at) return;
    resistance = g->lead_impedance;
    g->pulse_charge += 1000.0 * g->pending_vt /
                       (resistance > MIN_IMPEDANCE ? resistance : MIN_IMPEDANCE); /* uC */
    g->pending_vt = 0.0;
    previous = g->last_impedance;
    g->last_impedance = resistance;
    if (g->impedance_alert) return;
    if (!(g->impedance_low <= resistance && resistance <= g->impedance_high))
        kind = resistance < g->impedance_low ? ALERT_LOW : ALERT_HIGH;
    else if (previous > 0.0 &&
             fabs(resistance - previous) > g->impedance_change * previous)
        kind = resistance > previous ? ALERT_RISE : ALERT_DROP;
    if (kind != ALERT_NONE) {
        g->impedance_alert = 1;
        g->impedance_alert_kind = kind;
        g->impedance_alert_time = t0 / 1000.0;
    }
}

/* --------------------------------------------------------------------- timing */

static void step_single_v(Generator *g, double t0, double t1) {
    if (g->senses_v && crossing_v(g, t0)) {
        if (t0 < g->v_refractory - EPS) event(g, VR);
        else ventricular_event(g, t0, VS);
    }
    if (t1 >= g->last_v + (g->v_sensed ? g->hri : g->lri) - EPS) pace_v(g, t1);
}

static void step_single_a(Generator *g, double t0, double t1) {
    if (g->senses_a && crossing_a(g, t0)) {
        if (t0 < g->a_refractory - EPS) event(g, AR);
        else atrial_event(g, t0, AS);
    }
    if (t1 >= g->last_a + (g->a_sensed ? g->hri : g->lri) - EPS) pace_a(g, t1);
}

/* DDD/DOO: ventricular-based lower-rate timing with an upper tracking rate. */
static void step_dual(Generator *g, double t0, double t1) {
    if (g->senses_a && crossing_a(g, t0)) {
        if (g->phase_av || t0 < g->a_refractory - EPS) {
            event(g, AR); /* inside the AV interval or PVARP: noted, not tracked */
        } else {
            atrial_event(g, t0, AS);
            g->phase_av = 1;
            g->av_start = t0;
            g->av_sensed = 1;
        }
    }
    if (g->senses_v && crossing_v(g, t0)) {
        if (t0 < g->v_refractory - EPS) {
            event(g, VR);
        } else {
            ventricular_event(g, t0, VS);
            g->phase_av = 0;
            g->a_refractory = t0 + g->pvarp;
        }
    }
    if (!g->phase_av && t1 >= g->last_v + g->lri - g->av_delay - EPS) {
        pace_a(g, t1);
        g->phase_av = 1;
        g->av_start = t1;
        g->av_sensed = 0;
        if (t1 + g->cross_blanking > g->v_blank) g->v_blank = t1 + g->cross_blanking;
    }
    if (g->phase_av) {
        const double delay = g->av_sensed ? g->sensed_av_delay : g->av_delay;
        const double by_delay = g->av_start + delay, by_upper_rate = g->last_v + g->uri;
        const double due = by_delay >= by_upper_rate ? by_delay : by_upper_rate;
        if (t1 >= due - EPS) {
            pace_v(g, t1);
            g->phase_av = 0;
            g->a_refractory = t1 + g->pvarp;
        }
    }
}

static int step(void *model, double time, double step_size, Logger *logger) {
    Generator *g = (Generator *)model;
    const double t0 = 1000.0 * time;
    const double t1 = t0 + 1000.0 * step_size;
    (void)logger;
    g->V_pace_v = g->V_pace_a = 0.0;
    g->marker = MARK_NONE;
    check_impedance(g, t0);
    if (g->dual) step_dual(g, t0, t1);
    else if (g->atrial_timing) step_single_a(g, t0, t1);
    else if (g->paces_v) step_single_v(g, t0, t1);
    update_battery(g, t1);
    g->next_event_time = next_pace(g, t1) / 1000.0;
    return 0;
}

const Model MODEL = {
    "Generator",
    "Pacemaker pulse generator: timing cycles (VOO, VVI, AAI, DDD ...), battery",
    VARIABLES,
    sizeof VARIABLES / sizeof VARIABLES[0],
    sizeof(Generator),
    10.0,
    0.001,
    NULL,
    initialize,
    step,
    NULL, /* no array outputs */
    0,
};
