import { isCancellation, log, proxyActivities } from '@temporalio/workflow';
import type { KeyturnActivities } from '../activities';
import { alertActivities } from './activity-proxies';
import type { SupervisionReport } from './messages';

const { superviseKeySets } = proxyActivities<Pick<KeyturnActivities, 'superviseKeySets'>>({
  startToCloseTimeout: '2m',
  retry: { initialInterval: '5s', maximumAttempts: 3 },
});

/**
 * One round of supervision, started by the `keyturn-supervisor` Schedule: restart key set
 * workflows that stopped, check every key set against PostgreSQL, and alert on what it finds. What
 * it finds round after round is one incident each (kept in PostgreSQL), resolved by the first round
 * that no longer finds it. The round does not wait for any message to be delivered.
 */
export async function supervisorWorkflow(): Promise<SupervisionReport> {
  const report = await superviseKeySets({ at: Date.now() });
  // Alerts are best effort: when they cannot be raised, the round still reports what it found.
  try {
    await alertActivities.recordSupervisionAlerts({ report, at: Date.now() });
  } catch (error) {
    if (isCancellation(error)) throw error;
    log.warn('supervisor alerts could not be raised', { error: (error as Error).message });
  }
  return report;
}
