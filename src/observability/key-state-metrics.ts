import { Gauge, type Registry } from 'prom-client';
import { INCIDENT_KINDS } from '../domain/incidents';
import type { KeyStore } from '../store/key-store';
import { listKeySets } from '../store/key-set-registry';
import { KEY_STATES, SCHEDULED_TRANSITION_KINDS } from '../domain/lifecycle';
import { readKeyStates, type KeySetReading, type KeyStateReading } from './key-state-reading';
import { keyturnMetrics, reportsEveryKeySet } from './metrics';

/**
 * Gauges of what PostgreSQL holds, read when Prometheus scrapes rather than kept in memory: a
 * restarted worker reports the right figures at once, and several workers report the same ones.
 * A scrape reads the database once (the gauges share one reading), in a few queries however many
 * key sets there are (key-state-reading.ts).
 *
 * Figures over all key sets (keys by state, key sets, overdue ones, the oldest active key) have a
 * fixed number of series. A key set has series of its own (`key_set` label) only while an alert may
 * be about it (see needsAttention), unless the registry reports every key set
 * (KEYTURN_METRICS_PER_KEY_SET): then every key set's are there, and its rotation and failure counters
 * are created at 0 here too, before its first event (those of a key set first seen by a scrape are
 * collected from the next scrape on).
 */
export async function registerKeyStateMetrics(
  registry: Registry,
  keyStore: KeyStore,
  now: () => number = Date.now,
): Promise<void> {
  const everyKeySet = reportsEveryKeySet(registry);
  const counters = keyturnMetrics(registry);
  // Now as well as at each scrape: a scrape collects the counters before this reading.
  if (everyKeySet) {
    await listKeySets(keyStore.pool).then(
      (keySets) => keySets.forEach(({ id }) => counters.knowKeySet(id)),
      () => undefined, // a database down at start: the scrapes will say so
    );
  }

  let reading: Promise<KeyStateReading | 'unreachable'> | undefined;
  // The first gauge collected in a scrape starts the reading; the others await it; the next scrape reads again.
  // A database that cannot be read yields no key series and `keyturn_database_up 0`, not a failed scrape.
  const readOrUnreachable = () => {
    reading ??= readKeyStates(keyStore.pool, now(), everyKeySet)
      .then((result) => {
        result.reported.forEach(({ keySetId }) => counters.knowKeySet(keySetId));
        return result;
      })
      .catch(() => 'unreachable' as const)
      .finally(() => {
        setImmediate(() => (reading = undefined));
      });
    return reading;
  };
  const read = async (fill: (reading: KeyStateReading) => void) => {
    const result = await readOrUnreachable();
    if (result !== 'unreachable') fill(result);
  };

  gauge(
    registry,
    'keyturn_database_up',
    'Whether the last scrape could read the key sets from PostgreSQL (1) or not (0)',
    [],
    async (set) => {
      set({}, (await readOrUnreachable()) === 'unreachable' ? 0 : 1);
    },
  );

  // Over every key set: a fixed number of series.
  gauge(registry, 'keyturn_stored_keys', 'Keys in the database, by state, over every key set', ['state'], (set) =>
    read(({ keysByState }) => KEY_STATES.forEach((state) => set({ state }, keysByState.get(state) ?? 0))),
  );
  gauge(
    registry,
    'keyturn_key_sets',
    'Registered key sets, by phase: rotating, or decommissioned (winding down)',
    ['phase'],
    (set) =>
      read(({ keySets }) => {
        set({ phase: 'rotating' }, keySets.rotating);
        set({ phase: 'decommissioned' }, keySets.decommissioned);
      }),
  );
  gauge(
    registry,
    'keyturn_key_sets_overdue',
    'Rotating key sets whose next lifecycle step was due before this scrape, by step (a step is done within seconds of being due)',
    ['transition'],
    (set) =>
      read(({ overdue }) =>
        SCHEDULED_TRANSITION_KINDS.forEach((transition) => set({ transition }, overdue.get(transition) ?? 0)),
      ),
  );
  gauge(
    registry,
    'keyturn_oldest_active_key_age_seconds',
    'Seconds since the longest-serving active key of a rotating key set was promoted',
    [],
    (set) =>
      read(({ oldestActiveKeyAgeSeconds }) => {
        if (oldestActiveKeyAgeSeconds !== undefined) set({}, oldestActiveKeyAgeSeconds);
      }),
  );
  gauge(
    registry,
    'keyturn_key_sets_needing_attention',
    'Key sets an alert may be about (no active key, a step overdue, an active key past its rotation period, an open incident): those with key_set series',
    [],
    (set) => read(({ needingAttention }) => set({}, needingAttention)),
  );

  // Per key set: those needing attention, or every one (KEYTURN_METRICS_PER_KEY_SET).
  gauge(registry, 'keyturn_keys', 'Keys in the database, by key set and state', ['key_set', 'state'], (set) =>
    read(({ reported }) => {
      for (const { keySetId, keysByState } of reported)
        for (const state of KEY_STATES) set({ key_set: keySetId, state }, keysByState.get(state) ?? 0);
    }),
  );
  perKeySet(
    'keyturn_active_key_age_seconds',
    'Seconds since the active key was promoted',
    (k) => k.activeKeyAgeSeconds,
  );
  perKeySet(
    'keyturn_rotation_period_seconds',
    "How long a key signs under the key set's policy",
    (k) => k.rotationPeriodSeconds,
  );
  perKeySet(
    'keyturn_last_rotation_timestamp_seconds',
    'When the active key was promoted, Unix seconds',
    (k) => k.lastRotationSeconds,
  );
  gauge(
    registry,
    'keyturn_next_transition_timestamp_seconds',
    "When the key set's next lifecycle step is due, Unix seconds (in the past: overdue), by step",
    ['key_set', 'transition'],
    (set) =>
      read(({ reported }) => {
        for (const { keySetId, nextTransition } of reported) {
          if (nextTransition) set({ key_set: keySetId, transition: nextTransition.kind }, nextTransition.seconds);
        }
      }),
  );
  gauge(
    registry,
    'keyturn_open_incidents',
    'Open incidents, by key set and kind: a step that keeps failing, a promotion held at the propagation gate, an invariant the supervisor found broken, a workflow it had to start again',
    ['key_set', 'kind'],
    (set) =>
      read(({ reported }) => {
        for (const { keySetId, openIncidents } of reported)
          for (const kind of INCIDENT_KINDS) set({ key_set: keySetId, kind }, openIncidents.get(kind) ?? 0);
      }),
  );

  function perKeySet(name: string, help: string, value: (keySet: KeySetReading) => number | undefined): void {
    gauge(registry, name, help, ['key_set'], (set) =>
      read(({ reported }) => {
        for (const keySet of reported) {
          const v = value(keySet);
          if (v !== undefined) set({ key_set: keySet.keySetId }, v);
        }
      }),
    );
  }
}

type Setter<L extends string> = (labels: Record<L, string>, value: number) => void;

function gauge<L extends string>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: L[],
  fill: (set: Setter<L>) => Promise<void>,
): void {
  new Gauge<L>({
    name,
    help,
    labelNames,
    registers: [registry],
    async collect() {
      // Series of key sets that are gone, or no longer need attention, must not linger from an earlier scrape.
      this.reset();
      await fill((labels, value) => this.set(labels as never, value));
    },
  });
}
