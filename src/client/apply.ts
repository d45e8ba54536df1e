import { ScheduleAlreadyRunning, ScheduleNotFoundError, type Client, type ScheduleDescription } from '@temporalio/client';
import { changedPolicyFields, OPTIONAL_POLICY_FIELDS, type KeySetPolicy, type PolicyPatch } from '../domain/policy';
import { KEYSET_WORKFLOW_TYPE, keySetWorkflowId, SUPERVISOR_SCHEDULE_ID, SUPERVISOR_WORKFLOW_TYPE } from '../workflows/messages';
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
  /** Who applies, for the audit trail (default `apply`). */
  requestedBy?: string;
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
 * is running (`keyset/<id>`, conflict policy use-existing, so concurrent applies end with one
 * workflow each), takes a key set winding down back into service, sends the file's whole policy as
 * an Update (the workflow records what differs, in the order Updates arrive, so of two concurrent
 * applies the later one wins in the workflow and in PostgreSQL alike), with `prune` decommissions
 * running key sets the file does not list, and creates or updates the supervisor Schedule. Safe to
 * run again at any time; a second run reports everything unchanged.
 */
export async function applyKeySets(client: Client, file: KeySetsFile, options: ApplyOptions): Promise<ApplyReport> {
  const dryRun = options.dryRun ?? false;
  const keySets = new KeySetClient(client, options.taskQueue);
  const report: ApplyReport = { dryRun, created: [], changed: [], unchanged: [], recommissioned: [], pruned: [], schedule: 'unchanged', warnings: [] };
  const requestedBy = options.requestedBy ?? 'apply';

  for (const definition of file.keySets) {
    await applyKeySet(keySets, definition, report, requestedBy);
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

async function applyKeySet(keySets: KeySetClient, definition: KeySetDefinition, report: ApplyReport, requestedBy: string): Promise<void> {
  const { id, policy } = definition;
  const running = await keySets.isRunning(id);
  const state = running ? await keySets.getState(id) : undefined;
  if (!running) {
    // Two applies at once may both get here: the start is idempotent, both report it created.
    if (!report.dryRun) await keySets.start(id, policy);
    report.created.push(id);
  } else if (state?.decommissioned) {
    if (!report.dryRun) await keySets.recommission(id, { reason: 'listed again by apply', requestedBy });
    report.recommissioned.push(id);
  }
  if (report.dryRun) {
    const fields = state === undefined ? [] : changedPolicyFields(state.policy, policy);
    if (fields.length > 0) report.changed.push(policyChange(id, fields, state!.policy, policy));
    else if (running) report.unchanged.push(id);
    return;
  }
  // Sent even to a workflow just started: another apply may have started it with another policy.
  const result = await keySets.updatePolicy(id, { patch: wholePolicy(policy), requestedBy, reason: 'apply' });
  if (result.changed.length > 0) report.changed.push(policyChange(id, result.changed, state?.policy ?? result.previous, result.policy));
  else if (running) report.unchanged.push(id);
}

/** The file's policy as a patch that makes the running one equal to it: optional fields it leaves out are removed. */
function wholePolicy(policy: KeySetPolicy): PolicyPatch {
  return { ...policy, ...Object.fromEntries(OPTIONAL_POLICY_FIELDS.filter((f) => policy[f] === undefined).map((f) => [f, null])) };
}

function policyChange(id: string, fields: (keyof KeySetPolicy)[], before: KeySetPolicy, after: KeySetPolicy): PolicyChange {
  const pick = (source: KeySetPolicy) => Object.fromEntries(fields.map((field) => [field, source[field]])) as Partial<KeySetPolicy>;
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
