import { proxyActivities } from '@temporalio/workflow';
import type { KeyturnActivities } from '../activities';

/**
 * Key changes retry for about half a minute (1 s doubling to 16 s); after that the workflow records
 * the failure, alerts and backs off on its own clock. Errors marked non-retryable (bad configuration,
 * a key in an unexpected state) come back at once.
 */
export const keyActivities = proxyActivities<KeyturnActivities>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 6 },
});

/** Alerts are best effort: a few quick tries, then the workflow carries on. */
export const alertActivities = proxyActivities<Pick<KeyturnActivities, 'raiseAlert'>>({
  startToCloseTimeout: '10s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumAttempts: 3 },
});
