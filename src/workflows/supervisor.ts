import { isCancellation, log, patched, proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { KeyturnActivities } from '../activities';
import { alertActivities, legacyAlertActivities } from './activity-proxies';
import { ALERT_INCIDENTS } from './alerts';
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
  if (!patched(ALERT_INCIDENTS)) {
    await raiseLegacyAlerts(report);
    return report;
  }
  // Alerts are best effort: when they cannot be raised, the round still reports what it found.
  try {
    await alertActivities.recordSupervisionAlerts({ report, at: Date.now() });
  } catch (error) {
    if (isCancellation(error)) throw error;
    log.warn('supervisor alerts could not be raised', { error: (error as Error).message });
  }
  return report;
}

/** The round's alerts as histories from before ALERT_INCIDENTS raised them, one awaited activity each. */
async function raiseLegacyAlerts(report: SupervisionReport): Promise<void> {
  const workflowId = workflowInfo().workflowId;
  const alerts = [
    ...report.restarted.map((keySetId) => ({
      keySetId,
      step: 'supervisor',
      summary: `key set "${keySetId}" had no running workflow; the supervisor started it again`,
    })),
    ...report.violations.map((v) => ({ keySetId: v.keySetId, step: 'supervisor', summary: `key set "${v.keySetId}": ${v.code}`, error: v.message })),
  ];
  await Promise.allSettled(alerts.map((alert) => legacyAlertActivities.raiseAlert({ ...alert, status: 'firing', workflowId })));
}
