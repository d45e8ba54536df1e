import type { Client } from '@temporalio/client';
import { checkInvariants } from '../domain/invariants';
import type { KeyStore } from '../store/key-store';
import type { SupervisionReport } from '../workflows/messages';
import { KeySetClient } from '../client/keyset-client';

export interface SupervisionDependencies {
  keyStore: KeyStore;
  /** A client on the worker's own connection and namespace. */
  temporalClient: Client;
  /** Where key set workflows run. */
  taskQueue: string;
  /** How long past its rotation period an active key may sign before it is a violation. */
  keyAgeToleranceMs: number;
}

/**
 * What the old design's five-minute beat did, run by the `keyturn-supervisor` Schedule: every key
 * set registered in PostgreSQL (and not decommissioned) has a running workflow, and its state
 * agrees with the database. A Schedule cannot start a workflow under a fixed id, so this does.
 */
export function createSupervisionActivities(deps: SupervisionDependencies) {
  return {
    /**
     * `at` is the supervisor workflow's clock, the one the key set workflows stamp their keys with
     * (and the one a time-skipping test moves); rounds scheduled before it was passed use the worker's.
     */
    async superviseKeySets(input?: { at: number }): Promise<SupervisionReport> {
      const now = input?.at ?? Date.now();
      const report: SupervisionReport = { keySets: 0, restarted: [], violations: [] };
      const keySets = new KeySetClient(deps.temporalClient, deps.taskQueue);
      for (const keySet of await deps.keyStore.listKeySets()) {
        if (keySet.decommissioned) continue;
        report.keySets++;
        if (!(await keySets.isRunning(keySet.id))) {
          // A fresh run reads its keys from PostgreSQL and carries on where the last one stopped.
          await keySets.start(keySet.id, keySet.policy);
          report.restarted.push(keySet.id);
          continue;
        }
        const status = await keySets.getState(keySet.id);
        const stored = await deps.keyStore.listKeys(keySet.id);
        report.violations.push(...checkInvariants(status, stored, now, { keyAgeMs: deps.keyAgeToleranceMs }));
      }
      return report;
    },
  };
}
