// @ts-check
// Places GPU runs: a deployment or run with the job variable `gpu` gets the GPU node pool, the
// toleration of its taint, and the GPUs as a container limit. No `gpu` (or `false`): the Job
// is left alone.
//
//   gpu: true | 2 | "a100" | {type: "a100", count: 2}
//
// Settings (`-c gpu.KEY=VALUE`):
//   node-pool-label  the node label naming the pool (default `node-pool`)
//   pool             the pool of GPU nodes (default `gpu`); `pool.TYPE` for a type's own pool
//   taint            the taint key GPU nodes carry (default `nvidia.com/gpu`)
//   max              the most GPUs one run may ask for (default 8); more is rejected
import { definePlugin, log, Rejected } from '../../plugins/sdk-js/agent-plugin.js';

/** @typedef {import('../../plugins/sdk-js/agent-plugin.js').Job} Job */

export const customizer = definePlugin((request, job) => {
  const wanted = gpuRequest(request.jobVariables.gpu);
  if (!wanted) {
    return job;
  }
  const { config } = request;
  const max = Number(config.max ?? 8);
  if (wanted.count > max) {
    throw new Rejected(`the run asks for ${wanted.count} GPUs; at most ${max} are allowed`);
  }
  const pool = (wanted.type && config[`pool.${wanted.type}`]) ?? config.pool ?? 'gpu';
  const taint = config.taint ?? 'nvidia.com/gpu';
  const pod = (((job.spec ??= {}).template ??= {}).spec ??= {});
  pod.nodeSelector = { ...pod.nodeSelector, [config['node-pool-label'] ?? 'node-pool']: pool };
  const tolerations = (pod.tolerations ??= []);
  if (!tolerations.some((/** @type {{key?: string}} */ t) => t.key === taint)) {
    tolerations.push({ key: taint, operator: 'Exists', effect: 'NoSchedule' });
  }
  const container = (pod.containers ??= [{ name: 'prefect-job' }])[0];
  const limits = ((container.resources ??= {}).limits ??= {});
  limits[taint] = String(wanted.count);
  log('info', `${wanted.count} GPU(s) on node pool ${pool}`);
  return job;
});

/**
 * What the `gpu` job variable asks for, or null for none.
 * @param {unknown} value
 * @returns {{count: number, type?: string} | null}
 */
function gpuRequest(value) {
  if (value === undefined || value === null || value === false || value === 0) {
    return null;
  }
  if (value === true) {
    return { count: 1 };
  }
  if (typeof value === 'number' && Number.isInteger(value) && value > 0) {
    return { count: value };
  }
  if (typeof value === 'string' && value !== '') {
    return { count: 1, type: value };
  }
  if (typeof value === 'object' && !Array.isArray(value)) {
    const { type, count = 1 } = /** @type {{type?: unknown, count?: unknown}} */ (value);
    if (Number.isInteger(count) && Number(count) > 0 && (type === undefined || typeof type === 'string')) {
      return { count: Number(count), type: /** @type {string | undefined} */ (type) };
    }
  }
  throw new Rejected(
    `the job variable gpu is ${JSON.stringify(value)}: use true, a count, a GPU type, or {type, count}`,
  );
}
