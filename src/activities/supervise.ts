import type { Client } from '@temporalio/client';
import { checkInvariants } from '../domain/invariants';
import type { KeyStore } from '../store/key-store';
import { getStateQuery, KEYSET_WORKFLOW_TYPE, keySetWorkflowId, type KeySetWorkflowInput, type SupervisionReport } from '../workflows/messages';
import { KeySetIdSearchAttribute } from '../workflows/search-attributes';
import { keySetSummary } from '../domain/describe';

export interface SupervisionDependencies {
  keyStore: KeyStore;
  /** A client on the worker's own connection and namespace. */
  temporalClient: Client;
  /** Where key set workflows run. */
  taskQueue: string;
}

/**
 * What the old design's five-minute beat did, run by the `keyturn-supervisor` Schedule: every key
 * set registered in PostgreSQL (and not decommissioned) has a running workflow, and its state
 * agrees with the database. A Schedule cannot start a workflow under a fixed id, so this does.
 */
export function createSupervisionActivities(deps: SupervisionDependencies) {
  return {
    async superviseKeySets(): Promise<SupervisionReport> {
      const report: SupervisionReport = { keySets: 0, restarted: [], violations: [] };
      for (const keySet of await deps.keyStore.listKeySets()) {
        if (keySet.decommissioned) continue;
        report.keySets++;
        const handle = deps.temporalClient.workflow.getHandle(keySetWorkflowId(keySet.id));
        const running = await handle.describe().then(
          (d) => d.status.name === 'RUNNING',
          () => false,
        );
        if (!running) {
          // A fresh run reads its keys from PostgreSQL and carries on where the last one stopped.
          const input: KeySetWorkflowInput = { keySetId: keySet.id, policy: keySet.policy };
          await deps.temporalClient.workflow.start(KEYSET_WORKFLOW_TYPE, {
            args: [input],
            taskQueue: deps.taskQueue,
            workflowId: keySetWorkflowId(keySet.id),
            workflowIdConflictPolicy: 'USE_EXISTING',
            typedSearchAttributes: [{ key: KeySetIdSearchAttribute, value: keySet.id }],
            staticSummary: keySetSummary(keySet.id, keySet.policy),
          });
          report.restarted.push(keySet.id);
          continue;
        }
        const status = await handle.query(getStateQuery);
        report.violations.push(...checkInvariants(status, await deps.keyStore.listKeys(keySet.id), Date.now()));
      }
      return report;
    },
  };
}
