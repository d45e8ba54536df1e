import type { Pool } from 'pg';
import type { KeySetStatus } from '../domain/key-set-state';
import { checkInvariants, type InvariantTolerances } from '../domain/invariants';
import { isLive, nextTransition, toKeyTimeline } from '../domain/lifecycle';
import { policyTimings } from '../domain/policy';
import { readKeySetRecords, type KeySetRecord } from '../store/fleet-reading';
import type { KeySetClient, VisibleKeySet } from './key-set-client';

/** Every key set in service, and which of them visibility and PostgreSQL leave in doubt. */
export interface FleetReading {
  records: KeySetRecord[];
  /** Why a key set must be looked at one by one, by key set id; a key set not here is settled. */
  doubts: Map<string, string>;
  /** Why visibility could not be listed (every key set is then in doubt), or null. */
  visibilityProblem: string | null;
}

/**
 * Every key set in service read at once: its record from PostgreSQL (one query) and its workflow as
 * Temporal's visibility store lists it (a few list calls), instead of one query per workflow. Where
 * the two agree, and PostgreSQL alone shows no broken invariant, the key set is settled: its
 * workflow holds the keys PostgreSQL holds, because it learns them only from keyturn's own writes
 * (a row changed by anything else is seen by its fingerprint, migration 008), and it is running with
 * the active kid PostgreSQL has. Every other key set carries a doubt and is looked at one by one,
 * through its workflow: that is also what happens to all of them when visibility cannot
 * be listed, so a lagging or missing visibility store costs time, never a wrong answer.
 */
export async function readFleet(
  keySets: KeySetClient,
  pool: Pick<Pool, 'query'>,
  at: number,
  tolerances: InvariantTolerances = {},
): Promise<FleetReading> {
  // Both at once. A workflow that changes its keys meanwhile either shows as a disagreement (looked at
  // one by one) or agrees with the rows as they were read, which is then a true answer for that moment.
  let visibilityProblem: string | null = null;
  const [visible, records] = await Promise.all([
    keySets.listRunningKeySets().catch((error: unknown) => {
      visibilityProblem = error instanceof Error ? error.message : String(error);
      return null;
    }),
    readKeySetRecords(pool),
  ]);
  const doubts = new Map<string, string>();
  for (const record of records) {
    const doubt =
      visible === null
        ? `visibility could not be listed (${visibilityProblem})`
        : doubtAbout(record, visible.get(record.id), at, tolerances);
    if (doubt !== null) doubts.set(record.id, doubt);
  }
  return { records, doubts, visibilityProblem };
}

/** Why `record` and its visibility entry do not settle the key set, or null when they do. */
function doubtAbout(
  record: KeySetRecord,
  entry: VisibleKeySet | undefined,
  at: number,
  tolerances: InvariantTolerances,
): string | null {
  if (entry === undefined) return 'visibility lists no running workflow';
  if (!entry.tagged) return 'its workflow was started without the KeySetId search attribute, so it keeps no ActiveKid';
  const active = record.keys.filter((key) => key.state === 'active').map((key) => key.kid);
  if (active.length !== 1 || active[0] !== entry.activeKid) {
    return `visibility says active ${entry.activeKid ?? 'none'}, PostgreSQL ${active.join(', ') || 'none'}`;
  }
  if (record.rewritten.length > 0) return `key(s) ${record.rewritten.join(', ')} changed outside keyturn`;
  const violations = checkInvariants(statusFromRecord(record, at), record.keys, at, tolerances);
  if (violations.length > 0) return `PostgreSQL alone shows ${violations.map((v) => v.code).join(', ')}`;
  return null;
}

/**
 * The state a settled key set's workflow holds, as PostgreSQL records it: its keys and policy, the
 * pause and the rotation its audit trail shows, and the transition those make due next. What only
 * the workflow knows (a step in flight, the last error, when the propagation gate checks again) is
 * left out: a key set with an open incident is looked at one by one for it.
 */
export function statusFromRecord(record: KeySetRecord, now: number): KeySetStatus {
  const keys = record.keys.filter((key) => isLive(key.state)).map(toKeyTimeline);
  // As the workflow plans: a pause holds scheduled work, except a rotation someone asked for; nothing is
  // retired or destroyed meanwhile.
  const due =
    record.paused && record.rotation === null
      ? undefined
      : nextTransition(record.paused ? keys.filter((key) => key.state === 'active' || key.state === 'next') : keys, {
          timings: policyTimings(record.policy),
          algorithm: record.policy.algorithm,
          now,
          windingDown: false,
          rotation: record.rotation,
        });
  return {
    keySetId: record.id,
    policy: record.policy,
    paused: record.paused,
    decommissioned: null,
    keys,
    nextTransition: due ?? null,
    rotation: record.rotation,
    lastError: null,
    pendingCommands: 0,
    inFlight: null,
  };
}
