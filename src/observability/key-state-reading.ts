import type { Pool } from 'pg';
import { incidentKind, type IncidentKind } from '../domain/incidents';
import {
  nextTransition,
  type KeyState,
  type KeyTimeline,
  type LiveKeyState,
  type ScheduledTransition,
} from '../domain/lifecycle';
import type { SigningAlgorithm } from '../domain/algorithms';
import { LIVE_STATES_SQL } from '../store/stored-keys';
import { policyTimings, type KeySetPolicy, type PolicyTimings } from '../domain/policy';

export type TransitionKind = ScheduledTransition['kind'];

/** One key set's figures, for its per-key-set series. */
export interface KeySetReading {
  keySetId: string;
  keysByState: Map<KeyState, number>;
  rotationPeriodSeconds: number;
  activeKeyAgeSeconds?: number;
  lastRotationSeconds?: number;
  nextTransition?: { kind: TransitionKind; seconds: number };
  openIncidents: Map<IncidentKind, number>;
}

/** One scrape's reading of the database: figures over every key set, and the key sets reported one by one. */
export interface KeyStateReading {
  keysByState: Map<KeyState, number>;
  keySets: { rotating: number; decommissioned: number };
  /** Rotating key sets whose next lifecycle step was due before now, by step. */
  overdue: Map<TransitionKind, number>;
  /** The oldest active key of a rotating key set; undefined when none has one. */
  oldestActiveKeyAgeSeconds?: number;
  /** Key sets an alert may be about (see needsAttention). */
  needingAttention: number;
  /** Those key sets, or every key set when asked for. */
  reported: KeySetReading[];
}

interface KeySetRow {
  id: string;
  /** As text: most key sets share a policy, whose timings are then worked out once (see timingsOf). */
  policy: string;
  decommissioned: boolean;
}

// Epoch milliseconds computed by PostgreSQL: numbers for the driver, no Date per column and row.
const EPOCH_MS = (column: string) => `(extract(epoch FROM ${column}) * 1000)::float8 AS ${column}`;

const TIMES = ['created_at', 'promotable_at', 'activated_at', 'grace_ends_at', 'retired_at'] as const;

/** The live keys of every key set, only the columns nextTransition reads. */
const LIVE_KEYS = `SELECT key_set_id, kid, alg, state, ${TIMES.map(EPOCH_MS).join(', ')}
  FROM signing_keys WHERE state IN ${LIVE_STATES_SQL}`;

type LiveKeyRow = { key_set_id: string; kid: string; alg: KeyTimeline['alg']; state: LiveKeyState } & Record<
  (typeof TIMES)[number],
  number | null
>;

/**
 * Reads what the key gauges report, in five queries whatever the number of key sets: keys by state
 * (counted by PostgreSQL), the key sets and their live keys (whose next transitions the lifecycle
 * rules decide, as the workflows do), the open incidents, and the state counts of the key sets reported
 * one by one. `everyKeySet` reports them all; otherwise only those needing attention.
 */
export async function readKeyStates(pool: Pool, now: number, everyKeySet: boolean): Promise<KeyStateReading> {
  const [byState, keySets, liveKeys, incidents] = await Promise.all([
    pool.query<{ state: KeyState; keys: number }>(
      'SELECT state, count(*)::int AS keys FROM signing_keys GROUP BY state',
    ),
    pool.query<KeySetRow>(
      'SELECT id, policy::text AS policy, decommissioned_at IS NOT NULL AS decommissioned FROM key_sets ORDER BY id',
    ),
    pool.query<LiveKeyRow>(LIVE_KEYS),
    pool.query<{ key_set_id: string; incident: string }>(
      `SELECT key_set_id, incident FROM key_set_incidents
       UNION SELECT key_set_id, incident FROM alert_incidents WHERE resolved_at IS NULL`,
    ),
  ]);

  const keysOf = new Map<string, KeyTimeline[]>();
  for (const row of liveKeys.rows) {
    let keys = keysOf.get(row.key_set_id);
    if (keys === undefined) keysOf.set(row.key_set_id, (keys = []));
    keys.push(toTimeline(row));
  }
  const incidentsOf = new Map<string, Map<IncidentKind, number>>();
  for (const { key_set_id: keySetId, incident } of incidents.rows) {
    const kind = incidentKind(incident);
    if (kind === undefined) continue;
    let counts = incidentsOf.get(keySetId);
    if (counts === undefined) incidentsOf.set(keySetId, (counts = new Map()));
    counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }

  const reading: KeyStateReading = {
    keysByState: new Map(byState.rows.map((r) => [r.state, r.keys])),
    keySets: { rotating: 0, decommissioned: 0 },
    overdue: new Map(),
    needingAttention: 0,
    reported: [],
  };
  let oldestActivation: number | undefined;
  for (const keySet of keySets.rows) {
    const keys = keysOf.get(keySet.id) ?? [];
    const { timings, algorithm } = timingsOf(keySet.policy);
    const activatedAt = keys.find((k) => k.state === 'active')?.activatedAt;
    // A decommissioned key set counts its keys but has no rotation to watch.
    const due = keySet.decommissioned ? undefined : nextTransition(keys, { timings, algorithm, now });
    const openIncidents = incidentsOf.get(keySet.id) ?? new Map<IncidentKind, number>();
    if (keySet.decommissioned) {
      reading.keySets.decommissioned += 1;
    } else {
      reading.keySets.rotating += 1;
      if (activatedAt !== undefined && (oldestActivation === undefined || activatedAt < oldestActivation))
        oldestActivation = activatedAt;
      if (due !== undefined && due.at < now) reading.overdue.set(due.kind, (reading.overdue.get(due.kind) ?? 0) + 1);
    }
    const attention = needsAttention({
      rotating: !keySet.decommissioned,
      activatedAt,
      due,
      openIncidents,
      rotationPeriodMs: timings.rotationPeriodMs,
      now,
    });
    if (attention) reading.needingAttention += 1;
    if (!attention && !everyKeySet) continue;
    reading.reported.push({
      keySetId: keySet.id,
      keysByState: new Map(),
      rotationPeriodSeconds: timings.rotationPeriodMs / 1000,
      activeKeyAgeSeconds: activatedAt === undefined ? undefined : (now - activatedAt) / 1000,
      lastRotationSeconds: activatedAt === undefined ? undefined : activatedAt / 1000,
      nextTransition: due === undefined ? undefined : { kind: due.kind, seconds: due.at / 1000 },
      openIncidents,
    });
  }
  if (oldestActivation !== undefined) reading.oldestActiveKeyAgeSeconds = (now - oldestActivation) / 1000;
  await countKeysOfReported(pool, reading.reported);
  return reading;
}

/**
 * Whether an alert may be about this key set, so that its own series must be there for the rule to
 * name it: it has no active key while rotating (KeyturnNoActiveKey), its next step is overdue
 * (KeyturnNoNextKey), its active key has signed longer than the rotation period (KeyturnRotationOverdue,
 * an hour of tolerance later), or it has an open incident (the keyturn-incidents rules). Each condition
 * holds from before its alert's until after it, so the series are there for the whole of the rule's `for`.
 */
function needsAttention(k: {
  rotating: boolean;
  activatedAt?: number;
  due?: ScheduledTransition;
  openIncidents: Map<IncidentKind, number>;
  rotationPeriodMs: number;
  now: number;
}): boolean {
  if (k.openIncidents.size > 0) return true;
  if (!k.rotating) return false;
  if (k.activatedAt === undefined) return true;
  return (k.due !== undefined && k.due.at < k.now) || k.now - k.activatedAt > k.rotationPeriodMs;
}

/** Fills in the reported key sets' counts by state, destroyed and revoked keys included. */
async function countKeysOfReported(pool: Pool, reported: KeySetReading[]): Promise<void> {
  if (reported.length === 0) return;
  const byId = new Map(reported.map((k) => [k.keySetId, k]));
  const { rows } = await pool.query<{ key_set_id: string; state: KeyState; keys: number }>(
    'SELECT key_set_id, state, count(*)::int AS keys FROM signing_keys WHERE key_set_id = ANY($1) GROUP BY key_set_id, state',
    [[...byId.keys()]],
  );
  for (const row of rows) byId.get(row.key_set_id)?.keysByState.set(row.state, row.keys);
}

/**
 * A key as nextTransition reads it. Not the store's toStoredKey: that one reads every column as a Date
 * and computes each key's thumbprint, a cost per key and scrape that thousands of key sets multiply.
 */
function toTimeline(r: LiveKeyRow): KeyTimeline {
  return {
    kid: r.kid,
    alg: r.alg,
    state: r.state,
    createdAt: r.created_at!,
    ...(r.promotable_at !== null && { promotableAt: r.promotable_at }),
    ...(r.activated_at !== null && { activatedAt: r.activated_at }),
    ...(r.grace_ends_at !== null && { graceEndsAt: r.grace_ends_at }),
    ...(r.retired_at !== null && { retiredAt: r.retired_at }),
  };
}

const timingsByPolicy = new Map<string, { timings: PolicyTimings; algorithm: SigningAlgorithm }>();

/** A policy's timings and algorithm, worked out once per distinct policy text (the seed policy is usually most key sets'). */
function timingsOf(policyText: string): { timings: PolicyTimings; algorithm: SigningAlgorithm } {
  let known = timingsByPolicy.get(policyText);
  if (known === undefined) {
    const policy = JSON.parse(policyText) as KeySetPolicy;
    known = { timings: policyTimings(policy), algorithm: policy.algorithm };
    // Policies change rarely, but a deployment's history of them must not pile up here.
    if (timingsByPolicy.size >= 1000) timingsByPolicy.clear();
    timingsByPolicy.set(policyText, known);
  }
  return known;
}
