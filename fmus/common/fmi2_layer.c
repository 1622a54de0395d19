/*
 * fmi2_layer.c: the FMI 2.0 co-simulation interface of a cosim library model (model.h).
 *
 * Everything FMI lives here and nothing of a model: the instance and its state machine,
 * get/set by value reference (the position in the model's variable table), FMU state
 * get/set/free/serialise/deserialise (the instance's block copied as bytes), and messages
 * through the host's logger callback. All 34 fmi2 functions are exported (hosts such as
 * fmpy bind every one); those a co-simulation FMU without input derivatives or directional
 * derivatives does not provide return fmi2Error with a message.
 *
 * The instantiation GUID comes from guid.h, which the build writes beside the sources
 * (`#define MODEL_GUID "{...}"`, derived from the model's interface).
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fmi2Functions.h"
#include "guid.h"
#include "model.h"

/* The states of the FMI 2.0 co-simulation state machine (FMI 2.0.4, section 4.2.4). */
typedef enum {
    INSTANTIATED = 1 << 0,
    INITIALIZATION = 1 << 1,
    STEP_COMPLETE = 1 << 2,
    TERMINATED = 1 << 3,
    ERROR = 1 << 4,
} Phase;

#define ANY_PHASE (INSTANTIATED | INITIALIZATION | STEP_COMPLETE | TERMINATED | ERROR)
#define SETTABLE (INSTANTIATED | INITIALIZATION | STEP_COMPLETE)

struct Logger {
    const char *name;
    fmi2CallbackLogger log;
    fmi2ComponentEnvironment environment;
};

typedef struct {
    struct Logger logger;
    fmi2CallbackAllocateMemory allocate;
    fmi2CallbackFreeMemory release;
    Phase phase;
    double time;        /* last communication point reached */
    double start_time;  /* from fmi2SetupExperiment */
    size_t size;        /* bytes of the block: the model's struct and its arrays */
    void *block;
    char name[1];       /* the instance name, allocated with the instance */
} Instance;

/* An FMU state: what fmi2GetFMUstate copies, and (after the header) what serialises. */
typedef struct {
    char magic[8];      /* "cosimS1\0" */
    char model[24];     /* the model's name, truncated */
    uint64_t size;      /* bytes of the block */
    double time;
    int32_t phase;
    int32_t reserved;
} StateHeader;

typedef struct {
    StateHeader header;
    unsigned char block[]; /* header.size bytes */
} State;

void model_error(Logger *logger, const char *format, ...) {
    char message[1024], *p;
    va_list args;
    if (logger == NULL || logger->log == NULL) return;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    /* The message is the format argument of the logger: no '%' may remain in it. */
    for (p = message; *p != '\0'; p++)
        if (*p == '%') *p = ' ';
    logger->log(logger->environment, logger->name, fmi2Error, "logStatusError", message);
}

static const Variable *variable(Instance *instance, const char *function,
                                fmi2ValueReference vr, VariableType type) {
    static const char *TYPE_NAMES[] = {"Real", "Integer", "Boolean", "String"};
    if (vr >= MODEL.variable_count) {
        model_error(&instance->logger, "%s: unknown value reference %u (this FMU has 0 to %u)",
                    function, (unsigned)vr, (unsigned)MODEL.variable_count - 1);
        return NULL;
    }
    if (MODEL.variables[vr].type != type) {
        model_error(&instance->logger, "%s: %s (value reference %u) is a %s, not a %s",
                    function, MODEL.variables[vr].name, (unsigned)vr,
                    TYPE_NAMES[MODEL.variables[vr].type], TYPE_NAMES[type]);
        return NULL;
    }
    return &MODEL.variables[vr];
}

/* The instance if it is in one of the allowed phases; else logs and returns NULL. */
static Instance *allowed(fmi2Component c, const char *function, unsigned phases) {
    static const char *PHASE_NAMES[] = {"instantiated", "initialization mode",
                                        "step complete", "terminated", "error"};
    Instance *instance = (Instance *)c;
    int i;
    if (instance == NULL) return NULL;
    if (instance->phase & phases) return instance;
    for (i = 0; i < 5 && !((unsigned)instance->phase & (1u << i)); i++) {
    }
    model_error(&instance->logger, "%s is not allowed in %s", function,
                i < 5 ? PHASE_NAMES[i] : "this state");
    return NULL;
}

/* May variable v be set now? Parameters only before the end of initialisation. */
static int settable(Instance *instance, const char *function, const Variable *v) {
    if (v->causality == OUTPUT) {
        model_error(&instance->logger, "%s: %s is an output and cannot be set", function,
                    v->name);
        return 0;
    }
    if (v->causality == PARAMETER && !(instance->phase & (INSTANTIATED | INITIALIZATION))) {
        model_error(&instance->logger,
                    "%s: parameter %s is fixed: set it before fmi2ExitInitializationMode",
                    function, v->name);
        return 0;
    }
    return 1;
}

static void *value_of(Instance *instance, const Variable *v) {
    return (char *)instance->block + v->offset;
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

/* ---------------------------------------------------------------- common functions */

const char *fmi2GetTypesPlatform(void) { return fmi2TypesPlatform; }

const char *fmi2GetVersion(void) { return fmi2Version; }

fmi2Status fmi2SetDebugLogging(fmi2Component c, fmi2Boolean loggingOn, size_t nCategories,
                               const fmi2String categories[]) {
    (void)loggingOn; /* errors are always logged; there is nothing else to log */
    (void)nCategories;
    (void)categories;
    return allowed(c, "fmi2SetDebugLogging", ANY_PHASE) ? fmi2OK : fmi2Error;
}

fmi2Component fmi2Instantiate(fmi2String instanceName, fmi2Type fmuType, fmi2String fmuGUID,
                              fmi2String fmuResourceLocation,
                              const fmi2CallbackFunctions *functions, fmi2Boolean visible,
                              fmi2Boolean loggingOn) {
    const char *name = instanceName ? instanceName : "";
    struct Logger logger;
    Instance *instance;
    (void)fmuResourceLocation;
    (void)visible;
    (void)loggingOn;
    if (functions == NULL || functions->allocateMemory == NULL || functions->freeMemory == NULL)
        return NULL;
    logger.name = name;
    logger.log = functions->logger;
    logger.environment = functions->componentEnvironment;
    if (fmuType != fmi2CoSimulation) {
        model_error(&logger, "fmi2Instantiate: %s is a co-simulation FMU only", MODEL.name);
        return NULL;
    }
    if (fmuGUID == NULL || strcmp(fmuGUID, MODEL_GUID) != 0) {
        model_error(&logger, "fmi2Instantiate: GUID %s does not match this binary's %s "
                    "(modelDescription.xml and binary from different builds?)",
                    fmuGUID ? fmuGUID : "(null)", MODEL_GUID);
        return NULL;
    }
    instance = (Instance *)functions->allocateMemory(1, sizeof(Instance) + strlen(name));
    if (instance == NULL) return NULL;
    strcpy(instance->name, name);
    instance->logger = logger;
    instance->logger.name = instance->name;
    instance->allocate = functions->allocateMemory;
    instance->release = functions->freeMemory;
    instance->size = MODEL.size;
    instance->block = functions->allocateMemory(1, MODEL.size);
    if (instance->block == NULL) {
        functions->freeMemory(instance);
        return NULL;
    }
    set_start_values(instance);
    instance->phase = INSTANTIATED;
    return instance;
}

void fmi2FreeInstance(fmi2Component c) {
    Instance *instance = (Instance *)c;
    if (instance == NULL) return;
    instance->release(instance->block);
    instance->release(instance);
}

fmi2Status fmi2SetupExperiment(fmi2Component c, fmi2Boolean toleranceDefined,
                               fmi2Real tolerance, fmi2Real startTime,
                               fmi2Boolean stopTimeDefined, fmi2Real stopTime) {
    Instance *instance = allowed(c, "fmi2SetupExperiment", INSTANTIATED);
    (void)toleranceDefined;
    (void)tolerance;
    (void)stopTimeDefined;
    (void)stopTime;
    if (instance == NULL) return fmi2Error;
    instance->start_time = startTime;
    instance->time = startTime;
    return fmi2OK;
}

fmi2Status fmi2EnterInitializationMode(fmi2Component c) {
    Instance *instance = allowed(c, "fmi2EnterInitializationMode", INSTANTIATED);
    if (instance == NULL) return fmi2Error;
    instance->phase = INITIALIZATION;
    return fmi2OK;
}

fmi2Status fmi2ExitInitializationMode(fmi2Component c) {
    Instance *instance = allowed(c, "fmi2ExitInitializationMode", INITIALIZATION);
    long extra = 0;
    if (instance == NULL) return fmi2Error;
    if (MODEL.arrays != NULL) {
        extra = MODEL.arrays(instance->block, &instance->logger);
        if (extra < 0) {
            instance->phase = ERROR;
            return fmi2Error;
        }
    }
    if (MODEL.size + (size_t)extra != instance->size) {
        void *block = instance->allocate(1, MODEL.size + (size_t)extra);
        if (block == NULL) {
            model_error(&instance->logger, "fmi2ExitInitializationMode: out of memory "
                        "(%ld bytes of arrays)", extra);
            instance->phase = ERROR;
            return fmi2Error;
        }
        memcpy(block, instance->block, MODEL.size);
        instance->release(instance->block);
        instance->block = block;
        instance->size = MODEL.size + (size_t)extra;
    }
    if (MODEL.initialize(instance->block, instance->start_time, &instance->logger) != 0) {
        instance->phase = ERROR;
        return fmi2Error;
    }
    instance->time = instance->start_time;
    instance->phase = STEP_COMPLETE;
    return fmi2OK;
}

fmi2Status fmi2Terminate(fmi2Component c) {
    Instance *instance = allowed(c, "fmi2Terminate", STEP_COMPLETE);
    if (instance == NULL) return fmi2Error;
    instance->phase = TERMINATED;
    return fmi2OK;
}

fmi2Status fmi2Reset(fmi2Component c) {
    Instance *instance = allowed(c, "fmi2Reset", ANY_PHASE);
    if (instance == NULL) return fmi2Error;
    if (instance->size != MODEL.size) {
        void *block = instance->allocate(1, MODEL.size);
        if (block == NULL) return fmi2Error;
        instance->release(instance->block);
        instance->block = block;
        instance->size = MODEL.size;
    }
    set_start_values(instance);
    instance->time = instance->start_time = 0.0;
    instance->phase = INSTANTIATED;
    return fmi2OK;
}

/* ---------------------------------------------------------------- get and set */

#define GET_SET_ALLOWED (SETTABLE | TERMINATED | ERROR)

fmi2Status fmi2GetReal(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                       fmi2Real value[]) {
    Instance *instance = allowed(c, "fmi2GetReal", GET_SET_ALLOWED);
    size_t i;
    if (instance == NULL) return fmi2Error;
    for (i = 0; i < nvr; i++) {
        const Variable *v = variable(instance, "fmi2GetReal", vr[i], TYPE_REAL);
        if (v == NULL) return fmi2Error;
        value[i] = *(const Real *)value_of(instance, v);
    }
    return fmi2OK;
}

fmi2Status fmi2GetInteger(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                          fmi2Integer value[]) {
    Instance *instance = allowed(c, "fmi2GetInteger", GET_SET_ALLOWED);
    size_t i;
    if (instance == NULL) return fmi2Error;
    for (i = 0; i < nvr; i++) {
        const Variable *v = variable(instance, "fmi2GetInteger", vr[i], TYPE_INTEGER);
        if (v == NULL) return fmi2Error;
        value[i] = *(const Integer *)value_of(instance, v);
    }
    return fmi2OK;
}

fmi2Status fmi2GetBoolean(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                          fmi2Boolean value[]) {
    Instance *instance = allowed(c, "fmi2GetBoolean", GET_SET_ALLOWED);
    size_t i;
    if (instance == NULL) return fmi2Error;
    for (i = 0; i < nvr; i++) {
        const Variable *v = variable(instance, "fmi2GetBoolean", vr[i], TYPE_BOOLEAN);
        if (v == NULL) return fmi2Error;
        value[i] = *(const Integer *)value_of(instance, v) ? fmi2True : fmi2False;
    }
    return fmi2OK;
}

fmi2Status fmi2GetString(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                         fmi2String value[]) {
    Instance *instance = allowed(c, "fmi2GetString", GET_SET_ALLOWED);
    size_t i;
    if (instance == NULL) return fmi2Error;
    for (i = 0; i < nvr; i++) {
        const Variable *v = variable(instance, "fmi2GetString", vr[i], TYPE_STRING);
        if (v == NULL) return fmi2Error;
        value[i] = (const char *)value_of(instance, v);
    }
    return fmi2OK;
}

fmi2Status fmi2SetReal(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                       const fmi2Real value[]) {
    Instance *instance = allowed(c, "fmi2SetReal", SETTABLE);
    size_t i;
    if (instance == NULL) return fmi2Error;
    for (i = 0; i < nvr; i++) {
        const Variable *v = variable(instance, "fmi2SetReal", vr[i], TYPE_REAL);
        if (v == NULL || !settable(instance, "fmi2SetReal", v)) return fmi2Error;
        *(Real *)value_of(instance, v) = value[i];
    }
    return fmi2OK;
}

fmi2Status fmi2SetInteger(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                          const fmi2Integer value[]) {
    Instance *instance = allowed(c, "fmi2SetInteger", SETTABLE);
    size_t i;
    if (instance == NULL) return fmi2Error;
    for (i = 0; i < nvr; i++) {
        const Variable *v = variable(instance, "fmi2SetInteger", vr[i], TYPE_INTEGER);
        if (v == NULL || !settable(instance, "fmi2SetInteger", v)) return fmi2Error;
        *(Integer *)value_of(instance, v) = value[i];
    }
    return fmi2OK;
}

fmi2Status fmi2SetBoolean(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                          const fmi2Boolean value[]) {
    Instance *instance = allowed(c, "fmi2SetBoolean", SETTABLE);
    size_t i;
    if (instance == NULL) return fmi2Error;
    for (i = 0; i < nvr; i++) {
        const Variable *v = variable(instance, "fmi2SetBoolean", vr[i], TYPE_BOOLEAN);
        if (v == NULL || !settable(instance, "fmi2SetBoolean", v)) return fmi2Error;
        *(Integer *)value_of(instance, v) = value[i] ? 1 : 0;
    }
    return fmi2OK;
}

fmi2Status fmi2SetString(fmi2Component c, const fmi2ValueReference vr[], size_t nvr,
                         const fmi2String value[]) {
    Instance *instance = allowed(c, "fmi2SetString", SETTABLE);
    size_t i;
    if (instance == NULL) return fmi2Error;
    for (i = 0; i < nvr; i++) {
        const Variable *v = variable(instance, "fmi2SetString", vr[i], TYPE_STRING);
        const char *text = value[i] ? value[i] : "";
        if (v == NULL || !settable(instance, "fmi2SetString", v)) return fmi2Error;
        if (strlen(text) >= STRING_CAPACITY) {
            model_error(&instance->logger, "fmi2SetString: '%s' is too long for %s (at most "
                        "%d characters)", text, v->name, STRING_CAPACITY - 1);
            return fmi2Error;
        }
        strcpy((char *)value_of(instance, v), text);
    }
    return fmi2OK;
}

/* ---------------------------------------------------------------- FMU state */

static void fill_header(StateHeader *header, const Instance *instance) {
    memset(header, 0, sizeof *header);
    memcpy(header->magic, "cosimS1", 8);
    strncpy(header->model, MODEL.name, sizeof header->model - 1);
    header->size = instance->size;
    header->time = instance->time;
    header->phase = (int32_t)instance->phase;
}

fmi2Status fmi2GetFMUstate(fmi2Component c, fmi2FMUstate *FMUstate) {
    Instance *instance = allowed(c, "fmi2GetFMUstate", GET_SET_ALLOWED);
    State *state;
    if (instance == NULL || FMUstate == NULL) return fmi2Error;
    state = (State *)*FMUstate;
    if (state != NULL && state->header.size != instance->size) { /* reuse only if it fits */
        instance->release(state);
        state = NULL;
    }
    if (state == NULL) {
        state = (State *)instance->allocate(1, sizeof(State) + instance->size);
        if (state == NULL) {
            model_error(&instance->logger, "fmi2GetFMUstate: out of memory");
            return fmi2Error;
        }
    }
    fill_header(&state->header, instance);
    memcpy(state->block, instance->block, instance->size);
    *FMUstate = state;
    return fmi2OK;
}

/* Is header a state of this model that this instance can take? */
static int compatible(Instance *instance, const char *function, const StateHeader *header) {
    StateHeader mine;
    fill_header(&mine, instance);
    if (memcmp(header->magic, mine.magic, sizeof mine.magic) != 0 ||
        memcmp(header->model, mine.model, sizeof mine.model) != 0) {
        model_error(&instance->logger, "%s: not an FMU state of %s", function, MODEL.name);
        return 0;
    }
    if (header->size < MODEL.size || header->size > ((uint64_t)1 << 40) ||
        !(header->phase & ANY_PHASE) || (header->phase & (header->phase - 1))) {
        model_error(&instance->logger, "%s: the state is damaged (size %llu)", function,
                    (unsigned long long)header->size);
        return 0;
    }
    return 1;
}

static fmi2Status restore(Instance *instance, const char *function, const StateHeader *header,
                          const unsigned char *block) {
    if (!compatible(instance, function, header)) return fmi2Error;
    if (header->size != instance->size) {
        void *resized = instance->allocate(1, (size_t)header->size);
        if (resized == NULL) {
            model_error(&instance->logger, "%s: out of memory", function);
            return fmi2Error;
        }
        instance->release(instance->block);
        instance->block = resized;
        instance->size = (size_t)header->size;
    }
    memcpy(instance->block, block, instance->size);
    instance->time = header->time;
    instance->phase = (Phase)header->phase;
    return fmi2OK;
}

fmi2Status fmi2SetFMUstate(fmi2Component c, fmi2FMUstate FMUstate) {
    Instance *instance = allowed(c, "fmi2SetFMUstate", GET_SET_ALLOWED);
    const State *state = (const State *)FMUstate;
    if (instance == NULL) return fmi2Error;
    if (state == NULL) {
        model_error(&instance->logger, "fmi2SetFMUstate: the state is NULL");
        return fmi2Error;
    }
    return restore(instance, "fmi2SetFMUstate", &state->header, state->block);
}

fmi2Status fmi2FreeFMUstate(fmi2Component c, fmi2FMUstate *FMUstate) {
    Instance *instance = (Instance *)c;
    if (instance == NULL || FMUstate == NULL) return fmi2Error;
    if (*FMUstate != NULL) instance->release(*FMUstate);
    *FMUstate = NULL;
    return fmi2OK;
}

fmi2Status fmi2SerializedFMUstateSize(fmi2Component c, fmi2FMUstate FMUstate, size_t *size) {
    Instance *instance = allowed(c, "fmi2SerializedFMUstateSize", GET_SET_ALLOWED);
    const State *state = (const State *)FMUstate;
    if (instance == NULL || state == NULL || size == NULL) return fmi2Error;
    *size = sizeof(StateHeader) + (size_t)state->header.size;
    return fmi2OK;
}

fmi2Status fmi2SerializeFMUstate(fmi2Component c, fmi2FMUstate FMUstate,
                                 fmi2Byte serializedState[], size_t size) {
    Instance *instance = allowed(c, "fmi2SerializeFMUstate", GET_SET_ALLOWED);
    const State *state = (const State *)FMUstate;
    if (instance == NULL || state == NULL || serializedState == NULL) return fmi2Error;
    if (size != sizeof(StateHeader) + (size_t)state->header.size) {
        model_error(&instance->logger, "fmi2SerializeFMUstate: %lu bytes given, the state "
                    "needs %lu", (unsigned long)size,
                    (unsigned long)(sizeof(StateHeader) + state->header.size));
        return fmi2Error;
    }
    memcpy(serializedState, state, size);
    return fmi2OK;
}

fmi2Status fmi2DeSerializeFMUstate(fmi2Component c, const fmi2Byte serializedState[],
                                   size_t size, fmi2FMUstate *FMUstate) {
    Instance *instance = allowed(c, "fmi2DeSerializeFMUstate", GET_SET_ALLOWED);
    StateHeader header;
    State *state;
    if (instance == NULL || serializedState == NULL || FMUstate == NULL) return fmi2Error;
    if (size < sizeof header) {
        model_error(&instance->logger, "fmi2DeSerializeFMUstate: %lu bytes are too few",
                    (unsigned long)size);
        return fmi2Error;
    }
    memcpy(&header, serializedState, sizeof header);
    if (!compatible(instance, "fmi2DeSerializeFMUstate", &header)) return fmi2Error;
    if (size != sizeof header + header.size) {
        model_error(&instance->logger, "fmi2DeSerializeFMUstate: %lu bytes, the state says "
                    "%lu", (unsigned long)size, (unsigned long)(sizeof header + header.size));
        return fmi2Error;
    }
    state = (State *)instance->allocate(1, size);
    if (state == NULL) {
        model_error(&instance->logger, "fmi2DeSerializeFMUstate: out of memory");
        return fmi2Error;
    }
    memcpy(state, serializedState, size);
    *FMUstate = state;
    return fmi2OK;
}

/* ---------------------------------------------------------------- not provided */

static fmi2Status not_provided(fmi2Component c, const char *function) {
    Instance *instance = (Instance *)c;
    if (instance != NULL)
        model_error(&instance->logger, "%s is not provided by %s (see its modelDescription.xml)",
                    function, MODEL.name);
    return fmi2Error;
}

fmi2Status fmi2GetDirectionalDerivative(fmi2Component c, const fmi2ValueReference vUnknown_ref[],
                                        size_t nUnknown, const fmi2ValueReference vKnown_ref[],
                                        size_t nKnown, const fmi2Real dvKnown[],
                                        fmi2Real dvUnknown[]) {
    (void)vUnknown_ref;
    (void)nUnknown;
    (void)vKnown_ref;
    (void)nKnown;
    (void)dvKnown;
    (void)dvUnknown;
    return not_provided(c, "fmi2GetDirectionalDerivative");
}

fmi2Status fmi2SetRealInputDerivatives(fmi2Component c, const fmi2ValueReference vr[],
                                       size_t nvr, const fmi2Integer order[],
                                       const fmi2Real value[]) {
    (void)vr;
    (void)nvr;
    (void)order;
    (void)value;
    return not_provided(c, "fmi2SetRealInputDerivatives");
}

fmi2Status fmi2GetRealOutputDerivatives(fmi2Component c, const fmi2ValueReference vr[],
                                        size_t nvr, const fmi2Integer order[],
                                        fmi2Real value[]) {
    (void)vr;
    (void)nvr;
    (void)order;
    (void)value;
    return not_provided(c, "fmi2GetRealOutputDerivatives");
}

fmi2Status fmi2CancelStep(fmi2Component c) { return not_provided(c, "fmi2CancelStep"); }

/* ---------------------------------------------------------------- stepping and status */

fmi2Status fmi2DoStep(fmi2Component c, fmi2Real currentCommunicationPoint,
                      fmi2Real communicationStepSize, fmi2Boolean noSetFMUStatePriorToCurrentPoint) {
    Instance *instance = allowed(c, "fmi2DoStep", STEP_COMPLETE);
    size_t i;
    (void)noSetFMUStatePriorToCurrentPoint;
    if (instance == NULL) return fmi2Error;
    if (!(communicationStepSize > 0.0) || !isfinite(communicationStepSize) ||
        !isfinite(currentCommunicationPoint)) {
        model_error(&instance->logger, "fmi2DoStep: invalid step from t = %g s of %g s",
                    currentCommunicationPoint, communicationStepSize);
        return fmi2Error;
    }
    for (i = 0; i < MODEL.variable_count; i++) { /* a model computes with finite inputs only */
        const Variable *v = &MODEL.variables[i];
        if (v->causality == INPUT && v->type == TYPE_REAL &&
            !isfinite(*(const Real *)value_of(instance, v))) {
            model_error(&instance->logger, "fmi2DoStep at t = %g s: input %s = %g is not finite",
                        currentCommunicationPoint, v->name, *(const Real *)value_of(instance, v));
            return fmi2Error;
        }
    }
    if (MODEL.step(instance->block, currentCommunicationPoint, communicationStepSize,
                   &instance->logger) != 0) {
        instance->phase = ERROR;
        return fmi2Error;
    }
    instance->time = currentCommunicationPoint + communicationStepSize;
    return fmi2OK;
}

fmi2Status fmi2GetStatus(fmi2Component c, const fmi2StatusKind s, fmi2Status *value) {
    Instance *instance = allowed(c, "fmi2GetStatus", GET_SET_ALLOWED);
    if (instance == NULL || value == NULL) return fmi2Error;
    if (s != fmi2DoStepStatus) return not_provided(c, "fmi2GetStatus of this kind");
    *value = fmi2OK; /* doStep never returns fmi2Pending */
    return fmi2OK;
}

fmi2Status fmi2GetRealStatus(fmi2Component c, const fmi2StatusKind s, fmi2Real *value) {
    Instance *instance = allowed(c, "fmi2GetRealStatus", GET_SET_ALLOWED);
    if (instance == NULL || value == NULL) return fmi2Error;
    if (s != fmi2LastSuccessfulTime) return not_provided(c, "fmi2GetRealStatus of this kind");
    *value = instance->time;
    return fmi2OK;
}

fmi2Status fmi2GetIntegerStatus(fmi2Component c, const fmi2StatusKind s, fmi2Integer *value) {
    (void)s;
    (void)value;
    return not_provided(c, "fmi2GetIntegerStatus");
}

fmi2Status fmi2GetBooleanStatus(fmi2Component c, const fmi2StatusKind s, fmi2Boolean *value) {
    Instance *instance = allowed(c, "fmi2GetBooleanStatus", GET_SET_ALLOWED);
    if (instance == NULL || value == NULL) return fmi2Error;
    if (s != fmi2Terminated) return not_provided(c, "fmi2GetBooleanStatus of this kind");
    *value = fmi2False; /* the models never ask to end the simulation */
    return fmi2OK;
}

fmi2Status fmi2GetStringStatus(fmi2Component c, const fmi2StatusKind s, fmi2String *value) {
    (void)s;
    (void)value;
    return not_provided(c, "fmi2GetStringStatus");
}
