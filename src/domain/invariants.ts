import type { SigningAlgorithm } from './algorithms';
import type { KeySetStatus } from './key-set-state';
import { isLive, nextTransition, TIMELINE_TIMES, toKeyTimeline, type KeyState, type KeyTimeline } from './lifecycle';
import { policyTimings } from './policy';
import { roughDuration, utc } from './describe';
import { formatDuration } from './duration';

/** A key as PostgreSQL holds it, times in epoch milliseconds (null where not reached). */
export interface StoredKeyRecord {
  kid: string;
  alg: SigningAlgorithm;
  state: KeyState;
  hasPrivateKey: boolean;
  /**
   * The RFC 7638 thumbprint of the stored public key, which the kid must equal (null: the stored key
   * lacks a member it is computed from). Computed where the key is read: hashing is no domain work.
   */
  thumbprint: string | null;
  createdAt: number;
  listedAt: number | null;
  promotableAt: number | null;
  activatedAt: number | null;
  tokenTtlMs: number | null;
  demotedAt: number | null;
  graceEndsAt: number | null;
  retiredAt: number | null;
}

/** The times and windows the workflow and PostgreSQL must agree on. */
const RECORDED_FIELDS = ['createdAt', ...TIMELINE_TIMES] as const;

/** Which invariant is broken: what `keyturn verify` and the supervisor report. */
export type ViolationCode =
  | 'NO_ACTIVE_KEY'
  | 'SEVERAL_ACTIVE_KEYS'
  | 'SEVERAL_NEXT_KEYS'
  | 'STATE_MISMATCH'
  | 'TIME_MISMATCH'
  | 'UNKNOWN_TO_WORKFLOW'
  | 'MISSING_FROM_DATABASE'
  | 'PRIVATE_PART_KEPT'
  | 'KID_MISMATCH'
  | 'OVERDUE'
  | 'ACTIVE_KEY_TOO_OLD';

/** One broken invariant of one key set, with what to look at. */
export interface Violation {
  code: ViolationCode;
  keySetId: string;
  kid?: string;
  message: string;
}

export interface InvariantTolerances {
  /** How late a scheduled transition may be before it is OVERDUE (default 5 minutes). */
  transitionMs?: number;
  /** How long past its rotation period an active key may sign before it is ACTIVE_KEY_TOO_OLD (default 1 hour). */
  keyAgeMs?: number;
}

/**
 * Checks a key set's workflow state against its keys in PostgreSQL: one active key, at most one
 * next key, every live kid the thumbprint of its stored public key (a key that does not match is
 * left out of the JWKS and never signs, so it must be found and revoked), the same keys in the same
 * states with the same times, no private part left on a destroyed or revoked key, no transition
 * overdue (unless paused), and no active key signing longer than its rotation period allows (paused
 * or not: a pause does not make an old key safer).
 */
export function checkInvariants(
  status: KeySetStatus,
  stored: readonly StoredKeyRecord[],
  now: number,
  { transitionMs = 5 * 60_000, keyAgeMs = 3_600_000 }: InvariantTolerances = {},
): Violation[] {
  const keySetId = status.keySetId;
  const violations: Violation[] = [];
  const add = (code: ViolationCode, message: string, kid?: string) => violations.push({ code, keySetId, kid, message });

  const active = stored.filter((k) => k.state === 'active');
  // A decommissioned set winds down with no active key on purpose.
  if (active.length === 0 && !status.decommissioned)
    add('NO_ACTIVE_KEY', `key set "${keySetId}" has no active key: nothing can sign`);
  if (active.length > 1)
    add(
      'SEVERAL_ACTIVE_KEYS',
      `key set "${keySetId}" has ${active.length} active keys: ${active.map((k) => k.kid).join(', ')}`,
    );
  const nextKeys = stored.filter((k) => k.state === 'next');
  if (nextKeys.length > 1)
    add(
      'SEVERAL_NEXT_KEYS',
      `key set "${keySetId}" has ${nextKeys.length} next keys: ${nextKeys.map((k) => k.kid).join(', ')}`,
    );

  const inWorkflow = new Map(status.keys.map((k) => [k.kid, k]));
  for (const key of stored) {
    // A revoked or destroyed key is neither published nor used: revoking is how a mismatch is resolved.
    if (isLive(key.state) && key.thumbprint !== key.kid) {
      add(
        'KID_MISMATCH',
        key.thumbprint === null
          ? `key ${key.kid} (${key.state}): its stored public key lacks members, so it has no RFC 7638 thumbprint to match its kid`
          : `key ${key.kid} (${key.state}): its stored public key's RFC 7638 thumbprint is ${key.thumbprint}, not its kid`,
        key.kid,
      );
    }
    if ((key.state === 'destroyed' || key.state === 'revoked') && key.hasPrivateKey) {
      add(
        'PRIVATE_PART_KEPT',
        `key ${key.kid} is ${key.state} but its private part is still held (sealed here, or in its KMS or token)`,
        key.kid,
      );
    }
    const tracked = inWorkflow.get(key.kid);
    inWorkflow.delete(key.kid);
    if (tracked === undefined) {
      if (isLive(key.state)) {
        add('UNKNOWN_TO_WORKFLOW', `key ${key.kid} is ${key.state} in PostgreSQL but unknown to the workflow`, key.kid);
      }
      continue;
    }
    if (tracked.state !== key.state) {
      add(
        'STATE_MISMATCH',
        `key ${key.kid} is ${tracked.state} in the workflow but ${key.state} in PostgreSQL`,
        key.kid,
      );
      continue;
    }
    const differing = RECORDED_FIELDS.filter((field) => (tracked[field] ?? null) !== key[field]);
    if (differing.length > 0) {
      add(
        'TIME_MISMATCH',
        `key ${key.kid}: ${differing.join(', ')} differ between the workflow and PostgreSQL`,
        key.kid,
      );
    }
  }
  for (const kid of inWorkflow.keys()) {
    add('MISSING_FROM_DATABASE', `key ${kid} is tracked by the workflow but not stored in PostgreSQL`, kid);
  }

  const live: KeyTimeline[] = stored.filter((k) => isLive(k.state)).map(toKeyTimeline);
  const timings = policyTimings(status.policy);
  if (!status.paused && live.length > 0) {
    const due = nextTransition(live, {
      timings,
      algorithm: status.policy.algorithm,
      now,
      windingDown: status.decommissioned !== null,
      rotation: status.rotation,
    });
    // A next key waiting to be listed is the propagation gate's to alert about: it cannot be hurried.
    if (due !== undefined && due.kind !== 'checkPublication' && due.at < now - transitionMs) {
      add(
        'OVERDUE',
        `${due.kind}${'kid' in due ? ` of ${due.kid}` : ''} was due at ${utc(due.at)} and has not happened`,
        'kid' in due ? due.kid : undefined,
      );
    }
  }

  const next = nextKeys[0];
  for (const key of active) {
    const activeEndsAt = (key.activatedAt ?? key.createdAt) + timings.rotationPeriodMs;
    // A next key that may not sign yet (published late, or in a new algorithm) keeps the active key on by design.
    const replaceableAt = Math.max(activeEndsAt, next?.promotableAt ?? activeEndsAt);
    if (now > replaceableAt + keyAgeMs) {
      add(
        'ACTIVE_KEY_TOO_OLD',
        `key ${key.kid} has signed for ${roughDuration(now - (key.activatedAt ?? key.createdAt))}, longer than the rotation period ${status.policy.rotationPeriod} plus ${formatDuration(keyAgeMs)}` +
          (status.paused ? ` (the key set is paused: ${status.paused.reason})` : ''),
        key.kid,
      );
    }
  }
  return violations;
}
