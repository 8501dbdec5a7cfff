// Write agent plugins in JavaScript: a plugin is one plain function.
//
//   import { definePlugin, Rejected } from '../../plugins/sdk-js/agent-plugin.js';
//   export const customizer = definePlugin((request, job) => {
//     job.metadata.labels = { ...job.metadata.labels, team: request.config.team ?? 'data' };
//     return job;
//   });
//
// `request` is the WIT request as plain objects (JSON text fields parsed, pairs as objects),
// `job` the batch/v1 Job. Return the Job; throw `new Rejected(reason)` to refuse the run
// (Prefect marks it FAILED with the reason); any other exception is a fault (CRASHED).
// Exporting the result as `customizer` is what componentize-js binds. Types: agent-plugin.d.ts.
import { log as hostLog } from 'agent:plugin/log@0.1.1';

/** Policy: this run must not run as asked. It is marked FAILED with this reason. */
export class Rejected extends Error {}

/** Writes `message` to the agent's log under the plugin's name. */
export function log(level, message) {
  hostLog(level, String(message));
}

/** The WIT request as plain data: what the plugin function receives. */
export function plainRequest(request) {
  const run = request.flowRun;
  return {
    flowRun: {
      ...run,
      labels: Object.fromEntries(run.labels),
      parameters: JSON.parse(run.parameters || '{}'),
    },
    agent: {
      ...request.agent,
      env: Object.fromEntries(request.agent.env),
      labels: Object.fromEntries(request.agent.labels),
    },
    jobVariables: JSON.parse(request.jobVariables || '{}'),
    baseJobTemplate: JSON.parse(request.baseJobTemplate || '{}'),
    jobNameSuffix: request.jobNameSuffix,
    config: Object.fromEntries(request.config),
  };
}

/** The `customizer` export for `customize(request, job) -> job`. */
export function definePlugin(customize) {
  return {
    customize(request, jobText) {
      let job;
      try {
        job = JSON.parse(jobText);
      } catch (error) {
        throw { tag: 'fault', val: `the Job the host sent is not JSON: ${error}` };
      }
      let result;
      try {
        result = customize(plainRequest(request), job);
      } catch (error) {
        if (error instanceof Rejected) {
          throw { tag: 'rejected', val: error.message };
        }
        throw { tag: 'fault', val: `${error?.name ?? 'Error'}: ${error?.message ?? error}` };
      }
      if (result === null || typeof result !== 'object' || Array.isArray(result)) {
        throw { tag: 'fault', val: `the plugin returned ${JSON.stringify(result)}, not the Job` };
      }
      return JSON.stringify(result);
    },
  };
}
