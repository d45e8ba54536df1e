import {
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  type Client,
  type ScheduleDescription,
} from '@temporalio/client';
import { changedPolicyFields, type KeySetPolicy } from '../domain/policy';
import {
  KEYSET_WORKFLOW_TYPE,
  keySetWorkflowId,
  SUPERVISOR_SCHEDULE_ID,
  SUPERVISOR_WORKFLOW_TYPE,
} from '../workflows/messages';
import { mapBounded } from './map-bounded';
import { KeySetClient } from './key-set-client';
import type { KeySetDefinition, KeySetsFile } from './key-sets-file';

/** The supervisor's workflow id; each run the schedule starts gets a timestamp appended. */
export const SUPERVISOR_WORKFLOW_ID = 'keyturn-supervisor';

export interface ApplyOptions {
  /** The task queue of keyturn's worker: key set workflows and the supervisor run there. */
  taskQueue: string;
  /** Decommission running key sets (on this task queue) that the file no longer lists. */
  prune?: boolean;
  /** Work out the plan and change nothing. */
  dryRun?: boolean;
  /** Who applies, for the audit trail (default `apply`). */
  requestedBy?: string;
  /** How many key sets are applied at once (default 32): starts, Updates and queries in flight together. */
  concurrency?: number;
  /** Hears how far the key sets are applied: after each one, and once before the first. */
  onProgress?: (progress: ApplyProgress) => void;
}

/** How far an apply is: key sets done out of the file's. */
export interface ApplyProgress {
  done: number;
  total: number;
}

export const DEFAULT_APPLY_CONCURRENCY = 32;

export interface PolicyChange {
  id: string;
  fields: (keyof KeySetPolicy)[];
  /** The changed fields' values before and after. */
  from: Partial<KeySetPolicy>;
  to: Partial<KeySetPolicy>;
}

/** What `apply` did, or with `dryRun` would do. */
export interface ApplyReport {
  dryRun: boolean;
  /** Key sets whose workflow was not running and was started. */
  created: string[];
  changed: PolicyChange[];
  unchanged: string[];
  /** Key sets that were winding down and are back in service. */
  recommissioned: string[];
  /** Key sets decommissioned because the file no longer lists them. */
  pruned: string[];
  schedule: 'created' | 'updated' | 'unchanged';
  /** Things apply could not bring in line with the file, in words. */
  warnings: string[];
}

/**
 * Brings Temporal in line with a validated key sets file: starts each key set's workflow unless it
 * is running (`keyset/<id>`; of concurrent applies one starts it, the others find it running, so
 * each key set has one workflow), takes a key set winding down back into service, sends the file's
 * whole policy as an Update (the workflow records what differs, in the order Updates arrive, so of
 * two concurrent applies the later one wins in the workflow and in PostgreSQL alike; a new key set's
 * answer says whether it accepted its policy), with `prune` decommissions running key sets the file
 * does not list, and creates or updates the supervisor Schedule. Key sets are applied `concurrency`
 * at a time; the report lists them in the file's order, and the first failure (in that order) stops
 * the apply once the key sets under way are done. Safe to run again at any time; a second run
 * reports everything unchanged.
 */
export async function applyKeySets(client: Client, file: KeySetsFile, options: ApplyOptions): Promise<ApplyReport> {
  const dryRun = options.dryRun ?? false;
  const keySets = new KeySetClient(client, options.taskQueue);
  const report: ApplyReport = {
    dryRun,
    created: [],
    changed: [],
    unchanged: [],
    recommissioned: [],
    pruned: [],
    schedule: 'unchanged',
    warnings: [],
  };
  const requestedBy = options.requestedBy ?? 'apply';

  const total = file.keySets.length;
  let done = 0;
  options.onProgress?.({ done, total });
  const outcomes = await mapBounded(
    file.keySets,
    options.concurrency ?? DEFAULT_APPLY_CONCURRENCY,
    (definition) => applyKeySet(keySets, definition, dryRun, requestedBy),
    () => options.onProgress?.({ done: ++done, total }),
  );
  for (const [i, outcome] of outcomes.entries()) {
    const { id } = file.keySets[i];
    if (outcome.created) report.created.push(id);
    if (outcome.recommissioned) report.recommissioned.push(id);
    if (outcome.changed) report.changed.push(outcome.changed);
    else if (outcome.running) report.unchanged.push(id);
  }
  if (options.prune) {
    const listed = new Set(file.keySets.map((k) => k.id));
    for (const keySetId of await runningKeySets(client, options.taskQueue)) {
      if (listed.has(keySetId)) continue;
      // One already winding down needs nothing more.
      if ((await keySets.getState(keySetId)).decommissioned) continue;
      if (!dryRun) await keySets.decommission(keySetId, { reason: 'pruned by apply', requestedBy });
      report.pruned.push(keySetId);
    }
  }
  report.schedule = await applySchedule(client, file.supervisor.intervalMs, options.taskQueue, dryRun);
  return report;
}

/** What applying one key set did. */
interface KeySetOutcome {
  created?: boolean;
  /** Its workflow was running before (it is reported unchanged unless its policy changed). */
  running?: boolean;
  recommissioned?: boolean;
  changed?: PolicyChange;
}

async function applyKeySet(
  keySets: KeySetClient,
  definition: KeySetDefinition,
  dryRun: boolean,
  requestedBy: string,
): Promise<KeySetOutcome> {
  const { id, policy } = definition;
  if (dryRun) return planKeySet(keySets, definition);
  const result = await keySets.apply(id, policy, { requestedBy });
  if (result.created) return { created: true };
  return {
    running: true,
    ...(result.recommissioned && { recommissioned: true }),
    ...(result.changed.length > 0 && { changed: policyChange(id, result.changed, result.previous, result.policy) }),
  };
}

/** What applying one key set would do, from its workflow's state; nothing is sent that changes it. */
async function planKeySet(keySets: KeySetClient, { id, policy }: KeySetDefinition): Promise<KeySetOutcome> {
  if (!(await keySets.isRunning(id))) return { created: true };
  const state = await keySets.getState(id);
  const fields = changedPolicyFields(state.policy, policy);
  return {
    running: true,
    ...(state.decommissioned && { recommissioned: true }),
    ...(fields.length > 0 && { changed: policyChange(id, fields, state.policy, policy) }),
  };
}

function policyChange(
  id: string,
  fields: (keyof KeySetPolicy)[],
  before: KeySetPolicy,
  after: KeySetPolicy,
): PolicyChange {
  const pick = (source: KeySetPolicy) =>
    Object.fromEntries(fields.map((field) => [field, source[field]])) as Partial<KeySetPolicy>;
  return { id, fields, from: pick(before), to: pick(after) };
}

/** Ids of the key sets whose workflow runs on `taskQueue`, from Temporal's visibility store. */
async function runningKeySets(client: Client, taskQueue: string): Promise<string[]> {
  const query = `WorkflowType = '${KEYSET_WORKFLOW_TYPE}' AND ExecutionStatus = 'Running' AND TaskQueue = '${taskQueue}'`;
  const prefix = keySetWorkflowId('');
  const ids: string[] = [];
  for await (const execution of client.workflow.list({ query })) {
    if (execution.workflowId.startsWith(prefix)) ids.push(execution.workflowId.slice(prefix.length));
  }
  return [...new Set(ids)].sort();
}

/** What the supervisor Schedule should be. */
function supervisorSchedule(intervalMs: number, taskQueue: string) {
  return {
    spec: { intervals: [{ every: intervalMs }] },
    action: {
      type: 'startWorkflow' as const,
      workflowType: SUPERVISOR_WORKFLOW_TYPE,
      taskQueue,
      workflowId: SUPERVISOR_WORKFLOW_ID,
      args: [],
    },
    policies: { overlap: 'SKIP' as const },
  };
}

/** Creates the supervisor Schedule, or updates it where it differs from what the file asks. */
async function applySchedule(
  client: Client,
  intervalMs: number,
  taskQueue: string,
  dryRun: boolean,
): Promise<ApplyReport['schedule']> {
  const wanted = supervisorSchedule(intervalMs, taskQueue);
  const handle = client.schedule.getHandle(SUPERVISOR_SCHEDULE_ID);
  let current = await describeSchedule(client);
  if (current === undefined) {
    if (dryRun) return 'created';
    try {
      await client.schedule.create({ scheduleId: SUPERVISOR_SCHEDULE_ID, ...wanted });
      return 'created';
    } catch (error) {
      // Another apply created it meanwhile: bring it in line like any existing one.
      if (!(error instanceof ScheduleAlreadyRunning)) throw error;
      current = await handle.describe();
    }
  }
  if (scheduleMatches(current, intervalMs, taskQueue)) return 'unchanged';
  if (!dryRun) {
    await handle.update((previous) => ({
      ...previous,
      spec: wanted.spec,
      action: wanted.action,
      policies: { ...previous.policies, overlap: wanted.policies.overlap },
    }));
  }
  return 'updated';
}

async function describeSchedule(client: Client): Promise<ScheduleDescription | undefined> {
  try {
    return await client.schedule.getHandle(SUPERVISOR_SCHEDULE_ID).describe();
  } catch (error) {
    if (error instanceof ScheduleNotFoundError) return undefined;
    throw error;
  }
}

function scheduleMatches(current: ScheduleDescription, intervalMs: number, taskQueue: string): boolean {
  const intervals = current.spec.intervals ?? [];
  const { action } = current;
  return (
    intervals.length === 1 &&
    intervals[0].every === intervalMs &&
    // The description leaves a zero offset out, whatever its type says.
    !intervals[0].offset &&
    (current.spec.calendars ?? []).length === 0 &&
    current.policies.overlap === 'SKIP' &&
    action.type === 'startWorkflow' &&
    action.workflowType === SUPERVISOR_WORKFLOW_TYPE &&
    action.taskQueue === taskQueue &&
    action.workflowId === SUPERVISOR_WORKFLOW_ID
  );
}
