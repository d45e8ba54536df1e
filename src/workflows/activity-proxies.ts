import { proxyActivities, uuid4, type ActivityOptions } from '@temporalio/workflow';
import type { KeyturnActivities } from '../activities';

/**
 * Key changes retry for about half a minute (1 s doubling to 16 s); after that the workflow records
 * the failure, alerts and backs off on its own clock. Errors marked non-retryable (bad configuration,
 * a key in an unexpected state) come back at once. A change is one short transaction: an attempt
 * still running after 10 s is taken for lost (its worker died, say) and tried again, which the
 * operation id makes safe.
 */
const KEY_CHANGE_OPTIONS: ActivityOptions = {
  startToCloseTimeout: '10s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 6 },
};

const keyActivities = proxyActivities<KeyturnActivities>(KEY_CHANGE_OPTIONS);

export type KeyChangeActivity = Exclude<
  keyof KeyturnActivities,
  'assessAlert' | 'recordSupervisionAlerts' | 'deliverAlert' | 'superviseKeySets' | 'deploymentCeilings'
>;

/** A key activity's input without its operation id, which `changeKeys` gives each call. */
export type KeyChangeRequest<A extends KeyChangeActivity> = Omit<Parameters<KeyturnActivities[A]>[0], 'operationId'>;

/**
 * Calls a key activity with a one-line summary, so the event history reads like the lifecycle, and an
 * operation id of its own, which makes its retries idempotent (and is the same on replay).
 */
export function changeKeys<A extends KeyChangeActivity>(
  activity: A,
  summary: string,
  input: KeyChangeRequest<A>,
): Promise<Awaited<ReturnType<KeyturnActivities[A]>>> {
  // The proxy's per-activity type is a union TypeScript cannot narrow by `activity`; the signature above is the check.
  const proxy = keyActivities[activity] as unknown as {
    executeWithOptions(options: ActivityOptions, args: unknown[]): Promise<never>;
  };
  return proxy.executeWithOptions({ ...KEY_CHANGE_OPTIONS, summary }, [{ ...input, operationId: uuid4() }]);
}

const ALERT_DECISION_OPTIONS: ActivityOptions = {
  startToCloseTimeout: '10s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumAttempts: 3 },
};

/**
 * Deciding what an alert means for its incident is quick and sends nothing (delivery runs in a
 * workflow of its own): a few quick tries, then the workflow carries on without it.
 */
export const alertActivities =
  proxyActivities<Pick<KeyturnActivities, 'assessAlert' | 'recordSupervisionAlerts'>>(ALERT_DECISION_OPTIONS);

/** The worker's configuration, read with the keys: it only answers, so a few quick tries do (then the load backs off). */
export const deploymentActivities = proxyActivities<Pick<KeyturnActivities, 'deploymentCeilings'>>({
  startToCloseTimeout: '10s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumAttempts: 3 },
});
