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
  /** A key promoted to active: `keyturn_rotations_total{trigger}` (`{key_set, trigger}` with per-key-set metrics). */
  countRotation(keySetId: string, trigger: RotationTrigger): void;
  /** A failed attempt of a key-changing activity: `keyturn_rotation_failures_total{key_set, step}`. */
  countFailedAttempt(keySetId: string, step: string): void;
  /**
   * Called with each key set the worker learns of: with per-key-set metrics, its counters exist at 0
   * before its first event (Prometheus' increase() sees an event only in a series that existed before it).
   */
  knowKeySet(keySetId: string): void;
  alerts: Counter<'channel' | 'outcome'>;
  activityDuration: Histogram<'activity' | 'outcome'>;
  supervisorRounds: Counter<'outcome'>;
  supervisorUncheckedKeySets: Gauge;
}

// Activities are database transactions and HTTP calls: milliseconds to seconds. The top buckets reach
// the longest timeouts (a key change 10 s, alert delivery 1 min, a supervisor round 2 min), so a slow
// attempt is told from one that timed out.
const ACTIVITY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/**
 * How long a key set's failure series outlives its last failed attempt (without per-key-set
 * metrics): longer than the 15 minutes KeyturnRotationFailing looks back, so that it sees them all.
 */
export const FAILURE_SERIES_LIFETIME_MS = 3_600_000;

/** Registries whose key series name every key set (KEYTURN_METRICS_PER_KEY_SET), not only those an alert is about. */
const perKeySetRegistries = new WeakSet<Registry>();

/**
 * A registry for one process's `/metrics`, with Node's process metrics (`process_*`, `nodejs_*`) in it.
 * `perKeySet` (KEYTURN_METRICS_PER_KEY_SET) makes every keyturn metric registered in it report each
 * key set; by default a scrape has the same series however many healthy key sets there are.
 */
export function createMetricsRegistry(options: { perKeySet?: boolean } = {}): Registry {
  const registry = new Registry();
  if (options.perKeySet === true) perKeySetRegistries.add(registry);
  collectDefaultMetrics({ register: registry });
  return registry;
}

/** Whether `registry` reports every key set's series (see createMetricsRegistry). */
export function reportsEveryKeySet(registry: Registry): boolean {
  return perKeySetRegistries.has(registry);
}

const shared = new WeakMap<Registry, KeyturnMetrics>();

/** Registers keyturn's metrics in `registry`, or returns the ones already there (several workers, one registry). */
export function keyturnMetrics(registry: Registry, now: () => number = Date.now): KeyturnMetrics {
  const existing = shared.get(registry);
  if (existing) return existing;
  const everyKeySet = reportsEveryKeySet(registry);
  const rotations = rotationCounter(registry, everyKeySet);
  const failures = new FailureCounter(registry, everyKeySet, now);
  const known = new Set<string>();
  const metrics: KeyturnMetrics = {
    countRotation: (keySetId, trigger) => rotations.inc(everyKeySet ? { key_set: keySetId, trigger } : { trigger }),
    countFailedAttempt: (keySetId, step) => failures.inc(keySetId, step),
    knowKeySet(keySetId) {
      if (!everyKeySet || known.has(keySetId)) return;
      known.add(keySetId);
      for (const trigger of ROTATION_TRIGGERS) rotations.inc({ key_set: keySetId, trigger }, 0);
      for (const step of KEY_CHANGE_STEPS) failures.initialise(keySetId, step);
    },
    alerts: counter(registry, 'keyturn_alerts_total', 'Alert deliveries, by channel and outcome', [
      'channel',
      'outcome',
    ]),
    activityDuration:
      (registry.getSingleMetric('keyturn_activity_duration_seconds') as
        Histogram<'activity' | 'outcome'> | undefined) ??
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
        help: 'Key sets the last supervisor round on this worker could not check (their workflow did not answer, say)',
        registers: [registry],
      }),
  };
  shared.set(registry, metrics);
  return metrics;
}

/**
 * Rotations by trigger, each series at 0 from the start so that increase() sees the first one; by
 * key set too only with per-key-set metrics (no alert is about one key set's rotations).
 */
function rotationCounter(registry: Registry, everyKeySet: boolean): Counter<'key_set' | 'trigger'> {
  if (everyKeySet) {
    return counter(registry, 'keyturn_rotations_total', 'Keys promoted to active, by key set and what triggered it', [
      'key_set',
      'trigger',
    ]);
  }
  const rotations = counter<'key_set' | 'trigger'>(
    registry,
    'keyturn_rotations_total',
    'Keys promoted to active, by what triggered it',
    ['trigger'],
  );
  for (const trigger of ROTATION_TRIGGERS) rotations.inc({ trigger }, 0);
  return rotations;
}

/**
 * `keyturn_rotation_failures_total{key_set, step}`. KeyturnRotationFailing names the key set, so the
 * label stays; but only key sets that failed have series (with per-key-set metrics, every key set's
 * are there at 0), and a series leaves FAILURE_SERIES_LIFETIME_MS after its last failure, so that a
 * database outage that failed every key set once does not leave them all behind. A series that
 * appears at its first failure is counted by the rule's `unless ... offset` term, not by increase().
 */
class FailureCounter {
  readonly #counter: Counter<'key_set' | 'step'>;
  readonly #lastFailure = new Map<string, { labels: { key_set: string; step: string }; at: number }>();

  constructor(
    registry: Registry,
    private readonly everyKeySet: boolean,
    private readonly now: () => number,
  ) {
    const lastFailure = this.#lastFailure;
    this.#counter = new Counter({
      name: 'keyturn_rotation_failures_total',
      help: 'Failed attempts of a lifecycle step (a key-changing activity), by key set and step; only key sets with a failure in the last hour unless every key set is reported',
      labelNames: ['key_set', 'step'],
      registers: [registry],
      collect() {
        if (everyKeySet) return;
        const oldest = now() - FAILURE_SERIES_LIFETIME_MS;
        for (const [key, { labels, at }] of lastFailure) {
          if (at >= oldest) continue;
          this.remove(labels);
          lastFailure.delete(key);
        }
      },
    });
  }

  inc(keySetId: string, step: string): void {
    const labels = { key_set: keySetId, step };
    this.#counter.inc(labels);
    if (!this.everyKeySet) this.#lastFailure.set(`${keySetId}\n${step}`, { labels, at: this.now() });
  }

  initialise(keySetId: string, step: string): void {
    this.#counter.inc({ key_set: keySetId, step }, 0);
  }
}

/** Supervisor rounds by outcome, every series present from the start so that increase() sees the first failure. */
function supervisorRounds(registry: Registry): Counter<'outcome'> {
  const existing = registry.getSingleMetric('keyturn_supervisor_rounds_total') as Counter<'outcome'> | undefined;
  if (existing) return existing;
  const rounds = counter(
    registry,
    'keyturn_supervisor_rounds_total',
    'Supervisor rounds run on this worker, by outcome',
    ['outcome'],
  );
  for (const outcome of SUPERVISOR_ROUND_OUTCOMES) rounds.inc({ outcome }, 0);
  return rounds;
}

function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[]): Counter<L> {
  return (
    (registry.getSingleMetric(name) as Counter<L> | undefined) ??
    new Counter({ name, help, labelNames, registers: [registry] })
  );
}
