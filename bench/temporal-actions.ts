import type { Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/**
 * The billable Temporal actions a history records, by kind, as Temporal Cloud counts them
 * (docs.temporal.io/cloud/actions): a workflow started (by a client, a Schedule or continue-as-new),
 * each activity attempt, each timer, each signal sent or received, each Update, each search attribute
 * or memo upsert, each local activity, each child workflow. Queries leave no event and are not counted.
 */
export function actionsOf(event: HistoryEvent): [kind: string, count: number] | undefined {
  if (event.workflowExecutionStartedEventAttributes) return ['workflow started', 1];
  if (event.activityTaskScheduledEventAttributes) return ['activity', 1];
  // History keeps an activity's last attempt only: the ones before it were actions too.
  const attempt = event.activityTaskStartedEventAttributes?.attempt ?? 1;
  if (event.activityTaskStartedEventAttributes && attempt > 1) return ['activity retry', attempt - 1];
  if (event.timerStartedEventAttributes) return ['timer', 1];
  if (event.upsertWorkflowSearchAttributesEventAttributes) return ['search attribute upsert', 1];
  if (event.workflowPropertiesModifiedEventAttributes) return ['memo upsert', 1];
  if (event.workflowExecutionSignaledEventAttributes) return ['signal received', 1];
  if (event.signalExternalWorkflowExecutionInitiatedEventAttributes) return ['signal sent', 1];
  if (event.workflowExecutionUpdateAcceptedEventAttributes) return ['update', 1];
  if (event.startChildWorkflowExecutionInitiatedEventAttributes) return ['child workflow', 1];
  if (event.markerRecordedEventAttributes?.markerName === 'core_local_activity') return ['local activity', 1];
  return undefined;
}

export interface ActionCount {
  total: number;
  byKind: Map<string, number>;
}

/** Adds up the actions of `events`; `within` keeps only the events it accepts by their time (ms since the epoch). */
export function countActions(events: readonly HistoryEvent[], within: (eventMs: number) => boolean = () => true): ActionCount {
  const byKind = new Map<string, number>();
  let total = 0;
  for (const event of events) {
    const seconds = Number(event.eventTime?.seconds ?? 0);
    const eventMs = seconds * 1000 + Math.floor((event.eventTime?.nanos ?? 0) / 1e6);
    if (!within(eventMs)) continue;
    const actions = actionsOf(event);
    if (!actions) continue;
    byKind.set(actions[0], (byKind.get(actions[0]) ?? 0) + actions[1]);
    total += actions[1];
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
  const each = (value: number) => (Number.isInteger(value / divisor) ? String(value / divisor) : (value / divisor).toFixed(1));
  const kinds = [...count.byKind].sort((a, b) => b[1] - a[1]).map(([kind, value]) => `${each(value)} ${kind}`);
  return `${each(count.total)} (${kinds.join(', ')})`;
}
