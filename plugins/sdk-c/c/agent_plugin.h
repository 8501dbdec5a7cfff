// Write agent plugins in C: implement one function over the Job as cJSON.
//
//   #include "agent_plugin.h"
//
//   agent_plugin_outcome agent_plugin_customize(const agent_plugin_request *request,
//                                               cJSON *job, agent_plugin_reason reason) {
//       ... change `job` in place ...
//       return AGENT_PLUGIN_OK;         // or: agent_plugin_reject(reason, "why %s", ...)
//   }
//
// The Job is a batch/v1 Job; the request is the WIT request (plugin.h, made by
// `agent-plugin-c bindings`), with helpers below for its settings and JSON fields. A rejection
// marks the run FAILED with the reason; a fault marks it CRASHED. Build: see
// examples/c-resource-caps/build.sh.
#ifndef AGENT_PLUGIN_H
#define AGENT_PLUGIN_H

#include <stddef.h>

#include "cJSON.h"
#include "plugin.h"

typedef agent_plugin_types_request_t agent_plugin_request;

typedef enum {
    AGENT_PLUGIN_OK,
    // Policy: this run must not run as asked (FAILED, not retried).
    AGENT_PLUGIN_REJECTED,
    // The plugin could not do its job: bad settings, a bug (CRASHED).
    AGENT_PLUGIN_FAULT,
} agent_plugin_outcome;

#define AGENT_PLUGIN_REASON_SIZE 1024
// Where a plugin writes why it rejected the run or failed.
typedef char agent_plugin_reason[AGENT_PLUGIN_REASON_SIZE];

// What the plugin implements.
agent_plugin_outcome agent_plugin_customize(const agent_plugin_request *request, cJSON *job,
                                            agent_plugin_reason reason);

// The plugin's setting `key` (`-c NAME.KEY=VALUE`) as a new NUL-terminated string the caller
// frees, or NULL when unset.
char *agent_plugin_config(const agent_plugin_request *request, const char *key);

// The merged job variables, parsed; the caller frees them with cJSON_Delete.
cJSON *agent_plugin_job_variables(const agent_plugin_request *request);

// A line in the agent's log under the plugin's name; printf-style.
void agent_plugin_log(agent_plugin_log_level_t level, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

// Writes the reason (printf-style) and returns AGENT_PLUGIN_REJECTED, or _FAULT.
agent_plugin_outcome agent_plugin_reject(agent_plugin_reason reason, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
agent_plugin_outcome agent_plugin_fault(agent_plugin_reason reason, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

#endif
