import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** Why a key was promoted: the `trigger` label of `keyturn_rotations_total`. */
export type RotationTrigger = 'scheduled' | 'manual' | 'revocation';

export const ROTATION_TRIGGERS: readonly RotationTrigger[] = ['scheduled', 'manual', 'revocation'];

/** The activities that change keys: a failed attempt of one is a failed lifecycle step (`step` label). */
export const KEY_CHANGE_STEPS: readonly string[] = [
  'registerKeySet',
  'generateNextKey',
  'confirmPublication',
  'promoteNextKey',
  'withdrawKey',
  'retireKey',
  'destroyKey',
  'windDown',
  'recommission',
  'revokeKey',
  'recordPolicy',
  'recordOperatorAction',
];

/** How a supervisor round ended: every key set checked, some not (`failed` in its report), or not at all. */
export type SupervisorRoundOutcome = 'complete' | 'incomplete' | 'failed';

const SUPERVISOR_ROUND_OUTCOMES: readonly SupervisorRoundOutcome[] = ['complete', 'incomplete', 'failed'];

/** How an alert delivery ended: `sent`, `failed` (after its retries), or `suppressed` (deduplicated). */
export type AlertOutcome = 'sent' | 'failed' | 'suppressed';

/**
 * The worker's own counters and histograms. Everything about the keys themselves (counts by state,
 * ages, next transitions) is read from PostgreSQL at scrape time instead: see key-state-metrics.ts.
 */
export interface KeyturnMetrics {
  rotations: Counter<'key_set' | 'trigger'>;
  rotationFailures: Counter<'key_set' | 'step'>;
  alerts: Counter<'channel' | 'outcome'>;
  activityDuration: Histogram<'activity' | 'outcome'>;
  supervisorRounds: Counter<'outcome'>;
  supervisorUncheckedKeySets: Gauge;
}

// Activities are database transactions and HTTP calls: milliseconds, up to the 30 s timeout.
const ACTIVITY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/** A registry for one process's `/metrics`, with Node's process metrics (`process_*`, `nodejs_*`) in it. */
export function createMetricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Registers keyturn's metrics in `registry`, or returns the ones already there (several workers, one registry). */
export function keyturnMetrics(registry: Registry): KeyturnMetrics {
  return {
    rotations: counter(registry, 'keyturn_rotations_total', 'Keys promoted to active, by key set and what triggered it', [
      'key_set',
      'trigger',
    ]),
    rotationFailures: counter(
      registry,
      'keyturn_rotation_failures_total',
      'Failed attempts of a lifecycle step (a key-changing activity), by key set and step',
      ['key_set', 'step'],
    ),
    alerts: counter(registry, 'keyturn_alerts_total', 'Alert deliveries, by channel and outcome', ['channel', 'outcome']),
    activityDuration:
      (registry.getSingleMetric('keyturn_activity_duration_seconds') as Histogram<'activity' | 'outcome'> | undefined) ??
      new Histogram({
        name: 'keyturn_activity_duration_seconds',
        help: 'Time an activity attempt took, by activity and outcome (success or failure)',
        labelNames: ['activity', 'outcome'],
        buckets: ACTIVITY_BUCKETS,
        registers: [registry],
      }),
    supervisorRounds: supervisorRounds(registry),
    supervisorUncheckedKeySets:
      (registry.getSingleMetric('keyturn_supervisor_unchecked_key_sets') as Gauge | undefined) ??
      new Gauge({
        name: 'keyturn_supervisor_unchecked_key_sets',
        help: "Key sets the last supervisor round on this worker could not check (their workflow did not answer, say)",
        registers: [registry],
      }),
  };
}

/** Supervisor rounds by outcome, every series present from the start so that increase() sees the first failure. */
function supervisorRounds(registry: Registry): Counter<'outcome'> {
  const existing = registry.getSingleMetric('keyturn_supervisor_rounds_total') as Counter<'outcome'> | undefined;
  if (existing) return existing;
  const rounds = counter(registry, 'keyturn_supervisor_rounds_total', 'Supervisor rounds run on this worker, by outcome', ['outcome']);
  for (const outcome of SUPERVISOR_ROUND_OUTCOMES) rounds.inc({ outcome }, 0);
  return rounds;
}

/**
 * Puts a 0 in every rotation and failure series of `keySetId`: Prometheus' increase() sees an
 * event only from a series that existed before it, so the first rotation after a restart would be lost.
 */
export function initialiseKeySetCounters(metrics: KeyturnMetrics, keySetId: string): void {
  for (const trigger of ROTATION_TRIGGERS) metrics.rotations.inc({ key_set: keySetId, trigger }, 0);
  for (const step of KEY_CHANGE_STEPS) metrics.rotationFailures.inc({ key_set: keySetId, step }, 0);
}

function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[]): Counter<L> {
  return (
    (registry.getSingleMetric(name) as Counter<L> | undefined) ?? new Counter({ name, help, labelNames, registers: [registry] })
  );
}
