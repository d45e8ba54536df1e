import { proxyActivities, workflowInfo } from '@temporalio/workflow';
import type { KeyturnActivities } from '../activities';
import type { SupervisionReport } from './messages';

const { superviseKeySets } = proxyActivities<Pick<KeyturnActivities, 'superviseKeySets'>>({
  startToCloseTimeout: '2m',
  retry: { initialInterval: '5s', maximumAttempts: 3 },
});

const { raiseAlert } = proxyActivities<Pick<KeyturnActivities, 'raiseAlert'>>({
  startToCloseTimeout: '10s',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumAttempts: 3 },
});

/**
 * One round of supervision, started by the `keyturn-supervisor` Schedule: restart key set
 * workflows that stopped, check every key set against PostgreSQL, and alert on what it finds.
 */
export async function supervisorWorkflow(): Promise<SupervisionReport> {
  const report = await superviseKeySets();
  const workflowId = workflowInfo().workflowId;
  const alerts = [
    ...report.restarted.map((keySetId) => ({
      keySetId,
      step: 'supervisor',
      summary: `key set "${keySetId}" had no running workflow; the supervisor started it again`,
    })),
    ...report.violations.map((v) => ({
      keySetId: v.keySetId,
      step: 'supervisor',
      summary: `key set "${v.keySetId}": ${v.code}`,
      error: v.message,
    })),
  ];
  // Alerts are best effort: one that cannot be delivered does not fail the round.
  await Promise.allSettled(alerts.map((alert) => raiseAlert({ ...alert, status: 'firing', workflowId })));
  return report;
}
