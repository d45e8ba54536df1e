import type { Client } from '@temporalio/client';
import { checkInvariants, type Violation } from '../domain/invariants';
import type { KeyturnMetrics } from '../observability/metrics';
import type { KeyStore } from '../store/key-store';
import type { SupervisionReport } from '../workflows/messages';
import { readFleet } from '../client/fleet-check';
import { mapBounded } from '../client/map-bounded';
import { KeySetClient } from '../client/key-set-client';
import { settledReading } from '../client/verify';

/** What looking at one key set in doubt came to. */
type LookOutcome =
  { restarted: string } | { violations: Violation[] } | { failed: SupervisionReport['failed'][number] };

export interface SupervisionDependencies {
  keyStore: KeyStore;
  /** A client on the worker's own connection and namespace. */
  temporalClient: Client;
  /** Where key set workflows run. */
  taskQueue: string;
  /** How long past its rotation period an active key may sign before it is a violation. */
  keyAgeToleranceMs: number;
  /** Where each round's outcome is counted, so that a supervisor that cannot do its job pages too. */
  metrics: Pick<KeyturnMetrics, 'supervisorRounds' | 'supervisorUncheckedKeySets'>;
}

/**
 * What the old design's five-minute beat did, run by the `keyturn-supervisor` Schedule: every key
 * set registered in PostgreSQL (and not decommissioned) has a running workflow, and its state
 * agrees with the database. A Schedule cannot start a workflow under a fixed id, so this does.
 */
export function createSupervisionActivities(deps: SupervisionDependencies) {
  return {
    /**
     * `at` is the supervisor workflow's clock, the one the key set workflows' timers run on (and the
     * one a time-skipping test moves). Every key set is read at once (readFleet); only those that
     * visibility and PostgreSQL leave in doubt are looked at one by one: restarted when their
     * workflow is gone, checked on a settled reading otherwise. A key set that cannot be checked is
     * reported in `failed` and the round goes on with the others.
     */
    async superviseKeySets(input: { at: number }): Promise<SupervisionReport> {
      const report: SupervisionReport = { keySets: 0, restarted: [], violations: [], failed: [] };
      const keySets = new KeySetClient(deps.temporalClient, deps.taskQueue);
      const tolerances = { keyAgeMs: deps.keyAgeToleranceMs };
      try {
        const fleet = await readFleet(keySets, deps.keyStore.pool, input.at, tolerances);
        report.keySets = fleet.records.length;
        const doubted = fleet.records.filter((record) => fleet.doubts.has(record.id));
        const outcomes = await mapBounded(doubted, 8, async (keySet): Promise<LookOutcome> => {
          try {
            if (!(await keySets.isRunning(keySet.id))) {
              // A fresh run reads its keys from PostgreSQL and carries on where the last one stopped.
              await keySets.start(keySet.id, keySet.policy);
              return { restarted: keySet.id };
            }
            const { status, stored } = await settledReading(keySets, deps.keyStore.pool, keySet.id);
            return { violations: checkInvariants(status, stored, input.at, tolerances) };
          } catch (error) {
            return { failed: { keySetId: keySet.id, error: error instanceof Error ? error.message : String(error) } };
          }
        });
        for (const outcome of outcomes) {
          if ('restarted' in outcome) report.restarted.push(outcome.restarted);
          if ('violations' in outcome) report.violations.push(...outcome.violations);
          if ('failed' in outcome) report.failed.push(outcome.failed);
        }
      } catch (error) {
        deps.metrics.supervisorRounds.inc({ outcome: 'failed' });
        throw error;
      }
      deps.metrics.supervisorRounds.inc({ outcome: report.failed.length === 0 ? 'complete' : 'incomplete' });
      deps.metrics.supervisorUncheckedKeySets.set(report.failed.length);
      return report;
    },
  };
}
