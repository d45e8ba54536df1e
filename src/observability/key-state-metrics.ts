import { Gauge, type Registry } from 'prom-client';
import { incidentKind, INCIDENT_KINDS, type IncidentKind } from '../domain/incidents';
import { nextTransition, type KeyState } from '../domain/lifecycle';
import { policyTimings } from '../domain/policy';
import { toTimeline, type KeyStore } from '../store/key-store';
import { OpenIncidentStore } from '../store/open-incidents';
import { initialiseKeySetCounters, keyturnMetrics } from './metrics';

const KEY_STATES: readonly KeyState[] = ['next', 'active', 'grace', 'retired', 'destroyed', 'revoked'];
const LIVE_STATES: readonly KeyState[] = ['next', 'active', 'grace', 'retired'];

/** One scrape's reading of the database; the gauges below share it. */
interface KeySetReading {
  keySetId: string;
  keysByState: Map<KeyState, number>;
  rotationPeriodSeconds: number;
  activeKeyAgeSeconds?: number;
  lastRotationSeconds?: number;
  nextTransition?: { kind: string; seconds: number };
  openIncidents: Map<IncidentKind, number>;
}

/**
 * Gauges of what PostgreSQL holds, read when Prometheus scrapes rather than kept in memory: a
 * restarted worker reports the right figures at once, and several workers report the same ones.
 * A scrape reads the database once (the gauges share one reading), so it costs a query per key set.
 * A decommissioned key set counts its keys but has no rotation to watch. Each key set's rotation and
 * failure counters are created at 0 here too, before its first event.
 */
export async function registerKeyStateMetrics(registry: Registry, keyStore: KeyStore, now: () => number = Date.now): Promise<void> {
  const counters = keyturnMetrics(registry);
  // Now as well as at each scrape: a scrape collects the counters alongside this reading, not after it.
  await keyStore.listKeySets().then(
    (keySets) => keySets.forEach(({ id }) => initialiseKeySetCounters(counters, id)),
    () => undefined, // a database down at start: the scrapes will say so
  );
  let reading: Promise<KeySetReading[] | 'unreachable'> | undefined;
  // The first gauge collected in a scrape starts the reading; the others await it; the next scrape reads again.
  // A database that cannot be read yields no key series and `keyturn_database_up 0`, not a failed scrape.
  const readOrUnreachable = () => {
    reading ??= readKeySets(keyStore, now())
      .then((keySets) => {
        for (const { keySetId } of keySets) initialiseKeySetCounters(counters, keySetId);
        return keySets;
      })
      .catch(() => 'unreachable' as const)
      .finally(() => {
        setImmediate(() => (reading = undefined));
      });
    return reading;
  };
  const read = async () => {
    const result = await readOrUnreachable();
    return result === 'unreachable' ? [] : result;
  };

  gauge(registry, 'keyturn_database_up', 'Whether the last scrape could read the key sets from PostgreSQL (1) or not (0)', [], async (set) => {
    set({}, (await readOrUnreachable()) === 'unreachable' ? 0 : 1);
  });

  gauge(registry, 'keyturn_keys', 'Keys in the database, by key set and state', ['key_set', 'state'], async (set) => {
    for (const keySet of await read()) {
      for (const state of KEY_STATES) set({ key_set: keySet.keySetId, state }, keySet.keysByState.get(state) ?? 0);
    }
  });
  perKeySet('keyturn_active_key_age_seconds', 'Seconds since the active key was promoted', (k) => k.activeKeyAgeSeconds);
  perKeySet('keyturn_rotation_period_seconds', "How long a key signs under the key set's policy", (k) => k.rotationPeriodSeconds);
  perKeySet('keyturn_last_rotation_timestamp_seconds', 'When the active key was promoted, Unix seconds', (k) => k.lastRotationSeconds);
  gauge(
    registry,
    'keyturn_next_transition_timestamp_seconds',
    "When the key set's next lifecycle step is due, Unix seconds (in the past: overdue), by step",
    ['key_set', 'transition'],
    async (set) => {
      for (const { keySetId, nextTransition } of await read()) {
        if (nextTransition) set({ key_set: keySetId, transition: nextTransition.kind }, nextTransition.seconds);
      }
    },
  );

  gauge(
    registry,
    'keyturn_open_incidents',
    "Open incidents, by key set and kind: a step that keeps failing, a promotion held at the propagation gate, an invariant the supervisor found broken, a workflow it had to start again",
    ['key_set', 'kind'],
    async (set) => {
      for (const { keySetId, openIncidents } of await read()) {
        for (const kind of INCIDENT_KINDS) set({ key_set: keySetId, kind }, openIncidents.get(kind) ?? 0);
      }
    },
  );

  function perKeySet(name: string, help: string, value: (keySet: KeySetReading) => number | undefined): void {
    gauge(registry, name, help, ['key_set'], async (set) => {
      for (const keySet of await read()) {
        const v = value(keySet);
        if (v !== undefined) set({ key_set: keySet.keySetId }, v);
      }
    });
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
      // Series of key sets that are gone must not linger from an earlier scrape.
      this.reset();
      await fill((labels, value) => this.set(labels as never, value));
    },
  });
}

async function readKeySets(keyStore: KeyStore, now: number): Promise<KeySetReading[]> {
  const readings: KeySetReading[] = [];
  const incidents = await new OpenIncidentStore(keyStore.pool).list();
  for (const keySet of await keyStore.listKeySets()) {
    const keys = await keyStore.listKeys(keySet.id);
    const timings = policyTimings(keySet.policy);
    const keysByState = new Map<KeyState, number>();
    for (const key of keys) keysByState.set(key.state, (keysByState.get(key.state) ?? 0) + 1);
    const active = keys.find((k) => k.state === 'active');
    const activatedAt = active?.activatedAt ?? undefined;
    const due = keySet.decommissioned
      ? undefined
      : nextTransition(keys.filter((k) => LIVE_STATES.includes(k.state)).map(toTimeline), { timings, algorithm: keySet.policy.algorithm, now });
    readings.push({
      keySetId: keySet.id,
      keysByState,
      rotationPeriodSeconds: timings.rotationPeriodMs / 1000,
      activeKeyAgeSeconds: activatedAt === undefined ? undefined : (now - activatedAt) / 1000,
      lastRotationSeconds: activatedAt === undefined ? undefined : activatedAt / 1000,
      nextTransition: due === undefined ? undefined : { kind: due.kind, seconds: due.at / 1000 },
      openIncidents: countByKind(incidents.filter((i) => i.keySetId === keySet.id).map((i) => i.incident)),
    });
  }
  return readings;
}

function countByKind(incidents: string[]): Map<IncidentKind, number> {
  const counts = new Map<IncidentKind, number>();
  for (const kind of incidents.map(incidentKind)) if (kind !== undefined) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return counts;
}
