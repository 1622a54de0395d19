/*
 * tissue_probe: runs the tissue model's C code (fmus/tissue/tissue.c, the arithmetic of the
 * Tissue FMU) without an FMI layer and prints the activation times of chosen nodes, which the
 * FMU does not expose (it reports one, activation_time_far). Built and run by
 * benchmarks/niederer.py:
 *
 *     tissue_probe STOP_MS STEP_MS name=value... @x,y,z...
 *
 * Parameters take the FMU's names; steps of STEP_MS until STOP_MS or until every probe node
 * has activated; then one line per probe: "x y z t_act_ms" (-1: not activated), and a last
 * line "substeps N".
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tissue.c"

struct Logger {
    int unused;
};

void model_error(Logger *logger, const char *format, ...) {
    va_list args;
    (void)logger;
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputc('\n', stderr);
}

/* Sets a parameter by name; 0 on success. */
static int set(Tissue *t, const char *name, double value) {
    size_t i;
    for (i = 0; i < MODEL.variable_count; i++) {
        const Variable *v = &MODEL.variables[i];
        if (strcmp(v->name, name) != 0 || v->causality != PARAMETER) continue;
        if (v->type == TYPE_REAL) *(Real *)((char *)t + v->offset) = value;
        else *(Integer *)((char *)t + v->offset) = (Integer)value;
        return 0;
    }
    return -1;
}

int main(int argc, char **argv) {
    Logger logger;
    Tissue *t;
    long probes[64], count = 0, k, steps, extra;
    double stop, step;
    int i;
    size_t j;
    if (argc < 3) {
        fprintf(stderr, "usage: tissue_probe STOP_MS STEP_MS name=value... @x,y,z...\n");
        return 2;
    }
    stop = atof(argv[1]);
    step = atof(argv[2]);
    t = calloc(1, sizeof(Tissue));
    for (j = 0; j < MODEL.variable_count; j++) { /* start values, as the FMI layer sets them */
        const Variable *v = &MODEL.variables[j];
        if (v->type == TYPE_REAL) *(Real *)((char *)t + v->offset) = v->start;
        else if (v->type != TYPE_STRING) *(Integer *)((char *)t + v->offset) = (Integer)v->start;
    }
    for (i = 3; i < argc; i++) {
        char *equals = strchr(argv[i], '=');
        if (argv[i][0] == '@') continue;
        if (equals == NULL) return 2;
        *equals = '\0';
        if (set(t, argv[i], atof(equals + 1)) != 0) {
            fprintf(stderr, "tissue_probe: no parameter %s\n", argv[i]);
            return 2;
        }
    }
    extra = MODEL.arrays(t, &logger);
    if (extra < 0) return 1;
    t = realloc(t, sizeof(Tissue) + (size_t)extra);
    if (t == NULL || MODEL.initialize(t, 0.0, &logger) != 0) return 1;
    for (i = 3; i < argc && count < 64; i++) {
        long x, y, z;
        if (argv[i][0] != '@' || sscanf(argv[i] + 1, "%ld,%ld,%ld", &x, &y, &z) != 3) continue;
        if (x < 0 || x >= t->nx || y < 0 || y >= t->ny || z < 0 || z >= t->nz) return 2;
        probes[count++] = (z * t->ny + y) * t->nx + x;
    }
    steps = (long)(stop / step + 0.5);
    for (k = 0; k < steps; k++) {
        const double *t_act = MODEL_ARRAY(double, t, t->t_act);
        long done = 0, p;
        if (MODEL.step(t, k * step * 1e-3, step * 1e-3, &logger) != 0) return 1;
        for (p = 0; p < count; p++) done += t_act[probes[p]] >= 0.0;
        if (count > 0 && done == count) break;
    }
    for (k = 0; k < count; k++) {
        const long node = probes[k], layer = (long)t->nx * t->ny;
        printf("%ld %ld %ld %.6f\n", node % t->nx, (node % layer) / t->nx, node / layer,
               MODEL_ARRAY(double, t, t->t_act)[node]);
    }
    printf("substeps %.0f\n", t->substeps);
    free(t);
    return 0;
}
