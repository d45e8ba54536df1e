import { proxyActivities, type ActivityOptions } from '@temporalio/workflow';
import type { KeyturnActivities } from '../activities';

/**
 * Key changes retry for about half a minute (1 s doubling to 16 s); after that the workflow records
 * the failure, alerts and backs off on its own clock. Errors marked non-retryable (bad configuration,
 * a key in an unexpected state) come back at once.
 */
const KEY_CHANGE_OPTIONS: ActivityOptions = {
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 6 },
};

const keyActivities = proxyActivities<KeyturnActivities>(KEY_CHANGE_OPTIONS);

type KeyChangeActivity = Exclude<
  keyof KeyturnActivities,
  'assessAlert' | 'recordSupervisionAlerts' | 'deliverAlert' | 'checkPublication' | 'superviseKeySets'
>;

/** Calls a key activity with a one-line summary, so the event history reads like the lifecycle. */
export function changeKeys<A extends KeyChangeActivity>(
  activity: A,
  summary: string,
  ...args: Parameters<KeyturnActivities[A]>
): Promise<Awaited<ReturnType<KeyturnActivities[A]>>> {
  // The proxy's per-activity type is a union TypeScript cannot narrow by `activity`; the signature above is the check.
  const proxy = keyActivities[activity] as unknown as { executeWithOptions(options: ActivityOptions, args: unknown[]): Promise<never> };
  return proxy.executeWithOptions({ ...KEY_CHANGE_OPTIONS, summary }, args);
}

const ALERT_DECISION_OPTIONS: ActivityOptions = {
  startToCloseTimeout: '10s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumAttempts: 3 },
};

/**
 * Deciding what an alert means for its incident is quick and sends nothing (delivery runs in a
 * workflow of its own): a few quick tries, then the workflow carries on without it.
 */
export const alertActivities = proxyActivities<Pick<KeyturnActivities, 'assessAlert' | 'recordSupervisionAlerts'>>(ALERT_DECISION_OPTIONS);

/**
 * The alert activity of histories recorded before ALERT_INCIDENTS, which delivered to every sink
 * while the workflow waited. Only a replay of such a history schedules it; no worker registers it
 * any more, so an attempt still pending at an upgrade fails and is logged like any undelivered alert.
 */
export const legacyAlertActivities = proxyActivities<{ raiseAlert(alert: LegacyAlert): Promise<void> }>(ALERT_DECISION_OPTIONS);

/** What `raiseAlert` took before alerts had incidents. */
export interface LegacyAlert {
  keySetId: string;
  status: 'firing' | 'resolved';
  step: string;
  summary: string;
  error?: string;
  failures?: number;
  workflowId?: string;
}

/** The propagation gate asks often and cheaply; it handles a failed answer itself by asking again. */
export const publicationActivities = proxyActivities<Pick<KeyturnActivities, 'checkPublication'>>({
  startToCloseTimeout: '15s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumAttempts: 3 },
});
