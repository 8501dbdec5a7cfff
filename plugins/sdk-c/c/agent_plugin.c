// The export the WIT world asks for, over the plugin's `agent_plugin_customize`: the Job's
// JSON text parsed with cJSON, the plugin's outcome turned into `result<string, error>`.
#include "agent_plugin.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *text(const plugin_string_t *s) {
    char *copy = malloc(s->len + 1);
    if (copy == NULL) {
        return NULL;
    }
    memcpy(copy, s->ptr, s->len);
    copy[s->len] = '\0';
    return copy;
}

char *agent_plugin_config(const agent_plugin_request *request, const char *key) {
    size_t key_len = strlen(key);
    for (size_t i = 0; i < request->config.len; i++) {
        const agent_plugin_types_pair_t *pair = &request->config.ptr[i];
        if (pair->f0.len == key_len && memcmp(pair->f0.ptr, key, key_len) == 0) {
            return text(&pair->f1);
        }
    }
    return NULL;
}

cJSON *agent_plugin_job_variables(const agent_plugin_request *request) {
    return cJSON_ParseWithLength((const char *)request->job_variables.ptr,
                                 request->job_variables.len);
}

void agent_plugin_log(agent_plugin_log_level_t level, const char *format, ...) {
    char line[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(line, sizeof line, format, args);
    va_end(args);
    plugin_string_t message;
    plugin_string_set(&message, line);
    agent_plugin_log_log(level, &message);
}

static agent_plugin_outcome say(agent_plugin_reason reason, agent_plugin_outcome outcome,
                                const char *format, va_list args) {
    vsnprintf(reason, AGENT_PLUGIN_REASON_SIZE, format, args);
    return outcome;
}

agent_plugin_outcome agent_plugin_reject(agent_plugin_reason reason, const char *format, ...) {
    va_list args;
    va_start(args, format);
    agent_plugin_outcome outcome = say(reason, AGENT_PLUGIN_REJECTED, format, args);
    va_end(args);
    return outcome;
}

agent_plugin_outcome agent_plugin_fault(agent_plugin_reason reason, const char *format, ...) {
    va_list args;
    va_start(args, format);
    agent_plugin_outcome outcome = say(reason, AGENT_PLUGIN_FAULT, format, args);
    va_end(args);
    return outcome;
}

static bool fail(exports_agent_plugin_customizer_error_t *err, uint8_t tag, const char *reason) {
    err->tag = tag;
    // Both cases hold a string at the same place.
    plugin_string_dup(&err->val.fault, reason);
    return false;
}

bool exports_agent_plugin_customizer_customize(exports_agent_plugin_customizer_request_t *request,
                                               plugin_string_t *job_text, plugin_string_t *ret,
                                               exports_agent_plugin_customizer_error_t *err) {
    agent_plugin_reason reason = "";
    cJSON *job = cJSON_ParseWithLength((const char *)job_text->ptr, job_text->len);
    plugin_string_free(job_text);
    bool ok;
    if (job == NULL) {
        ok = fail(err, AGENT_PLUGIN_TYPES_ERROR_FAULT, "the Job the host sent is not JSON");
    } else {
        switch (agent_plugin_customize(request, job, reason)) {
        case AGENT_PLUGIN_OK: {
            char *printed = cJSON_PrintUnformatted(job);
            ok = printed != NULL ||
                 fail(err, AGENT_PLUGIN_TYPES_ERROR_FAULT, "cannot print the Job (out of memory)");
            if (printed != NULL) {
                plugin_string_set(ret, printed); // freed by the generated post-return
            }
            break;
        }
        case AGENT_PLUGIN_REJECTED:
            ok = fail(err, AGENT_PLUGIN_TYPES_ERROR_REJECTED, reason);
            break;
        default:
            ok = fail(err, AGENT_PLUGIN_TYPES_ERROR_FAULT, reason[0] ? reason : "the plugin failed");
        }
        cJSON_Delete(job);
    }
    // Exports own their arguments.
    exports_agent_plugin_customizer_request_free(request);
    return ok;
}
