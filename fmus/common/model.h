/*
 * model.h: what a model file of the cosim library gives an FMI layer.
 *
 * A model file (fmus/<name>/<name>.c) holds the equations of one model and nothing of FMI:
 * a struct with every variable and every piece of internal state, a table describing the
 * variables, and three functions (size its arrays, initialise, step). The FMI 2.0 layer
 * (fmi2_layer.c) turns that into the 34 fmi2 functions, the FMI 3.0 layer (fmi3_layer.c) into
 * the 75 fmi3 ones. describe_model.c prints the table for the build (modelDescription.xml).
 *
 * A model may also give array outputs (FMI 3.0 only: FMI 2.0 has no arrays), each shaped by
 * Integer parameters of the table, which its FMI 3.0 edition declares as structural
 * parameters; the values are computed when the host asks for them.
 *
 * Memory: an instance's whole state is one block, the model's struct followed by the arrays
 * the model asked for (model_arrays). The struct holds no pointers, only offsets into the
 * block, so an FMU state is a plain copy of the block and serialises as its bytes.
 */
#ifndef COSIM_MODEL_H
#define COSIM_MODEL_H

#include <stddef.h>

typedef enum { TYPE_REAL, TYPE_INTEGER, TYPE_BOOLEAN, TYPE_STRING } VariableType;
typedef enum { PARAMETER, INPUT, OUTPUT } Causality;

/* Storage of the variable types in the model's struct. */
typedef double Real;
typedef int Integer;  /* also Boolean (0 or 1) */
#define STRING_CAPACITY 32 /* a String variable is a char[STRING_CAPACITY] in the struct */

/* One variable: its value reference is its position in the table. Parameters are fixed
 * (set before the end of initialisation), inputs may change at every step, outputs are
 * calculated; no output depends directly on an input (no feed-through) unless `depends`
 * names the inputs it depends on (space separated). */
typedef struct {
    const char *name;
    VariableType type;
    Causality causality;
    size_t offset;            /* offsetof(the model's struct, the member) */
    double start;             /* start value of a Real, Integer or Boolean */
    const char *start_string; /* start value of a String */
    const char *unit;         /* of a Real, NULL or "" for none */
    const char *description;
    const char *depends;      /* of an output: inputs it depends on directly, NULL for none */
    int discrete;             /* a Real output that changes only at communication points (a
                               * pulse held over the step it starts in): variability discrete */
} Variable;

/* The host's logger, as the layer hands it to the model. */
typedef struct Logger Logger;
/* An error message through the host's logger (printf format). */
void model_error(Logger *logger, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* An array output, FMI 3.0 only. Its shape is given by Integer parameters of the table
 * (`dimensions`: their names, outermost first; row-major, the last varies fastest); the FMI
 * 3.0 edition declares those parameters as structural parameters (UInt64, set in configuration
 * mode). Before initialisation every element reads `start`; after it `values` writes the
 * elements (as many as the product of the dimensions) from the model's current state. */
typedef struct {
    const char *name;
    double start;
    const char *unit;
    const char *description;
    const char *dimensions;
    void (*values)(const void *model, double *out);
} ArrayOutput;

typedef struct {
    const char *name;        /* modelName and modelIdentifier */
    const char *description;
    const Variable *variables;
    size_t variable_count;
    size_t size;             /* sizeof the model's struct */
    double stop_time;        /* DefaultExperiment */
    double step_size;
    /* Parameters are set: check them and return the bytes of array storage wanted after the
     * struct (0 for none), or -1 after logging why they are invalid. NULL: no arrays. */
    long (*arrays)(const void *model, Logger *logger);
    /* Exit initialisation: derived constants, the initial state and outputs at start_time.
     * 0 on success; otherwise log why and return -1. */
    int (*initialize)(void *model, double start_time, Logger *logger);
    /* Advance from time to time + step (seconds). 0 on success, -1 after logging why not. */
    int (*step)(void *model, double time, double step, Logger *logger);
    /* Array outputs (FMI 3.0 only): a table and its length, NULL and 0 for none. */
    const ArrayOutput *array_outputs;
    size_t array_output_count;
} Model;

/* Defined by the model file. */
extern const Model MODEL;

/* Table rows: a variable `member` of the model struct `S`, named as the member. */
#define PARAMETER_REAL(S, member, start, unit, text) \
    {#member, TYPE_REAL, PARAMETER, offsetof(S, member), start, NULL, unit, text, NULL, 0}
#define PARAMETER_INTEGER(S, member, start, text) \
    {#member, TYPE_INTEGER, PARAMETER, offsetof(S, member), start, NULL, NULL, text, NULL, 0}
#define PARAMETER_STRING(S, member, start, text) \
    {#member, TYPE_STRING, PARAMETER, offsetof(S, member), 0.0, start, NULL, text, NULL, 0}
#define INPUT_REAL(S, member, start, unit, text) \
    {#member, TYPE_REAL, INPUT, offsetof(S, member), start, NULL, unit, text, NULL, 0}
#define OUTPUT_REAL(S, member, start, unit, text) \
    {#member, TYPE_REAL, OUTPUT, offsetof(S, member), start, NULL, unit, text, NULL, 0}
/* A Real output declared variability="discrete": a master holds it over a step, never
 * extrapolating or interpolating it (a pulse amplitude, a pulse's duration). */
#define DISCRETE_OUTPUT_REAL(S, member, start, unit, text) \
    {#member, TYPE_REAL, OUTPUT, offsetof(S, member), start, NULL, unit, text, NULL, 1}
#define OUTPUT_INTEGER(S, member, start, text) \
    {#member, TYPE_INTEGER, OUTPUT, offsetof(S, member), start, NULL, NULL, text, NULL, 0}

/* A pointer `offset` bytes into the block of `model` (array offsets count from the start of
 * the struct, so the first array starts at sizeof the struct). */
#define MODEL_ARRAY(type, model, offset) ((type *)((char *)(model) + (offset)))

#endif
