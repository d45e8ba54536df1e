import type { KeySetStatus } from './keyset-state';
import { nextTransition, type KeyState, type KeyTimeline, type LiveKeyState } from './lifecycle';
import { policyTimings } from './policy';
import { roughDuration, utc } from './describe';
import { formatDuration } from './duration';

/** A key as PostgreSQL holds it, times in epoch milliseconds (null where not reached). */
export interface StoredKeyRecord {
  kid: string;
  state: KeyState;
  hasPrivateKey: boolean;
  createdAt: number;
  activatedAt: number | null;
  demotedAt: number | null;
  retiredAt: number | null;
}

export type ViolationCode =
  | 'NO_ACTIVE_KEY'
  | 'SEVERAL_ACTIVE_KEYS'
  | 'SEVERAL_NEXT_KEYS'
  | 'STATE_MISMATCH'
  | 'TIME_MISMATCH'
  | 'UNKNOWN_TO_WORKFLOW'
  | 'MISSING_FROM_DATABASE'
  | 'PRIVATE_PART_KEPT'
  | 'OVERDUE'
  | 'ACTIVE_KEY_TOO_OLD';

/** One broken invariant of one key set, with what to look at. */
export interface Violation {
  code: ViolationCode;
  keySetId: string;
  kid?: string;
  message: string;
}

const LIVE_STATES: readonly KeyState[] = ['next', 'active', 'grace', 'retired'];

export interface InvariantTolerances {
  /** How late a scheduled transition may be before it is OVERDUE (default 5 minutes). */
  transitionMs?: number;
  /** How long past its rotation period an active key may sign before it is ACTIVE_KEY_TOO_OLD (default 1 hour). */
  keyAgeMs?: number;
}

/**
 * Checks a key set's workflow state against its keys in PostgreSQL: one active key, at most one
 * next key, the same keys in the same states with the same times, no private part left on a
 * destroyed or revoked key, no transition overdue (unless paused), and no active key signing
 * longer than its rotation period allows (paused or not: a pause does not make an old key safer).
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
  if (active.length === 0 && !status.decommissioned) add('NO_ACTIVE_KEY', `key set "${keySetId}" has no active key: nothing can sign`);
  if (active.length > 1) add('SEVERAL_ACTIVE_KEYS', `key set "${keySetId}" has ${active.length} active keys: ${active.map((k) => k.kid).join(', ')}`);
  const next = stored.filter((k) => k.state === 'next');
  if (next.length > 1) add('SEVERAL_NEXT_KEYS', `key set "${keySetId}" has ${next.length} next keys: ${next.map((k) => k.kid).join(', ')}`);

  const inWorkflow = new Map(status.keys.map((k) => [k.kid, k]));
  for (const key of stored) {
    if ((key.state === 'destroyed' || key.state === 'revoked') && key.hasPrivateKey) {
      add('PRIVATE_PART_KEPT', `key ${key.kid} is ${key.state} but its private part is still stored`, key.kid);
    }
    const tracked = inWorkflow.get(key.kid);
    inWorkflow.delete(key.kid);
    if (tracked === undefined) {
      if (LIVE_STATES.includes(key.state)) {
        add('UNKNOWN_TO_WORKFLOW', `key ${key.kid} is ${key.state} in PostgreSQL but unknown to the workflow`, key.kid);
      }
      continue;
    }
    if (tracked.state !== key.state) {
      add('STATE_MISMATCH', `key ${key.kid} is ${tracked.state} in the workflow but ${key.state} in PostgreSQL`, key.kid);
      continue;
    }
    const differing = (['createdAt', 'activatedAt', 'demotedAt', 'retiredAt'] as const).filter(
      (field) => (tracked[field] ?? null) !== key[field],
    );
    if (differing.length > 0) {
      add('TIME_MISMATCH', `key ${key.kid}: ${differing.join(', ')} differ between the workflow and PostgreSQL`, key.kid);
    }
  }
  for (const kid of inWorkflow.keys()) {
    add('MISSING_FROM_DATABASE', `key ${kid} is tracked by the workflow but not stored in PostgreSQL`, kid);
  }

  if (!status.paused) {
    const live: KeyTimeline[] = stored
      .filter((k) => LIVE_STATES.includes(k.state))
      .map((k) => ({
        kid: k.kid,
        alg: status.policy.algorithm,
        state: k.state as LiveKeyState,
        createdAt: k.createdAt,
        ...(k.activatedAt !== null && { activatedAt: k.activatedAt }),
        ...(k.demotedAt !== null && { demotedAt: k.demotedAt }),
        ...(k.retiredAt !== null && { retiredAt: k.retiredAt }),
      }));
    const due = live.length > 0 ? nextTransition(live, policyTimings(status.policy), now) : undefined;
    if (due !== undefined && due.at < now - transitionMs) {
      add('OVERDUE', `${due.kind}${'kid' in due ? ` of ${due.kid}` : ''} was due at ${utc(due.at)} and has not happened`, 'kid' in due ? due.kid : undefined);
    }
  }

  const { rotationPeriodMs } = policyTimings(status.policy);
  for (const key of active) {
    const age = now - (key.activatedAt ?? key.createdAt);
    if (age > rotationPeriodMs + keyAgeMs) {
      add(
        'ACTIVE_KEY_TOO_OLD',
        `key ${key.kid} has signed for ${roughDuration(age)}, longer than the rotation period ${status.policy.rotationPeriod} plus ${formatDuration(keyAgeMs)}` +
          (status.paused ? ` (the key set is paused: ${status.paused.reason})` : ''),
        key.kid,
      );
    }
  }
  return violations;
}
