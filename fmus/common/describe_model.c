/*
 * describe_model.c: prints a model's tables (model.h: variables, array outputs) as JSON, for
 * the build that writes modelDescription.xml (cosim/library/build_c.py). Compiled with the model file
 * into a program that runs once at build time; it is not part of the FMU's binary.
 */
#include <stdio.h>

#include "model.h"

void model_error(Logger *logger, const char *format, ...) {
    (void)logger;
    (void)format;
}

static void string(const char *text) {
    const char *p;
    putchar('"');
    for (p = text ? text : ""; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if ((unsigned char)*p < 0x20) printf("\\u%04x", (unsigned char)*p);
        else putchar(*p);
    }
    putchar('"');
}

int main(void) {
    static const char *TYPES[] = {"Real", "Integer", "Boolean", "String"};
    static const char *CAUSALITIES[] = {"parameter", "input", "output"};
    size_t i;
    printf("{\"name\": ");
    string(MODEL.name);
    printf(", \"description\": ");
    string(MODEL.description);
    printf(", \"stop_time\": %.17g, \"step_size\": %.17g, \"variables\": [\n",
           MODEL.stop_time, MODEL.step_size);
    for (i = 0; i < MODEL.variable_count; i++) {
        const Variable *v = &MODEL.variables[i];
        printf("  {\"name\": ");
        string(v->name);
        printf(", \"type\": \"%s\", \"causality\": \"%s\", \"start\": ", TYPES[v->type],
               CAUSALITIES[v->causality]);
        if (v->type == TYPE_STRING) string(v->start_string);
        else printf("%.17g", v->start);
        printf(", \"unit\": ");
        string(v->unit);
        printf(", \"description\": ");
        string(v->description);
        printf(", \"depends\": ");
        string(v->depends);
        printf(", \"discrete\": %s", v->discrete ? "true" : "false");
        printf("}%s\n", i + 1 < MODEL.variable_count ? "," : "");
    }
    printf("], \"arrays\": [\n");
    for (i = 0; i < MODEL.array_output_count; i++) {
        const ArrayOutput *a = &MODEL.array_outputs[i];
        printf("  {\"name\": ");
        string(a->name);
        printf(", \"start\": %.17g, \"unit\": ", a->start);
        string(a->unit);
        printf(", \"description\": ");
        string(a->description);
        printf(", \"dimensions\": ");
        string(a->dimensions);
        printf("}%s\n", i + 1 < MODEL.array_output_count ? "," : "");
    }
    printf("]}\n");
    return 0;
}
