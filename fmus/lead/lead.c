/*
 * Lead: pacing lead and electrode-tissue interface, with fault modes switched on at a set
 * time. docs/models/lead.md.
 *
 * A constant-voltage pulse V of width T (from the generator) drives the lead conductor
 * R_conductor in series with the tissue (spreading) resistance R_tissue and the electrode
 * interface, a Helmholtz capacitance C_H in parallel with a Faradaic resistance R_F. With
 * R_s = R_conductor + R_tissue the interface voltage charges as
 *     v_c(t) = v_inf (1 - exp(-t/tau)),  v_inf = V R_F / (R_s + R_F),  tau = C_H R_s R_F / (R_s + R_F)
 * and the current is I(t) = (V - v_c(t)) / R_s. An insulation breach adds a shunt R_shunt from
 * the conductor to the body (Thevenin equivalent for the tip). The current density reaching
 * the membrane under the tip is the mean tip current times membrane_coupling (uA/cm^2 per mA);
 * capture is decided by the cell model, not here. A pulse longer than the communication step
 * is delivered over several steps: in each, the mean tip current over that step's part of the
 * pulse, for that part's duration (stim_width, from the step's start).
 *
 * Noise fault: spikes at rate noise_rate, drawn from a SplitMix64 generator (Steele, Lea &
 * Flood 2014) seeded with `seed`, the same sequence as the Python edition (cosim_lead.py).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

#define PULSE_END 1e-9 /* ms: less of a pulse than this left is none (rounding of summed steps) */

enum { NONE, CONDUCTOR_FRACTURE, INSULATION_BREACH, EXIT_BLOCK, DISLODGEMENT, NOISE, N_FAULTS };

typedef struct {
    /* parameters */
    Real R_conductor, R_tissue, C_H, R_F, membrane_coupling, sense_gain, fault_time;
    Real R_fracture, R_shunt, block_factor, dislodged_factor, noise_rate, noise_amplitude;
    Integer fault, seed;
    /* inputs */
    Real V_pace_v, pulse_width_v, egm;
    /* outputs */
    Real I_stim, stim_width, I_lead, charge, impedance, V_sense, next_event_time;
    Integer fault_active;
    /* internal state: the noise generator, the pulse being delivered (ms) */
    uint64_t random_state;
    Real pulse_volts, pulse_width, pulse_delivered;
} Lead;

static const Variable VARIABLES[] = {
    PARAMETER_REAL(Lead, R_conductor, 50.0, "ohm", "lead conductor resistance"),
    PARAMETER_REAL(Lead, R_tissue, 450.0, "ohm", "tissue spreading resistance at the tip"),
    PARAMETER_REAL(Lead, C_H, 20.0, "uF", "Helmholtz (double-layer) capacitance of the tip"),
    PARAMETER_REAL(Lead, R_F, 10000.0, "ohm", "Faradaic resistance of the interface"),
    PARAMETER_REAL(Lead, membrane_coupling, 83.3, "uA/cm**2/mA",
                   "membrane current density per mA of tip current"),
    PARAMETER_REAL(Lead, sense_gain, 1.0, "",
                   "fraction of the electrogram reaching the sense amplifier"),
    PARAMETER_REAL(Lead, fault_time, 1.0e9, "s", "time at which the fault starts"),
    PARAMETER_REAL(Lead, R_fracture, 5000.0, "ohm", "conductor resistance once fractured"),
    PARAMETER_REAL(Lead, R_shunt, 120.0, "ohm", "shunt to the body through a breached insulation"),
    PARAMETER_REAL(Lead, block_factor, 6.0, "",
                   "exit block: membrane coupling divided by this factor"),
    PARAMETER_REAL(Lead, dislodged_factor, 0.05, "",
                   "dislodgement: coupling and sensing multiplied by this"),
    PARAMETER_REAL(Lead, noise_rate, 15.0, "1/s", "noise: mean rate of spurious spikes"),
    PARAMETER_REAL(Lead, noise_amplitude, 6.0, "mV", "noise: spike amplitude"),
    PARAMETER_INTEGER(Lead, fault, 0, "0 none, 1 conductor fracture, 2 insulation breach, "
                      "3 exit block, 4 dislodgement, 5 noise"),
    PARAMETER_INTEGER(Lead, seed, 1, "random seed of the noise fault"),
    INPUT_REAL(Lead, V_pace_v, 0.0, "V", "pulse amplitude (> 0 in the step a pulse starts)"),
    INPUT_REAL(Lead, pulse_width_v, 0.4, "ms", "pulse width"),
    INPUT_REAL(Lead, egm, 0.0, "mV", "electrogram at the tip"),
    DISCRETE_OUTPUT_REAL(Lead, I_stim, 0.0, "uA/cm**2",
                         "mean current density delivered to the membrane"),
    DISCRETE_OUTPUT_REAL(Lead, stim_width, 0.0, "ms", "duration of I_stim from the step start"),
    OUTPUT_REAL(Lead, I_lead, 0.0, "mA", "leading-edge current of the last pulse"),
    OUTPUT_REAL(Lead, charge, 0.0, "uC", "charge delivered by the last pulse"),
    OUTPUT_REAL(Lead, impedance, 500.0, "ohm",
                "pacing impedance V/I at the leading edge, last pulse"),
    OUTPUT_REAL(Lead, V_sense, 0.0, "mV", "signal at the generator's sense amplifier"),
    OUTPUT_REAL(Lead, next_event_time, 0.0, "s",
                "fault_time while a fault is still to start (a master lands on it: "
                "docs/scenario-format.md, events); else the current time"),
    OUTPUT_INTEGER(Lead, fault_active, 0, "1 once the fault has started"),
};

/* SplitMix64: the next number of the sequence, as a double uniform in [0, 1). */
static double uniform(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* The circuit in the fault state: conductor resistance, shunt (INFINITY: none), membrane
 * coupling and sense gain. */
typedef struct {
    double r_conductor, shunt, coupling, gain;
} Circuit;

static Circuit circuit(const Lead *l, int active) {
    Circuit c = {l->R_conductor, INFINITY, l->membrane_coupling, l->sense_gain};
    if (!active) return c;
    switch (l->fault) {
    case CONDUCTOR_FRACTURE: c.r_conductor = l->R_fracture; break;
    case INSULATION_BREACH: c.shunt = l->R_shunt; break;
    case EXIT_BLOCK: c.coupling /= l->block_factor; break;
    case DISLODGEMENT:
        c.coupling *= l->dislodged_factor;
        c.gain *= l->dislodged_factor;
        break;
    default: break;
    }
    return c;
}

/* The tip circuit a pulse of `volts` drives: Thevenin voltage v_th (V) and resistance r_s
 * (ohm, with the tissue), the interface's final voltage v_inf (V) and time constant tau (ms). */
static void thevenin(const Lead *l, double volts, int active, double *v_th, double *r_s,
                     double *v_inf, double *tau) {
    const Circuit c = circuit(l, active);
    const int shunted = !isinf(c.shunt);
    const double r_th = shunted ? c.r_conductor * c.shunt / (c.r_conductor + c.shunt)
                                : c.r_conductor;
    *v_th = shunted ? volts * c.shunt / (c.shunt + c.r_conductor) : volts;
    *r_s = r_th + l->R_tissue;
    *v_inf = *v_th * l->R_F / (*r_s + l->R_F);
    *tau = l->C_H * 1e-6 * *r_s * l->R_F / (*r_s + l->R_F) * 1000.0;
}

/* Mean tip current (A) from `start` to `end` ms into a pulse of `volts`. */
static double mean_tip(const Lead *l, double volts, double start, double end, int active) {
    double v_th, r_s, v_inf, tau;
    const double length = end - start > 1e-6 ? end - start : 1e-6;
    thevenin(l, volts, active, &v_th, &r_s, &v_inf, &tau);
    return ((v_th - v_inf) + v_inf * tau / length * (exp(-start / tau) - exp(-end / tau))) / r_s;
}

/* One pulse of `volts` for `width_ms`: impedance (ohm), leading-edge current (mA), delivered
 * charge (uC). */
static void pulse(const Lead *l, double volts, double width_ms, int active, double *impedance,
                  double *edge_ma, double *charge) {
    const Circuit c = circuit(l, active);
    const int shunted = !isinf(c.shunt);
    const double width = width_ms > 1e-6 ? width_ms : 1e-6;
    const double edge = volts / (c.r_conductor + (shunted ? c.shunt * l->R_tissue /
                                                                (c.shunt + l->R_tissue)
                                                          : l->R_tissue));
    *impedance = volts / edge;
    *edge_ma = edge * 1000.0;
    *charge = mean_tip(l, volts, 0.0, width, active) * width * 1000.0;
}

static int initialize(void *model, double start_time, Logger *logger) {
    Lead *l = (Lead *)model;
    if (l->fault < NONE || l->fault >= N_FAULTS) {
        model_error(logger, "Lead: unknown fault %d; known: 0 none, 1 conductor fracture, "
                    "2 insulation breach, 3 exit block, 4 dislodgement, 5 noise", l->fault);
        return -1;
    }
    if (!(l->R_conductor > 0 && l->R_tissue > 0 && l->C_H > 0 && l->R_F > 0)) {
        model_error(logger, "Lead: circuit elements must be positive (R_conductor = %g, "
                    "R_tissue = %g, R_F = %g ohm, C_H = %g uF)", l->R_conductor, l->R_tissue,
                    l->R_F, l->C_H);
        return -1;
    }
    l->random_state = (uint64_t)(int64_t)l->seed;
    l->pulse_volts = l->pulse_width = l->pulse_delivered = 0.0;
    l->impedance = l->R_conductor + l->R_tissue;
    l->next_event_time = l->fault != NONE && l->fault_time > start_time ? l->fault_time
                                                                        : start_time;
    return 0;
}

static int step(void *model, double time, double step_size, Logger *logger) {
    Lead *l = (Lead *)model;
    const int active = l->fault != NONE && time + step_size > l->fault_time;
    const Circuit c = circuit(l, active);
    double noise = 0.0;
    (void)logger;
    l->fault_active = active;
    if (l->V_pace_v > 0.0 && l->pulse_width_v > 0.0) { /* a pulse starts with this step */
        pulse(l, l->V_pace_v, l->pulse_width_v, active, &l->impedance, &l->I_lead, &l->charge);
        l->pulse_volts = l->V_pace_v;
        l->pulse_width = l->pulse_width_v;
        l->pulse_delivered = 0.0;
    }
    if (l->pulse_width - l->pulse_delivered > PULSE_END) { /* the pulse, or its rest, now */
        const double start = l->pulse_delivered, reach = start + 1000.0 * step_size;
        const double end = l->pulse_width - reach < PULSE_END ? l->pulse_width : reach;
        l->I_stim = 1000.0 * mean_tip(l, l->pulse_volts, start, end, active) * c.coupling;
        l->stim_width = end - start;
        l->pulse_delivered = end;
    } else {
        l->I_stim = 0.0;
        l->stim_width = 0.0;
    }
    if (active && l->fault == NOISE && uniform(&l->random_state) < l->noise_rate * step_size)
        noise = l->noise_amplitude * (uniform(&l->random_state) < 0.5 ? 1.0 : -1.0);
    l->V_sense = c.gain * l->egm + noise;
    l->next_event_time = l->fault != NONE && l->fault_time > time + step_size
                             ? l->fault_time : time + step_size;
    return 0;
}

const Model MODEL = {
    "Lead",
    "Pacing lead: electrode-tissue interface circuit, sensing path, fault modes",
    VARIABLES,
    sizeof VARIABLES / sizeof VARIABLES[0],
    sizeof(Lead),
    1.0,
    0.001,
    NULL,
    initialize,
    step,
    NULL, /* no array outputs */
    0,
};
