import type { Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/**
 * The billable Temporal actions an event of a history stands for, by kind, as Temporal Cloud counts
 * them (docs.temporal.io/evaluate/cloud/actions): a workflow started (by a client, a Schedule or
 * continue-as-new), each activity attempt, each timer, each search attribute upsert, each signal
 * received, each Update accepted, each child workflow (two), each signal this workflow sends (billed
 * in the history of the workflow it signals, counted here as this workflow's doing). Local activities
 * count once per workflow task: see countActions. Memo changes are no action; queries leave no event.
 */
function actionsOf(event: HistoryEvent): [kind: string, count: number] | undefined {
  if (event.workflowExecutionStartedEventAttributes) return ['workflow started', 1];
  if (event.activityTaskScheduledEventAttributes) return ['activity', 1];
  // History keeps an activity's last attempt only: the ones before it were actions too.
  const attempt = event.activityTaskStartedEventAttributes?.attempt ?? 1;
  if (event.activityTaskStartedEventAttributes && attempt > 1) return ['activity retry', attempt - 1];
  if (event.timerStartedEventAttributes) return ['timer', 1];
  if (event.upsertWorkflowSearchAttributesEventAttributes) return ['search attribute upsert', 1];
  if (event.workflowExecutionOptionsUpdatedEventAttributes) return ['workflow options update', 1];
  if (event.workflowExecutionSignaledEventAttributes) return ['signal received', 1];
  if (event.signalExternalWorkflowExecutionInitiatedEventAttributes) return ['signal sent', 1];
  if (event.workflowExecutionUpdateAcceptedEventAttributes) return ['update', 1];
  if (event.startChildWorkflowExecutionInitiatedEventAttributes) return ['child workflow', 2];
  return undefined;
}

export interface ActionCount {
  total: number;
  byKind: Map<string, number>;
}

/** Adds up the actions of `events`; `within` keeps only the events it accepts by their time (ms since the epoch). */
export function countActions(
  events: readonly HistoryEvent[],
  within: (eventMs: number) => boolean = () => true,
): ActionCount {
  const byKind = new Map<string, number>();
  let total = 0;
  const add = (kind: string, actions: number) => {
    byKind.set(kind, (byKind.get(kind) ?? 0) + actions);
    total += actions;
  };
  /** Workflow tasks that recorded local activities: one action each, however many they ran. */
  const localActivityTasks = new Set<string>();
  for (const event of events) {
    const seconds = Number(event.eventTime?.seconds ?? 0);
    const eventMs = seconds * 1000 + Math.floor((event.eventTime?.nanos ?? 0) / 1e6);
    if (!within(eventMs)) continue;
    const marker = event.markerRecordedEventAttributes;
    if (marker?.markerName === 'core_local_activity') {
      const task = String(marker.workflowTaskCompletedEventId);
      if (!localActivityTasks.has(task)) add('local activities of a workflow task', 1);
      localActivityTasks.add(task);
      continue;
    }
    const actions = actionsOf(event);
    if (actions) add(...actions);
  }
  return { total, byKind };
}

/** Every event of every run of `workflowId` (its continue-as-new chain), oldest run first, from the visibility store. */
export async function historyOfAllRuns(client: Client, workflowId: string): Promise<HistoryEvent[]> {
  const runs: { runId: string; startMs: number }[] = [];
  for await (const execution of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) {
    runs.push({ runId: execution.runId, startMs: execution.startTime.getTime() });
  }
  runs.sort((a, b) => a.startMs - b.startMs);
  const events: HistoryEvent[] = [];
  for (const { runId } of runs) {
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    events.push(...(history.events ?? []));
  }
  return events;
}

/** `12 (5 activity, 4 timer, 3 search attribute upsert)`. */
export function describeActions(count: ActionCount, divisor = 1): string {
  const each = (value: number) =>
    Number.isInteger(value / divisor) ? String(value / divisor) : (value / divisor).toFixed(1);
  const kinds = [...count.byKind].sort((a, b) => b[1] - a[1]).map(([kind, value]) => `${each(value)} ${kind}`);
  return `${each(count.total)} (${kinds.join(', ')})`;
}
