import { ScheduleAlreadyRunning, ScheduleNotFoundError, type Client, type ScheduleDescription } from '@temporalio/client';
import { changedPolicyFields, type KeySetPolicy } from '../domain/policy';
import {
  decommissionUpdate,
  KEYSET_WORKFLOW_TYPE,
  keySetWorkflowId,
  SUPERVISOR_SCHEDULE_ID,
  SUPERVISOR_WORKFLOW_TYPE,
  updatePolicyUpdate,
} from '../workflows/messages';
import { KeySetClient } from './keyset-client';
import type { KeySetDefinition, KeySetsFile } from './keysets-file';

/** The supervisor's workflow id; each run the schedule starts gets a timestamp appended. */
export const SUPERVISOR_WORKFLOW_ID = 'keyturn-supervisor';

export interface ApplyOptions {
  /** The task queue of keyturn's worker: key set workflows and the supervisor run there. */
  taskQueue: string;
  /** Decommission running key sets (on this task queue) that the file no longer lists. */
  prune?: boolean;
  /** Work out the plan and change nothing. */
  dryRun?: boolean;
}

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
  /** Key sets decommissioned because the file no longer lists them. */
  pruned: string[];
  schedule: 'created' | 'updated' | 'unchanged';
  /** Things apply could not bring in line with the file, in words. */
  warnings: string[];
}

/**
 * Brings Temporal in line with a validated key sets file: starts each key set's workflow unless it
 * is running (`keyset/<id>`, conflict policy use-existing, so concurrent applies end with one
 * workflow each), sends a policy Update where the running policy differs, with `prune` decommissions
 * running key sets the file does not list, and creates or updates the supervisor Schedule. Safe to
 * run again at any time; a second run reports everything unchanged.
 */
export async function applyKeySets(client: Client, file: KeySetsFile, options: ApplyOptions): Promise<ApplyReport> {
  const dryRun = options.dryRun ?? false;
  const keySets = new KeySetClient(client, options.taskQueue);
  const report: ApplyReport = { dryRun, created: [], changed: [], unchanged: [], pruned: [], schedule: 'unchanged', warnings: [] };

  for (const definition of file.keySets) {
    await applyKeySet(client, keySets, definition, report);
  }
  if (options.prune) {
    const listed = new Set(file.keySets.map((k) => k.id));
    for (const keySetId of await runningKeySets(client, options.taskQueue)) {
      if (listed.has(keySetId)) continue;
      // One already winding down needs nothing more.
      if ((await keySets.getState(keySetId)).decommissioned) continue;
      if (!dryRun) {
        await client.workflow
          .getHandle(keySetWorkflowId(keySetId))
          .executeUpdate(decommissionUpdate, { args: [{ reason: 'pruned by apply', requestedBy: 'apply' }] });
      }
      report.pruned.push(keySetId);
    }
  }
  report.schedule = await applySchedule(client, file.supervisor.intervalMs, options.taskQueue, dryRun);
  return report;
}

async function applyKeySet(client: Client, keySets: KeySetClient, definition: KeySetDefinition, report: ApplyReport): Promise<void> {
  const { id, policy } = definition;
  if (!(await keySets.isRunning(id))) {
    // Two applies at once may both get here: the start is idempotent, both report it created.
    if (!report.dryRun) await keySets.start(id, policy);
    report.created.push(id);
    return;
  }
  const state = await keySets.getState(id);
  if (state.decommissioned) {
    report.warnings.push(
      `key set "${id}" is decommissioned and winding down (${state.decommissioned.reason}); apply starts it again once its keys are gone`,
    );
    report.unchanged.push(id);
    return;
  }
  const fields = changedPolicyFields(state.policy, policy);
  // The policy Update merges fields into the running policy: it cannot remove an optional one.
  const unremovable = fields.filter((field) => policy[field] === undefined);
  for (const field of unremovable) {
    report.warnings.push(`key set "${id}": ${field} is set in the running policy but not in the file; a policy update cannot remove it`);
  }
  const patch = fields.filter((field) => policy[field] !== undefined);
  if (patch.length === 0) {
    report.unchanged.push(id);
    return;
  }
  const pick = (source: KeySetPolicy) => Object.fromEntries(patch.map((field) => [field, source[field]])) as Partial<KeySetPolicy>;
  if (!report.dryRun) {
    await client.workflow.getHandle(keySetWorkflowId(id)).executeUpdate(updatePolicyUpdate, { args: [pick(policy)] });
  }
  report.changed.push({ id, fields: patch, from: pick(state.policy), to: pick(policy) });
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
export function supervisorSchedule(intervalMs: number, taskQueue: string) {
  return {
    spec: { intervals: [{ every: intervalMs }] },
    action: { type: 'startWorkflow' as const, workflowType: SUPERVISOR_WORKFLOW_TYPE, taskQueue, workflowId: SUPERVISOR_WORKFLOW_ID, args: [] },
    policies: { overlap: 'SKIP' as const },
  };
}

/** Creates the supervisor Schedule, or updates it where it differs from what the file asks. */
async function applySchedule(client: Client, intervalMs: number, taskQueue: string, dryRun: boolean): Promise<ApplyReport['schedule']> {
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
