import { isCancellation, log, workflowInfo } from '@temporalio/workflow';
import type { Alert } from '../domain/incidents';
import { alertActivities } from './activity-proxies';
import type { KeySetMachine } from './key-set-machine';

/** An alert as the key set workflow raises it: the key set and its workflow are filled in. */
export type KeySetAlert = Omit<Alert, 'keySetId' | 'workflowId'>;

/**
 * Raises an alert about the key set. Its incident, kept in the workflow's state (so it outlives
 * worker restarts and continue-as-new, and needs no PostgreSQL, which may be what fails), decides
 * whether a message goes out; the activity logs it and starts a workflow of its own to deliver it,
 * which this one never waits for. Best effort: what goes wrong is logged, never fatal. Answers
 * from when a repeat of a still-firing alert would be sent as a reminder (null: no incident open).
 */
export async function raiseAlert(machine: KeySetMachine, alert: KeySetAlert): Promise<number | null> {
  const full: Alert = { ...alert, keySetId: machine.keySetId, workflowId: workflowInfo().workflowId };
  const open = machine.incident(alert.incident);
  if (alert.status === 'resolved' && open === null) return null;
  try {
    const { incident, remindAt } = await alertActivities.assessAlert({ alert: full, open, at: Date.now() });
    machine.setIncident(alert.incident, incident);
    return remindAt;
  } catch (error) {
    if (isCancellation(error)) throw error;
    log.warn('alert could not be raised', {
      keySetId: machine.keySetId,
      incident: alert.incident,
      error: (error as Error).message,
    });
    return null;
  }
}
