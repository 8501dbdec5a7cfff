// Caps what a Job's containers ask for: any CPU or memory request or limit above the
// platform's maximum is lowered to it (and logged), or, with `mode=reject`, the run is
// rejected. Settings (`-c caps.KEY=VALUE`): `cpu.max` (say `2` or `1500m`), `memory.max`
// (say `4Gi`), `mode` (`cap`, the default, or `reject`).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_plugin.h"

// A Kubernetes quantity in base units (cores, bytes); NAN when it is not one.
static double quantity(const char *text) {
    static const struct {
        const char *suffix;
        double factor;
    } suffixes[] = {
        {"Ki", 1024.0}, {"Mi", 1048576.0}, {"Gi", 1073741824.0}, {"Ti", 1099511627776.0},
        {"Pi", 1125899906842624.0}, {"Ei", 1152921504606846976.0}, {"m", 1e-3}, {"k", 1e3},
        {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15}, {"E", 1e18}, {"", 1.0},
    };
    char *rest;
    double number = strtod(text, &rest);
    if (rest == text || number < 0) {
        return NAN;
    }
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        if (strcmp(rest, suffixes[i].suffix) == 0) {
            return number * suffixes[i].factor;
        }
    }
    return NAN;
}

typedef struct {
    const char *resource; // "cpu", "memory"
    char *max_text;       // as configured, NULL when unset
    double max;
} cap;

// Applies `cap` to resources.requests or .limits (`kind`) of one container.
static agent_plugin_outcome apply(const cap *cap, cJSON *container, const char *kind,
                                  bool reject, agent_plugin_reason reason) {
    cJSON *values = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(container, "resources"), kind);
    cJSON *value = cJSON_GetObjectItemCaseSensitive(values, cap->resource);
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(container, "name"));
    name = name ? name : "?";
    if (value == NULL) {
        return AGENT_PLUGIN_OK;
    }
    const char *asked = cJSON_GetStringValue(value);
    char number[64];
    if (asked == NULL && cJSON_IsNumber(value)) {
        snprintf(number, sizeof number, "%g", cJSON_GetNumberValue(value));
        asked = number;
    }
    double amount = asked ? quantity(asked) : NAN;
    if (isnan(amount)) {
        return agent_plugin_fault(reason, "container %s: resources.%s.%s is not a quantity",
                                  name, kind, cap->resource);
    }
    if (amount <= cap->max) {
        return AGENT_PLUGIN_OK;
    }
    if (reject) {
        return agent_plugin_reject(reason, "container %s asks for %s %s of %s; at most %s is allowed",
                                   name, asked, kind, cap->resource, cap->max_text);
    }
    agent_plugin_log(AGENT_PLUGIN_LOG_LEVEL_INFO, "container %s: %s %s %s capped at %s", name,
                     cap->resource, kind, asked, cap->max_text);
    cJSON_ReplaceItemInObjectCaseSensitive(values, cap->resource,
                                           cJSON_CreateString(cap->max_text));
    return AGENT_PLUGIN_OK;
}

agent_plugin_outcome agent_plugin_customize(const agent_plugin_request *request, cJSON *job,
                                            agent_plugin_reason reason) {
    cap caps[] = {
        {"cpu", agent_plugin_config(request, "cpu.max"), 0},
        {"memory", agent_plugin_config(request, "memory.max"), 0},
    };
    char *mode = agent_plugin_config(request, "mode");
    bool reject = mode != NULL && strcmp(mode, "reject") == 0;
    agent_plugin_outcome outcome = AGENT_PLUGIN_OK;
    if (mode != NULL && !reject && strcmp(mode, "cap") != 0) {
        outcome = agent_plugin_fault(reason, "setting mode=%s: use cap or reject", mode);
    }
    for (size_t i = 0; i < 2 && outcome == AGENT_PLUGIN_OK; i++) {
        if (caps[i].max_text != NULL && isnan(caps[i].max = quantity(caps[i].max_text))) {
            outcome = agent_plugin_fault(reason, "setting %s.max=%s is not a quantity",
                                         caps[i].resource, caps[i].max_text);
        }
    }
    cJSON *spec = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(job, "spec"), "template"),
        "spec");
    const char *lists[] = {"initContainers", "containers"};
    for (size_t l = 0; l < 2 && outcome == AGENT_PLUGIN_OK; l++) {
        cJSON *container;
        cJSON_ArrayForEach(container, cJSON_GetObjectItemCaseSensitive(spec, lists[l])) {
            for (size_t i = 0; i < 2 && outcome == AGENT_PLUGIN_OK; i++) {
                if (caps[i].max_text == NULL) {
                    continue;
                }
                outcome = apply(&caps[i], container, "requests", reject, reason);
                if (outcome == AGENT_PLUGIN_OK) {
                    outcome = apply(&caps[i], container, "limits", reject, reason);
                }
            }
        }
    }
    free(caps[0].max_text);
    free(caps[1].max_text);
    free(mode);
    return outcome;
}
