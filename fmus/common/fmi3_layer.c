/*
 * fmi3_layer.c: the FMI 3.0 co-simulation interface of a cosim library model (model.h).
 *
 * The counterpart of fmi2_layer.c over the same model files, and nothing of a model: the
 * instance and its state machine (FMI 3.0.2, section 4.2: instantiated, configuration mode,
 * initialization mode, step mode, terminated), typed get/set by value reference, FMU state
 * get/set/free/serialise/deserialise (the instance's block copied as bytes), and messages
 * through the host's log callback. All 75 fmi3 functions are exported (hosts such as fmpy
 * bind every one); those of model exchange, scheduled execution, event mode, clocks and
 * derivatives return fmi3Error with a message: the FMU declares none of them.
 *
 * Value references: the model's table keeps its positions (those of the FMI 2.0 edition),
 * the array outputs follow it, then the independent variable `time`. Types: Real is Float64,
 * Integer is Int32 (UInt64 for a parameter that sizes an array output: a structural
 * parameter, set in configuration mode), Boolean is Boolean, String is String.
 *
 * The instantiation token comes from token.h, which the build writes beside the sources
 * (`#define INSTANTIATION_TOKEN "{...}"`, derived from the model's interface).
 */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fmi3Functions.h"
#include "model.h"
#include "token.h"

/* The states of the FMI 3.0 co-simulation state machine this FMU goes through. */
typedef enum {
    INSTANTIATED = 1 << 0,
    CONFIGURATION = 1 << 1,
    INITIALIZATION = 1 << 2,
    STEP = 1 << 3,
    TERMINATED = 1 << 4,
    ERROR = 1 << 5,
} Phase;

#define PHASE_COUNT 6
#define ANY_PHASE ((1u << PHASE_COUNT) - 1u)
#define SETTABLE (INSTANTIATED | CONFIGURATION | INITIALIZATION | STEP)
#define STATE_PHASES (INSTANTIATED | INITIALIZATION | STEP | TERMINATED | ERROR)
#define MAX_RANK 4 /* dimensions of an array output */

/* The FMI 3 types of the variables. */
typedef enum { FLOAT64, INT32, UINT64, BOOLEAN, STRING } Type;
static const char *TYPE_NAMES[] = {"Float64", "Int32", "UInt64", "Boolean", "String"};

struct Logger {
    fmi3LogMessageCallback log;
    fmi3InstanceEnvironment environment;
};

/* An array output's shape: the table positions of the Integer parameters that size it. */
typedef struct {
    size_t rank;
    size_t dimension[MAX_RANK];
} Shape;

typedef struct {
    struct Logger logger;
    Phase phase;
    int initialized;    /* the model's initialize ran: array outputs come from its state */
    double time;        /* last communication point reached */
    double start_time;  /* from fmi3EnterInitializationMode */
    size_t size;        /* bytes of the block: the model's struct and its arrays */
    void *block;
    Shape *shapes;      /* one per array output */
    char name[1];       /* the instance name, allocated with the instance */
} Instance;

/* An FMU state: what fmi3GetFMUState copies, and (after the header) what serialises. */
typedef struct {
    char magic[8];      /* "cosim3S\0" */
    char model[24];     /* the model's name, truncated */
    uint64_t size;      /* bytes of the block */
    double time;
    int32_t phase;
    int32_t initialized;
} StateHeader;

typedef struct {
    StateHeader header;
    unsigned char block[]; /* header.size bytes */
} State;

void model_error(Logger *logger, const char *format, ...) {
    char message[1024];
    va_list args;
    if (logger == NULL || logger->log == NULL) return;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    logger->log(logger->environment, fmi3Error, "logStatusError", message);
}

/* ---------------------------------------------------------------- variables */

#define TIME_REFERENCE (MODEL.variable_count + MODEL.array_output_count)

static void *value_of(const Instance *instance, const Variable *v) {
    return (char *)instance->block + v->offset;
}

/* Does the table entry `index` size an array output (a structural parameter)? */
static int structural(const Instance *instance, size_t index) {
    size_t k, d;
    for (k = 0; k < MODEL.array_output_count; k++)
        for (d = 0; d < instance->shapes[k].rank; d++)
            if (instance->shapes[k].dimension[d] == index) return 1;
    return 0;
}

static Type type_of(const Instance *instance, fmi3ValueReference vr) {
    if (vr >= MODEL.variable_count) return FLOAT64; /* an array output, or time */
    switch (MODEL.variables[vr].type) {
    case TYPE_REAL: return FLOAT64;
    case TYPE_INTEGER: return structural(instance, vr) ? UINT64 : INT32;
    case TYPE_BOOLEAN: return BOOLEAN;
    default: return STRING;
    }
}

static const char *name_of(fmi3ValueReference vr) {
    if (vr < MODEL.variable_count) return MODEL.variables[vr].name;
    if (vr < TIME_REFERENCE) return MODEL.array_outputs[vr - MODEL.variable_count].name;
    return "time";
}

/* Is vr a variable of type `type` (named as `wanted` in messages)? Else logs why not. */
static int typed(Instance *instance, const char *function, fmi3ValueReference vr, int type,
                 const char *wanted) {
    if (vr > TIME_REFERENCE) {
        model_error(&instance->logger, "%s: unknown value reference %u (this FMU has 0 to %u)",
                    function, (unsigned)vr, (unsigned)TIME_REFERENCE);
        return 0;
    }
    if ((int)type_of(instance, vr) != type) {
        model_error(&instance->logger, "%s: %s (value reference %u) is a %s, not a %s",
                    function, name_of(vr), (unsigned)vr, TYPE_NAMES[type_of(instance, vr)],
                    wanted);
        return 0;
    }
    return 1;
}

/* May vr be set now? Structural parameters in configuration mode only, other parameters
 * before the end of initialisation, inputs outside configuration mode. */
static int settable(Instance *instance, const char *function, fmi3ValueReference vr) {
    const Variable *v = vr < MODEL.variable_count ? &MODEL.variables[vr] : NULL;
    if (v == NULL || v->causality == OUTPUT) {
        model_error(&instance->logger, "%s: %s is %s and cannot be set", function, name_of(vr),
                    vr == TIME_REFERENCE ? "the independent variable" : "an output");
        return 0;
    }
    if (v->causality == PARAMETER && structural(instance, vr)) {
        if (instance->phase != CONFIGURATION) {
            model_error(&instance->logger, "%s: %s is a structural parameter (it sizes an "
                        "array output): set it in configuration mode, between "
                        "fmi3EnterConfigurationMode and fmi3ExitConfigurationMode", function,
                        v->name);
            return 0;
        }
        return 1;
    }
    if (instance->phase == CONFIGURATION) {
        model_error(&instance->logger, "%s: only structural parameters can be set in "
                    "configuration mode, not %s", function, v->name);
        return 0;
    }
    if (v->causality == PARAMETER && !(instance->phase & (INSTANTIATED | INITIALIZATION))) {
        model_error(&instance->logger,
                    "%s: parameter %s is fixed: set it before fmi3ExitInitializationMode",
                    function, v->name);
        return 0;
    }
    return 1;
}

/* Elements of array output k now, into *count; 0 after logging if the shape is invalid. */
static int element_count(Instance *instance, const char *function, size_t k, size_t *count) {
    const Shape *shape = &instance->shapes[k];
    size_t d, n = 1;
    for (d = 0; d < shape->rank; d++) {
        const Variable *v = &MODEL.variables[shape->dimension[d]];
        const Integer size = *(const Integer *)value_of(instance, v);
        if (size < 0 || (size > 0 && n > (SIZE_MAX / sizeof(double)) / (size_t)size)) {
            model_error(&instance->logger, "%s: %s = %d gives %s no valid size", function,
                        v->name, size, MODEL.array_outputs[k].name);
            return 0;
        }
        n *= (size_t)size;
    }
    *count = n;
    return 1;
}

/* The values of array output k (count elements): the model's after initialisation, else its
 * start value. */
static void array_values(const Instance *instance, size_t k, double *out, size_t count) {
    const ArrayOutput *a = &MODEL.array_outputs[k];
    size_t i;
    if (instance->initialized) {
        a->values(instance->block, out);
        return;
    }
    for (i = 0; i < count; i++) out[i] = a->start;
}

/* The table positions of each array output's dimensions, from their names; 0 after logging
 * if a name is not an Integer parameter of the table (the build checks this too). */
static int resolve_shapes(Instance *instance) {
    size_t k, i;
    for (k = 0; k < MODEL.array_output_count; k++) {
        const char *p = MODEL.array_outputs[k].dimensions;
        Shape *shape = &instance->shapes[k];
        while (p != NULL && *p != '\0') {
            size_t length;
            while (*p == ' ') p++;
            length = strcspn(p, " ");
            if (length == 0) break;
            for (i = 0; i < MODEL.variable_count; i++) {
                const Variable *v = &MODEL.variables[i];
                if (strlen(v->name) == length && strncmp(v->name, p, length) == 0 &&
                    v->type == TYPE_INTEGER && v->causality == PARAMETER)
                    break;
            }
            if (i == MODEL.variable_count || shape->rank == MAX_RANK) {
                model_error(&instance->logger, "%s: the dimensions '%s' of %s are not Integer "
                            "parameters (at most %d)", MODEL.name,
                            MODEL.array_outputs[k].dimensions, MODEL.array_outputs[k].name,
                            MAX_RANK);
                return 0;
            }
            shape->dimension[shape->rank++] = i;
            p += length;
        }
    }
    return 1;
}

/* The instance if it is in one of the allowed phases; else logs and returns NULL. */
static Instance *allowed(fmi3Instance c, const char *function, unsigned phases) {
    static const char *PHASE_NAMES[] = {"instantiated", "configuration mode",
                                        "initialization mode", "step mode", "terminated",
                                        "error"};
    Instance *instance = (Instance *)c;
    int i;
    if (instance == NULL) return NULL;
    if (instance->phase & phases) return instance;
    for (i = 0; i < PHASE_COUNT && !((unsigned)instance->phase & (1u << i)); i++) {
    }
    model_error(&instance->logger, "%s is not allowed in %s", function,
                i < PHASE_COUNT ? PHASE_NAMES[i] : "this state");
    return NULL;
}

static int values_match(Instance *instance, const char *function, size_t given, size_t held) {
    if (given == held) return 1;
    model_error(&instance->logger, "%s: nValues is %lu, the variables hold %lu values",
                function, (unsigned long)given, (unsigned long)held);
    return 0;
}

static void set_start_values(Instance *instance) {
    size_t i;
    memset(instance->block, 0, instance->size);
    for (i = 0; i < MODEL.variable_count; i++) {
        const Variable *v = &MODEL.variables[i];
        void *value = value_of(instance, v);
        switch (v->type) {
        case TYPE_REAL: *(Real *)value = v->start; break;
        case TYPE_INTEGER:
        case TYPE_BOOLEAN: *(Integer *)value = (Integer)v->start; break;
        case TYPE_STRING:
            strncpy((char *)value, v->start_string ? v->start_string : "", STRING_CAPACITY - 1);
            break;
        }
    }
}

/* Back to the model's struct alone, start values in it: a new or reset instance. */
static int restart(Instance *instance) {
    if (instance->block == NULL || instance->size != MODEL.size) {
        void *block = calloc(1, MODEL.size);
        if (block == NULL) return 0;
        free(instance->block);
        instance->block = block;
        instance->size = MODEL.size;
    }
    set_start_values(instance);
    instance->time = instance->start_time = 0.0;
    instance->initialized = 0;
    instance->phase = INSTANTIATED;
    return 1;
}

/* ---------------------------------------------------------------- common functions */

const char *fmi3GetVersion(void) { return fmi3Version; }

fmi3Status fmi3SetDebugLogging(fmi3Instance c, fmi3Boolean loggingOn, size_t nCategories,
                               const fmi3String categories[]) {
    (void)loggingOn; /* errors are always logged; there is nothing else to log */
    (void)nCategories;
    (void)categories;
    return allowed(c, "fmi3SetDebugLogging", ANY_PHASE) ? fmi3OK : fmi3Error;
}

fmi3Instance fmi3InstantiateCoSimulation(
    fmi3String instanceName, fmi3String instantiationToken, fmi3String resourcePath,
    fmi3Boolean visible, fmi3Boolean loggingOn, fmi3Boolean eventModeUsed,
    fmi3Boolean earlyReturnAllowed, const fmi3ValueReference requiredIntermediateVariables[],
    size_t nRequiredIntermediateVariables, fmi3InstanceEnvironment instanceEnvironment,
    fmi3LogMessageCallback logMessage, fmi3IntermediateUpdateCallback intermediateUpdate) {
    const char *name = instanceName ? instanceName : "";
    struct Logger logger;
    Instance *instance;
    (void)resourcePath;
    (void)visible;
    (void)loggingOn;
    (void)earlyReturnAllowed; /* doStep never returns early */
    (void)requiredIntermediateVariables;
    (void)intermediateUpdate;
    logger.log = logMessage;
    logger.environment = instanceEnvironment;
    if (instantiationToken == NULL || strcmp(instantiationToken, INSTANTIATION_TOKEN) != 0) {
        model_error(&logger, "fmi3InstantiateCoSimulation: instantiation token %s does not "
                    "match this binary's %s (modelDescription.xml and binary from different "
                    "builds?)", instantiationToken ? instantiationToken : "(null)",
                    INSTANTIATION_TOKEN);
        return NULL;
    }
    if (eventModeUsed) {
        model_error(&logger, "fmi3InstantiateCoSimulation: %s has no event mode (hasEventMode "
                    "is false): instantiate it with eventModeUsed = false", MODEL.name);
        return NULL;
    }
    if (nRequiredIntermediateVariables > 0) {
        model_error(&logger, "fmi3InstantiateCoSimulation: %s provides no intermediate "
                    "update: no variable can be required", MODEL.name);
        return NULL;
    }
    instance = (Instance *)calloc(1, sizeof(Instance) + strlen(name));
    if (instance == NULL) return NULL;
    strcpy(instance->name, name);
    instance->logger = logger;
    instance->shapes = (Shape *)calloc(MODEL.array_output_count + 1, sizeof(Shape));
    if (instance->shapes == NULL || !resolve_shapes(instance) || !restart(instance)) {
        free(instance->shapes);
        free(instance);
        return NULL;
    }
    return instance;
}

fmi3Instance fmi3InstantiateModelExchange(fmi3String instanceName,
                                          fmi3String instantiationToken,
                                          fmi3String resourcePath, fmi3Boolean visible,
                                          fmi3Boolean loggingOn,
                                          fmi3InstanceEnvironment instanceEnvironment,
                                          fmi3LogMessageCallback logMessage) {
    struct Logger logger;
    (void)instanceName;
    (void)instantiationToken;
    (void)resourcePath;
    (void)visible;
    (void)loggingOn;
    logger.log = logMessage;
    logger.environment = instanceEnvironment;
    model_error(&logger, "fmi3InstantiateModelExchange: %s is a co-simulation FMU only",
                MODEL.name);
    return NULL;
}

fmi3Instance fmi3InstantiateScheduledExecution(
    fmi3String instanceName, fmi3String instantiationToken, fmi3String resourcePath,
    fmi3Boolean visible, fmi3Boolean loggingOn, fmi3InstanceEnvironment instanceEnvironment,
    fmi3LogMessageCallback logMessage, fmi3ClockUpdateCallback clockUpdate,
    fmi3LockPreemptionCallback lockPreemption, fmi3UnlockPreemptionCallback unlockPreemption) {
    struct Logger logger;
    (void)instanceName;
    (void)instantiationToken;
    (void)resourcePath;
    (void)visible;
    (void)loggingOn;
    (void)clockUpdate;
    (void)lockPreemption;
    (void)unlockPreemption;
    logger.log = logMessage;
    logger.environment = instanceEnvironment;
    model_error(&logger, "fmi3InstantiateScheduledExecution: %s is a co-simulation FMU only",
                MODEL.name);
    return NULL;
}

void fmi3FreeInstance(fmi3Instance c) {
    Instance *instance = (Instance *)c;
    if (instance == NULL) return;
    free(instance->block);
    free(instance->shapes);
    free(instance);
}

fmi3Status fmi3EnterConfigurationMode(fmi3Instance c) {
    Instance *instance = allowed(c, "fmi3EnterConfigurationMode", INSTANTIATED);
    if (instance == NULL) return fmi3Error;
    instance->phase = CONFIGURATION;
    return fmi3OK;
}

fmi3Status fmi3ExitConfigurationMode(fmi3Instance c) {
    Instance *instance = allowed(c, "fmi3ExitConfigurationMode", CONFIGURATION);
    if (instance == NULL) return fmi3Error;
    instance->phase = INSTANTIATED;
    return fmi3OK;
}

fmi3Status fmi3EnterInitializationMode(fmi3Instance c, fmi3Boolean toleranceDefined,
                                       fmi3Float64 tolerance, fmi3Float64 startTime,
                                       fmi3Boolean stopTimeDefined, fmi3Float64 stopTime) {
    Instance *instance = allowed(c, "fmi3EnterInitializationMode", INSTANTIATED);
    (void)toleranceDefined;
    (void)tolerance;
    (void)stopTimeDefined;
    (void)stopTime;
    if (instance == NULL) return fmi3Error;
    instance->start_time = startTime;
    instance->time = startTime;
    instance->phase = INITIALIZATION;
    return fmi3OK;
}

fmi3Status fmi3ExitInitializationMode(fmi3Instance c) {
    Instance *instance = allowed(c, "fmi3ExitInitializationMode", INITIALIZATION);
    long extra = 0;
    if (instance == NULL) return fmi3Error;
    if (MODEL.arrays != NULL) {
        extra = MODEL.arrays(instance->block, &instance->logger);
        if (extra < 0) {
            instance->phase = ERROR;
            return fmi3Error;
        }
    }
    if (MODEL.size + (size_t)extra != instance->size) {
        void *block = calloc(1, MODEL.size + (size_t)extra);
        if (block == NULL) {
            model_error(&instance->logger, "fmi3ExitInitializationMode: out of memory "
                        "(%ld bytes of arrays)", extra);
            instance->phase = ERROR;
            return fmi3Error;
        }
        memcpy(block, instance->block, MODEL.size);
        free(instance->block);
        instance->block = block;
        instance->size = MODEL.size + (size_t)extra;
    }
    if (MODEL.initialize(instance->block, instance->start_time, &instance->logger) != 0) {
        instance->phase = ERROR;
        return fmi3Error;
    }
    instance->initialized = 1;
    instance->time = instance->start_time;
    instance->phase = STEP;
    return fmi3OK;
}

fmi3Status fmi3Terminate(fmi3Instance c) {
    Instance *instance = allowed(c, "fmi3Terminate", STEP);
    if (instance == NULL) return fmi3Error;
    instance->phase = TERMINATED;
    return fmi3OK;
}

fmi3Status fmi3Reset(fmi3Instance c) {
    Instance *instance = allowed(c, "fmi3Reset", ANY_PHASE);
    if (instance == NULL) return fmi3Error;
    if (!restart(instance)) {
        model_error(&instance->logger, "fmi3Reset: out of memory");
        instance->phase = ERROR;
        return fmi3Error;
    }
    return fmi3OK;
}

/* ---------------------------------------------------------------- get and set */

fmi3Status fmi3GetFloat64(fmi3Instance c, const fmi3ValueReference valueReferences[],
                          size_t nValueReferences, fmi3Float64 values[], size_t nValues) {
    Instance *instance = allowed(c, "fmi3GetFloat64", ANY_PHASE);
    size_t i, at = 0;
    if (instance == NULL) return fmi3Error;
    for (i = 0; i < nValueReferences; i++) {
        const fmi3ValueReference vr = valueReferences[i];
        size_t count = 1;
        if (!typed(instance, "fmi3GetFloat64", vr, FLOAT64, "Float64")) return fmi3Error;
        if (vr >= MODEL.variable_count && vr < TIME_REFERENCE &&
            !element_count(instance, "fmi3GetFloat64", vr - MODEL.variable_count, &count))
            return fmi3Error;
        if (count > nValues - at) {
            model_error(&instance->logger, "fmi3GetFloat64: nValues is %lu, too few for the "
                        "variables asked for", (unsigned long)nValues);
            return fmi3Error;
        }
        if (vr < MODEL.variable_count)
            values[at] = *(const Real *)value_of(instance, &MODEL.variables[vr]);
        else if (vr == TIME_REFERENCE)
            values[at] = instance->time;
        else
            array_values(instance, vr - MODEL.variable_count, values + at, count);
        at += count;
    }
    return values_match(instance, "fmi3GetFloat64", nValues, at) ? fmi3OK : fmi3Error;
}

fmi3Status fmi3SetFloat64(fmi3Instance c, const fmi3ValueReference valueReferences[],
                          size_t nValueReferences, const fmi3Float64 values[],
                          size_t nValues) {
    Instance *instance = allowed(c, "fmi3SetFloat64", SETTABLE);
    size_t i;
    if (instance == NULL) return fmi3Error;
    if (!values_match(instance, "fmi3SetFloat64", nValues, nValueReferences)) return fmi3Error;
    for (i = 0; i < nValueReferences; i++) {
        const fmi3ValueReference vr = valueReferences[i];
        if (!typed(instance, "fmi3SetFloat64", vr, FLOAT64, "Float64") ||
            !settable(instance, "fmi3SetFloat64", vr))
            return fmi3Error;
        *(Real *)value_of(instance, &MODEL.variables[vr]) = values[i];
    }
    return fmi3OK;
}

fmi3Status fmi3GetInt32(fmi3Instance c, const fmi3ValueReference valueReferences[],
                        size_t nValueReferences, fmi3Int32 values[], size_t nValues) {
    Instance *instance = allowed(c, "fmi3GetInt32", ANY_PHASE);
    size_t i;
    if (instance == NULL) return fmi3Error;
    if (!values_match(instance, "fmi3GetInt32", nValues, nValueReferences)) return fmi3Error;
    for (i = 0; i < nValueReferences; i++) {
        if (!typed(instance, "fmi3GetInt32", valueReferences[i], INT32, "Int32"))
            return fmi3Error;
        values[i] = *(const Integer *)value_of(instance, &MODEL.variables[valueReferences[i]]);
    }
    return fmi3OK;
}

fmi3Status fmi3SetInt32(fmi3Instance c, const fmi3ValueReference valueReferences[],
                        size_t nValueReferences, const fmi3Int32 values[], size_t nValues) {
    Instance *instance = allowed(c, "fmi3SetInt32", SETTABLE);
    size_t i;
    if (instance == NULL) return fmi3Error;
    if (!values_match(instance, "fmi3SetInt32", nValues, nValueReferences)) return fmi3Error;
    for (i = 0; i < nValueReferences; i++) {
        const fmi3ValueReference vr = valueReferences[i];
        if (!typed(instance, "fmi3SetInt32", vr, INT32, "Int32") ||
            !settable(instance, "fmi3SetInt32", vr))
            return fmi3Error;
        *(Integer *)value_of(instance, &MODEL.variables[vr]) = values[i];
    }
    return fmi3OK;
}

fmi3Status fmi3GetUInt64(fmi3Instance c, const fmi3ValueReference valueReferences[],
                         size_t nValueReferences, fmi3UInt64 values[], size_t nValues) {
    Instance *instance = allowed(c, "fmi3GetUInt64", ANY_PHASE);
    size_t i;
    if (instance == NULL) return fmi3Error;
    if (!values_match(instance, "fmi3GetUInt64", nValues, nValueReferences)) return fmi3Error;
    for (i = 0; i < nValueReferences; i++) {
        Integer value;
        if (!typed(instance, "fmi3GetUInt64", valueReferences[i], UINT64, "UInt64"))
            return fmi3Error;
        value = *(const Integer *)value_of(instance, &MODEL.variables[valueReferences[i]]);
        values[i] = value > 0 ? (fmi3UInt64)value : 0;
    }
    return fmi3OK;
}

fmi3Status fmi3SetUInt64(fmi3Instance c, const fmi3ValueReference valueReferences[],
                         size_t nValueReferences, const fmi3UInt64 values[], size_t nValues) {
    Instance *instance = allowed(c, "fmi3SetUInt64", SETTABLE);
    size_t i;
    if (instance == NULL) return fmi3Error;
    if (!values_match(instance, "fmi3SetUInt64", nValues, nValueReferences)) return fmi3Error;
    for (i = 0; i < nValueReferences; i++) {
        const fmi3ValueReference vr = valueReferences[i];
        if (!typed(instance, "fmi3SetUInt64", vr, UINT64, "UInt64") ||
            !settable(instance, "fmi3SetUInt64", vr))
            return fmi3Error;
        if (values[i] > (fmi3UInt64)INT_MAX) {
            model_error(&instance->logger, "fmi3SetUInt64: %s = %llu is too large (at most %d)",
                        MODEL.variables[vr].name, (unsigned long long)values[i], INT_MAX);
            return fmi3Error;
        }
        *(Integer *)value_of(instance, &MODEL.variables[vr]) = (Integer)values[i];
    }
    return fmi3OK;
}

fmi3Status fmi3GetBoolean(fmi3Instance c, const fmi3ValueReference valueReferences[],
                          size_t nValueReferences, fmi3Boolean values[], size_t nValues) {
    Instance *instance = allowed(c, "fmi3GetBoolean", ANY_PHASE);
    size_t i;
    if (instance == NULL) return fmi3Error;
    if (!values_match(instance, "fmi3GetBoolean", nValues, nValueReferences)) return fmi3Error;
    for (i = 0; i < nValueReferences; i++) {
        if (!typed(instance, "fmi3GetBoolean", valueReferences[i], BOOLEAN, "Boolean"))
            return fmi3Error;
        values[i] = *(const Integer *)value_of(instance, &MODEL.variables[valueReferences[i]])
                        ? fmi3True : fmi3False;
    }
    return fmi3OK;
}

fmi3Status fmi3SetBoolean(fmi3Instance c, const fmi3ValueReference valueReferences[],
                          size_t nValueReferences, const fmi3Boolean values[],
                          size_t nValues) {
    Instance *instance = allowed(c, "fmi3SetBoolean", SETTABLE);
    size_t i;
    if (instance == NULL) return fmi3Error;
    if (!values_match(instance, "fmi3SetBoolean", nValues, nValueReferences)) return fmi3Error;
    for (i = 0; i < nValueReferences; i++) {
        const fmi3ValueReference vr = valueReferences[i];
        if (!typed(instance, "fmi3SetBoolean", vr, BOOLEAN, "Boolean") ||
            !settable(instance, "fmi3SetBoolean", vr))
            return fmi3Error;
        *(Integer *)value_of(instance, &MODEL.variables[vr]) = values[i] ? 1 : 0;
    }
    return fmi3OK;
}

fmi3Status fmi3GetString(fmi3Instance c, const fmi3ValueReference valueReferences[],
                         size_t nValueReferences, fmi3String values[], size_t nValues) {
    Instance *instance = allowed(c, "fmi3GetString", ANY_PHASE);
    size_t i;
    if (instance == NULL) return fmi3Error;
    if (!values_match(instance, "fmi3GetString", nValues, nValueReferences)) return fmi3Error;
    for (i = 0; i < nValueReferences; i++) {
        if (!typed(instance, "fmi3GetString", valueReferences[i], STRING, "String"))
            return fmi3Error;
        values[i] = (const char *)value_of(instance, &MODEL.variables[valueReferences[i]]);
    }
    return fmi3OK;
}

fmi3Status fmi3SetString(fmi3Instance c, const fmi3ValueReference valueReferences[],
                         size_t nValueReferences, const fmi3String values[], size_t nValues) {
    Instance *instance = allowed(c, "fmi3SetString", SETTABLE);
    size_t i;
    if (instance == NULL) return fmi3Error;
    if (!values_match(instance, "fmi3SetString", nValues, nValueReferences)) return fmi3Error;
    for (i = 0; i < nValueReferences; i++) {
        const fmi3ValueReference vr = valueReferences[i];
        const char *text = values[i] ? values[i] : "";
        if (!typed(instance, "fmi3SetString", vr, STRING, "String") ||
            !settable(instance, "fmi3SetString", vr))
            return fmi3Error;
        if (strlen(text) >= STRING_CAPACITY) {
            model_error(&instance->logger, "fmi3SetString: '%s' is too long for %s (at most "
                        "%d characters)", text, MODEL.variables[vr].name, STRING_CAPACITY - 1);
            return fmi3Error;
        }
        strcpy((char *)value_of(instance, &MODEL.variables[vr]), text);
    }
    return fmi3OK;
}

/* The types no model of the library uses: any value reference is refused by name. */
static fmi3Status none_of_type(fmi3Instance c, const char *function, const char *type,
                               const fmi3ValueReference valueReferences[],
                               size_t nValueReferences) {
    Instance *instance = allowed(c, function, ANY_PHASE);
    if (instance == NULL) return fmi3Error;
    if (nValueReferences == 0) return fmi3OK;
    typed(instance, function, valueReferences[0], -1, type);
    return fmi3Error;
}

#define NONE_OF_TYPE(Type, CType)                                                           \
    fmi3Status fmi3Get##Type(fmi3Instance c, const fmi3ValueReference valueReferences[],     \
                             size_t nValueReferences, CType values[], size_t nValues) {     \
        (void)values;                                                                       \
        (void)nValues;                                                                      \
        return none_of_type(c, "fmi3Get" #Type, #Type, valueReferences, nValueReferences);  \
    }                                                                                       \
    fmi3Status fmi3Set##Type(fmi3Instance c, const fmi3ValueReference valueReferences[],     \
                             size_t nValueReferences, const CType values[],                 \
                             size_t nValues) {                                              \
        (void)values;                                                                       \
        (void)nValues;                                                                      \
        return none_of_type(c, "fmi3Set" #Type, #Type, valueReferences, nValueReferences);  \
    }
NONE_OF_TYPE(Float32, fmi3Float32)
NONE_OF_TYPE(Int8, fmi3Int8)
NONE_OF_TYPE(UInt8, fmi3UInt8)
NONE_OF_TYPE(Int16, fmi3Int16)
NONE_OF_TYPE(UInt16, fmi3UInt16)
NONE_OF_TYPE(UInt32, fmi3UInt32)
NONE_OF_TYPE(Int64, fmi3Int64)
#undef NONE_OF_TYPE

fmi3Status fmi3GetClock(fmi3Instance c, const fmi3ValueReference valueReferences[],
                        size_t nValueReferences, fmi3Clock values[]) {
    (void)values;
    return none_of_type(c, "fmi3GetClock", "Clock", valueReferences, nValueReferences);
}

fmi3Status fmi3SetClock(fmi3Instance c, const fmi3ValueReference valueReferences[],
                        size_t nValueReferences, const fmi3Clock values[]) {
    (void)values;
    return none_of_type(c, "fmi3SetClock", "Clock", valueReferences, nValueReferences);
}

fmi3Status fmi3GetBinary(fmi3Instance c, const fmi3ValueReference valueReferences[],
                         size_t nValueReferences, size_t valueSizes[], fmi3Binary values[],
                         size_t nValues) {
    (void)valueSizes;
    (void)values;
    (void)nValues;
    return none_of_type(c, "fmi3GetBinary", "Binary", valueReferences, nValueReferences);
}

fmi3Status fmi3SetBinary(fmi3Instance c, const fmi3ValueReference valueReferences[],
                         size_t nValueReferences, const size_t valueSizes[],
                         const fmi3Binary values[], size_t nValues) {
    (void)valueSizes;
    (void)values;
    (void)nValues;
    return none_of_type(c, "fmi3SetBinary", "Binary", valueReferences, nValueReferences);
}

/* ---------------------------------------------------------------- FMU state */

static void fill_header(StateHeader *header, const Instance *instance) {
    memset(header, 0, sizeof *header);
    memcpy(header->magic, "cosim3S", 8);
    strncpy(header->model, MODEL.name, sizeof header->model - 1);
    header->size = instance->size;
    header->time = instance->time;
    header->phase = (int32_t)instance->phase;
    header->initialized = instance->initialized;
}

fmi3Status fmi3GetFMUState(fmi3Instance c, fmi3FMUState *FMUState) {
    Instance *instance = allowed(c, "fmi3GetFMUState", STATE_PHASES);
    State *state;
    if (instance == NULL || FMUState == NULL) return fmi3Error;
    state = (State *)*FMUState;
    if (state != NULL && state->header.size != instance->size) { /* reuse only if it fits */
        free(state);
        state = NULL;
    }
    if (state == NULL) {
        state = (State *)malloc(sizeof(State) + instance->size);
        if (state == NULL) {
            model_error(&instance->logger, "fmi3GetFMUState: out of memory");
            return fmi3Error;
        }
    }
    fill_header(&state->header, instance);
    memcpy(state->block, instance->block, instance->size);
    *FMUState = state;
    return fmi3OK;
}

/* Is header a state of this model that this instance can take? */
static int compatible(Instance *instance, const char *function, const StateHeader *header) {
    StateHeader mine;
    fill_header(&mine, instance);
    if (memcmp(header->magic, mine.magic, sizeof mine.magic) != 0 ||
        memcmp(header->model, mine.model, sizeof mine.model) != 0) {
        model_error(&instance->logger, "%s: not an FMI 3.0 FMU state of %s", function,
                    MODEL.name);
        return 0;
    }
    if (header->size < MODEL.size || header->size > ((uint64_t)1 << 40) ||
        !((unsigned)header->phase & STATE_PHASES) || (header->phase & (header->phase - 1)) ||
        (header->initialized != 0 && header->initialized != 1)) {
        model_error(&instance->logger, "%s: the state is damaged (size %llu)", function,
                    (unsigned long long)header->size);
        return 0;
    }
    return 1;
}

fmi3Status fmi3SetFMUState(fmi3Instance c, fmi3FMUState FMUState) {
    Instance *instance = allowed(c, "fmi3SetFMUState", STATE_PHASES);
    const State *state = (const State *)FMUState;
    if (instance == NULL) return fmi3Error;
    if (state == NULL) {
        model_error(&instance->logger, "fmi3SetFMUState: the state is NULL");
        return fmi3Error;
    }
    if (!compatible(instance, "fmi3SetFMUState", &state->header)) return fmi3Error;
    if (state->header.size != instance->size) {
        void *resized = malloc((size_t)state->header.size);
        if (resized == NULL) {
            model_error(&instance->logger, "fmi3SetFMUState: out of memory");
            return fmi3Error;
        }
        free(instance->block);
        instance->block = resized;
        instance->size = (size_t)state->header.size;
    }
    memcpy(instance->block, state->block, instance->size);
    instance->time = state->header.time;
    instance->phase = (Phase)state->header.phase;
    instance->initialized = state->header.initialized;
    return fmi3OK;
}

fmi3Status fmi3FreeFMUState(fmi3Instance c, fmi3FMUState *FMUState) {
    if (c == NULL || FMUState == NULL) return fmi3Error;
    free(*FMUState);
    *FMUState = NULL;
    return fmi3OK;
}

fmi3Status fmi3SerializedFMUStateSize(fmi3Instance c, fmi3FMUState FMUState, size_t *size) {
    Instance *instance = allowed(c, "fmi3SerializedFMUStateSize", STATE_PHASES);
    const State *state = (const State *)FMUState;
    if (instance == NULL || state == NULL || size == NULL) return fmi3Error;
    *size = sizeof(StateHeader) + (size_t)state->header.size;
    return fmi3OK;
}

fmi3Status fmi3SerializeFMUState(fmi3Instance c, fmi3FMUState FMUState,
                                 fmi3Byte serializedState[], size_t size) {
    Instance *instance = allowed(c, "fmi3SerializeFMUState", STATE_PHASES);
    const State *state = (const State *)FMUState;
    if (instance == NULL || state == NULL || serializedState == NULL) return fmi3Error;
    if (size != sizeof(StateHeader) + (size_t)state->header.size) {
        model_error(&instance->logger, "fmi3SerializeFMUState: %lu bytes given, the state "
                    "needs %lu", (unsigned long)size,
                    (unsigned long)(sizeof(StateHeader) + state->header.size));
        return fmi3Error;
    }
    memcpy(serializedState, state, size);
    return fmi3OK;
}

fmi3Status fmi3DeserializeFMUState(fmi3Instance c, const fmi3Byte serializedState[],
                                   size_t size, fmi3FMUState *FMUState) {
    Instance *instance = allowed(c, "fmi3DeserializeFMUState", STATE_PHASES);
    StateHeader header;
    State *state;
    if (instance == NULL || serializedState == NULL || FMUState == NULL) return fmi3Error;
    if (size < sizeof header) {
        model_error(&instance->logger, "fmi3DeserializeFMUState: %lu bytes are too few",
                    (unsigned long)size);
        return fmi3Error;
    }
    memcpy(&header, serializedState, sizeof header);
    if (!compatible(instance, "fmi3DeserializeFMUState", &header)) return fmi3Error;
    if (size != sizeof header + header.size) {
        model_error(&instance->logger, "fmi3DeserializeFMUState: %lu bytes, the state says "
                    "%lu", (unsigned long)size, (unsigned long)(sizeof header + header.size));
        return fmi3Error;
    }
    state = (State *)malloc(size);
    if (state == NULL) {
        model_error(&instance->logger, "fmi3DeserializeFMUState: out of memory");
        return fmi3Error;
    }
    memcpy(state, serializedState, size);
    *FMUState = state;
    return fmi3OK;
}

/* ---------------------------------------------------------------- stepping */

fmi3Status fmi3DoStep(fmi3Instance c, fmi3Float64 currentCommunicationPoint,
                      fmi3Float64 communicationStepSize,
                      fmi3Boolean noSetFMUStatePriorToCurrentPoint,
                      fmi3Boolean *eventHandlingNeeded, fmi3Boolean *terminateSimulation,
                      fmi3Boolean *earlyReturn, fmi3Float64 *lastSuccessfulTime) {
    Instance *instance = allowed(c, "fmi3DoStep", STEP);
    size_t i;
    (void)noSetFMUStatePriorToCurrentPoint;
    if (instance == NULL) return fmi3Error;
    if (eventHandlingNeeded) *eventHandlingNeeded = fmi3False;
    if (terminateSimulation) *terminateSimulation = fmi3False; /* the models never end it */
    if (earlyReturn) *earlyReturn = fmi3False;
    if (lastSuccessfulTime) *lastSuccessfulTime = instance->time;
    if (!(communicationStepSize > 0.0) || !isfinite(communicationStepSize) ||
        !isfinite(currentCommunicationPoint)) {
        model_error(&instance->logger, "fmi3DoStep: invalid step from t = %g s of %g s",
                    currentCommunicationPoint, communicationStepSize);
        return fmi3Error;
    }
    for (i = 0; i < MODEL.variable_count; i++) { /* a model computes with finite inputs only */
        const Variable *v = &MODEL.variables[i];
        if (v->causality == INPUT && v->type == TYPE_REAL &&
            !isfinite(*(const Real *)value_of(instance, v))) {
            model_error(&instance->logger, "fmi3DoStep at t = %g s: input %s = %g is not finite",
                        currentCommunicationPoint, v->name, *(const Real *)value_of(instance, v));
            return fmi3Error;
        }
    }
    if (MODEL.step(instance->block, currentCommunicationPoint, communicationStepSize,
                   &instance->logger) != 0) {
        instance->phase = ERROR;
        return fmi3Error;
    }
    instance->time = currentCommunicationPoint + communicationStepSize;
    if (lastSuccessfulTime) *lastSuccessfulTime = instance->time;
    return fmi3OK;
}

/* ---------------------------------------------------------------- not provided */

static fmi3Status not_provided(fmi3Instance c, const char *function, const char *why) {
    Instance *instance = (Instance *)c;
    if (instance != NULL)
        model_error(&instance->logger, "%s is not provided by %s: %s (see its "
                    "modelDescription.xml)", function, MODEL.name, why);
    return fmi3Error;
}

#define NO_EVENTS "it has no event mode"
#define NO_CLOCKS "it has no clocks"
#define CO_SIMULATION_ONLY "it is a co-simulation FMU only"
#define NO_DERIVATIVES "it provides no derivatives"

fmi3Status fmi3EnterEventMode(fmi3Instance c) {
    return not_provided(c, "fmi3EnterEventMode", NO_EVENTS);
}

fmi3Status fmi3EnterStepMode(fmi3Instance c) {
    return not_provided(c, "fmi3EnterStepMode", NO_EVENTS);
}

fmi3Status fmi3UpdateDiscreteStates(fmi3Instance c, fmi3Boolean *discreteStatesNeedUpdate,
                                    fmi3Boolean *terminateSimulation,
                                    fmi3Boolean *nominalsOfContinuousStatesChanged,
                                    fmi3Boolean *valuesOfContinuousStatesChanged,
                                    fmi3Boolean *nextEventTimeDefined,
                                    fmi3Float64 *nextEventTime) {
    (void)discreteStatesNeedUpdate;
    (void)terminateSimulation;
    (void)nominalsOfContinuousStatesChanged;
    (void)valuesOfContinuousStatesChanged;
    (void)nextEventTimeDefined;
    (void)nextEventTime;
    return not_provided(c, "fmi3UpdateDiscreteStates", NO_EVENTS);
}

fmi3Status fmi3EvaluateDiscreteStates(fmi3Instance c) {
    return not_provided(c, "fmi3EvaluateDiscreteStates", NO_EVENTS);
}

fmi3Status fmi3GetNumberOfVariableDependencies(fmi3Instance c,
                                               fmi3ValueReference valueReference,
                                               size_t *nDependencies) {
    (void)valueReference;
    (void)nDependencies;
    return not_provided(c, "fmi3GetNumberOfVariableDependencies",
                        "its dependencies are in ModelStructure");
}

fmi3Status fmi3GetVariableDependencies(fmi3Instance c, fmi3ValueReference dependent,
                                       size_t elementIndicesOfDependent[],
                                       fmi3ValueReference independents[],
                                       size_t elementIndicesOfIndependents[],
                                       fmi3DependencyKind dependencyKinds[],
                                       size_t nDependencies) {
    (void)dependent;
    (void)elementIndicesOfDependent;
    (void)independents;
    (void)elementIndicesOfIndependents;
    (void)dependencyKinds;
    (void)nDependencies;
    return not_provided(c, "fmi3GetVariableDependencies",
                        "its dependencies are in ModelStructure");
}

fmi3Status fmi3GetDirectionalDerivative(fmi3Instance c, const fmi3ValueReference unknowns[],
                                        size_t nUnknowns, const fmi3ValueReference knowns[],
                                        size_t nKnowns, const fmi3Float64 seed[],
                                        size_t nSeed, fmi3Float64 sensitivity[],
                                        size_t nSensitivity) {
    (void)unknowns;
    (void)nUnknowns;
    (void)knowns;
    (void)nKnowns;
    (void)seed;
    (void)nSeed;
    (void)sensitivity;
    (void)nSensitivity;
    return not_provided(c, "fmi3GetDirectionalDerivative", NO_DERIVATIVES);
}

fmi3Status fmi3GetAdjointDerivative(fmi3Instance c, const fmi3ValueReference unknowns[],
                                    size_t nUnknowns, const fmi3ValueReference knowns[],
                                    size_t nKnowns, const fmi3Float64 seed[], size_t nSeed,
                                    fmi3Float64 sensitivity[], size_t nSensitivity) {
    (void)unknowns;
    (void)nUnknowns;
    (void)knowns;
    (void)nKnowns;
    (void)seed;
    (void)nSeed;
    (void)sensitivity;
    (void)nSensitivity;
    return not_provided(c, "fmi3GetAdjointDerivative", NO_DERIVATIVES);
}

fmi3Status fmi3GetOutputDerivatives(fmi3Instance c, const fmi3ValueReference valueReferences[],
                                    size_t nValueReferences, const fmi3Int32 orders[],
                                    fmi3Float64 values[], size_t nValues) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)orders;
    (void)values;
    (void)nValues;
    return not_provided(c, "fmi3GetOutputDerivatives", NO_DERIVATIVES);
}

fmi3Status fmi3GetIntervalDecimal(fmi3Instance c, const fmi3ValueReference valueReferences[],
                                  size_t nValueReferences, fmi3Float64 intervals[],
                                  fmi3IntervalQualifier qualifiers[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)intervals;
    (void)qualifiers;
    return not_provided(c, "fmi3GetIntervalDecimal", NO_CLOCKS);
}

fmi3Status fmi3GetIntervalFraction(fmi3Instance c, const fmi3ValueReference valueReferences[],
                                   size_t nValueReferences, fmi3UInt64 counters[],
                                   fmi3UInt64 resolutions[],
                                   fmi3IntervalQualifier qualifiers[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)counters;
    (void)resolutions;
    (void)qualifiers;
    return not_provided(c, "fmi3GetIntervalFraction", NO_CLOCKS);
}

fmi3Status fmi3GetShiftDecimal(fmi3Instance c, const fmi3ValueReference valueReferences[],
                               size_t nValueReferences, fmi3Float64 shifts[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)shifts;
    return not_provided(c, "fmi3GetShiftDecimal", NO_CLOCKS);
}

fmi3Status fmi3GetShiftFraction(fmi3Instance c, const fmi3ValueReference valueReferences[],
                                size_t nValueReferences, fmi3UInt64 counters[],
                                fmi3UInt64 resolutions[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)counters;
    (void)resolutions;
    return not_provided(c, "fmi3GetShiftFraction", NO_CLOCKS);
}

fmi3Status fmi3SetIntervalDecimal(fmi3Instance c, const fmi3ValueReference valueReferences[],
                                  size_t nValueReferences, const fmi3Float64 intervals[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)intervals;
    return not_provided(c, "fmi3SetIntervalDecimal", NO_CLOCKS);
}

fmi3Status fmi3SetIntervalFraction(fmi3Instance c, const fmi3ValueReference valueReferences[],
                                   size_t nValueReferences, const fmi3UInt64 counters[],
                                   const fmi3UInt64 resolutions[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)counters;
    (void)resolutions;
    return not_provided(c, "fmi3SetIntervalFraction", NO_CLOCKS);
}

fmi3Status fmi3SetShiftDecimal(fmi3Instance c, const fmi3ValueReference valueReferences[],
                               size_t nValueReferences, const fmi3Float64 shifts[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)shifts;
    return not_provided(c, "fmi3SetShiftDecimal", NO_CLOCKS);
}

fmi3Status fmi3SetShiftFraction(fmi3Instance c, const fmi3ValueReference valueReferences[],
                                size_t nValueReferences, const fmi3UInt64 counters[],
                                const fmi3UInt64 resolutions[]) {
    (void)valueReferences;
    (void)nValueReferences;
    (void)counters;
    (void)resolutions;
    return not_provided(c, "fmi3SetShiftFraction", NO_CLOCKS);
}

fmi3Status fmi3ActivateModelPartition(fmi3Instance c, fmi3ValueReference clockReference,
                                      fmi3Float64 activationTime) {
    (void)clockReference;
    (void)activationTime;
    return not_provided(c, "fmi3ActivateModelPartition", CO_SIMULATION_ONLY);
}

fmi3Status fmi3EnterContinuousTimeMode(fmi3Instance c) {
    return not_provided(c, "fmi3EnterContinuousTimeMode", CO_SIMULATION_ONLY);
}

fmi3Status fmi3CompletedIntegratorStep(fmi3Instance c,
                                       fmi3Boolean noSetFMUStatePriorToCurrentPoint,
                                       fmi3Boolean *enterEventMode,
                                       fmi3Boolean *terminateSimulation) {
    (void)noSetFMUStatePriorToCurrentPoint;
    (void)enterEventMode;
    (void)terminateSimulation;
    return not_provided(c, "fmi3CompletedIntegratorStep", CO_SIMULATION_ONLY);
}

fmi3Status fmi3SetTime(fmi3Instance c, fmi3Float64 time) {
    (void)time;
    return not_provided(c, "fmi3SetTime", CO_SIMULATION_ONLY);
}

fmi3Status fmi3SetContinuousStates(fmi3Instance c, const fmi3Float64 continuousStates[],
                                   size_t nContinuousStates) {
    (void)continuousStates;
    (void)nContinuousStates;
    return not_provided(c, "fmi3SetContinuousStates", CO_SIMULATION_ONLY);
}

fmi3Status fmi3GetContinuousStateDerivatives(fmi3Instance c, fmi3Float64 derivatives[],
                                             size_t nContinuousStates) {
    (void)derivatives;
    (void)nContinuousStates;
    return not_provided(c, "fmi3GetContinuousStateDerivatives", CO_SIMULATION_ONLY);
}

fmi3Status fmi3GetEventIndicators(fmi3Instance c, fmi3Float64 eventIndicators[],
                                  size_t nEventIndicators) {
    (void)eventIndicators;
    (void)nEventIndicators;
    return not_provided(c, "fmi3GetEventIndicators", CO_SIMULATION_ONLY);
}

fmi3Status fmi3GetContinuousStates(fmi3Instance c, fmi3Float64 continuousStates[],
                                   size_t nContinuousStates) {
    (void)continuousStates;
    (void)nContinuousStates;
    return not_provided(c, "fmi3GetContinuousStates", CO_SIMULATION_ONLY);
}

fmi3Status fmi3GetNominalsOfContinuousStates(fmi3Instance c, fmi3Float64 nominals[],
                                             size_t nContinuousStates) {
    (void)nominals;
    (void)nContinuousStates;
    return not_provided(c, "fmi3GetNominalsOfContinuousStates", CO_SIMULATION_ONLY);
}

fmi3Status fmi3GetNumberOfEventIndicators(fmi3Instance c, size_t *nEventIndicators) {
    (void)nEventIndicators;
    return not_provided(c, "fmi3GetNumberOfEventIndicators", CO_SIMULATION_ONLY);
}

fmi3Status fmi3GetNumberOfContinuousStates(fmi3Instance c, size_t *nContinuousStates) {
    (void)nContinuousStates;
    return not_provided(c, "fmi3GetNumberOfContinuousStates", CO_SIMULATION_ONLY);
}
