import { isCancellation, log, workflowInfo } from '@temporalio/workflow';
import type { Alert } from '../activities';
import { alertActivities } from './activity-proxies';
import type { KeySetMachine } from './keyset-machine';

/** Raises an alert about the key set; best effort: one that cannot be delivered is logged, never fatal. */
export async function raiseAlert(machine: KeySetMachine, alert: Omit<Alert, 'keySetId' | 'workflowId'>): Promise<void> {
  try {
    await alertActivities.raiseAlert({ ...alert, keySetId: machine.keySetId, workflowId: workflowInfo().workflowId });
  } catch (error) {
    if (isCancellation(error)) throw error;
    log.warn('alert could not be delivered', { keySetId: machine.keySetId, error: (error as Error).message });
  }
}
