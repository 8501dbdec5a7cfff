// Types of agent-plugin.js. The WIT's own types (`types/`, made by `npm run types` from
// wit/plugin.wit with jco) describe what the host sends; these are the plain forms the
// plugin function receives.
/// <reference path="./types/plugin.d.ts" />
import type { FlowRun, AgentSettings } from 'agent:plugin/types@0.1.1';
import type { Level } from 'agent:plugin/log@0.1.1';

/** A batch/v1 Job, as JSON. */
export type Job = { [field: string]: any };

export interface Request {
  flowRun: Omit<FlowRun, 'labels' | 'parameters'> & {
    labels: Record<string, string>;
    parameters: Record<string, unknown>;
  };
  agent: Omit<AgentSettings, 'env' | 'labels'> & {
    env: Record<string, string>;
    labels: Record<string, string>;
  };
  /** The merged job variables: pool defaults < deployment < flow run. */
  jobVariables: Record<string, unknown>;
  baseJobTemplate: Record<string, unknown>;
  jobNameSuffix: string;
  /** This plugin's settings (`-c NAME.KEY=VALUE`). */
  config: Record<string, string>;
}

export class Rejected extends Error {}
export function log(level: Level, message: string): void;
export function definePlugin(
  customize: (request: Request, job: Job) => Job,
): { customize(request: import('agent:plugin/types@0.1.1').Request, job: string): string };
