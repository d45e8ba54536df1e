import type { SigningAlgorithm } from './algorithms';
import type { PolicyTimings } from './policy';

/**
 * next ─promote→ active ─demote→ grace ─retire→ retired ─destroy→ destroyed, and revoked from any
 * state but destroyed. A next key that never signed can also be withdrawn (next → retired) when the
 * policy's algorithm changes. `destroyed` and `revoked` are final: the private part is gone.
 */
export const KEY_STATES = ['next', 'active', 'grace', 'retired', 'destroyed', 'revoked'] as const;

export type KeyState = (typeof KEY_STATES)[number];

/** The states with a transition still ahead: the keys a workflow tracks. */
export const LIVE_STATES = ['next', 'active', 'grace', 'retired'] as const satisfies readonly KeyState[];

export type LiveKeyState = (typeof LIVE_STATES)[number];

export function isLive(state: KeyState): state is LiveKeyState {
  return (LIVE_STATES as readonly KeyState[]).includes(state);
}

/** The states whose public keys are served in the JWKS. */
export const PUBLISHED_STATES: readonly KeyState[] = ['next', 'active', 'grace'];

/** The states a key can be revoked from (a destroyed key cannot sign anything any more). */
export const REVOCABLE_STATES: readonly KeyState[] = LIVE_STATES;

/**
 * Every way a key changes state, and the only ones: the store performs a transition by name and
 * refuses it from any state not listed. Winding a key set down demotes its next key as well.
 */
export const KEY_TRANSITIONS = {
  promote: { from: ['next'], to: 'active' },
  demote: { from: ['active', 'next'], to: 'grace' },
  withdraw: { from: ['next'], to: 'retired' },
  retire: { from: ['grace'], to: 'retired' },
  destroy: { from: ['retired'], to: 'destroyed' },
  revoke: { from: LIVE_STATES, to: 'revoked' },
} as const satisfies Record<string, { from: readonly KeyState[]; to: Exclude<KeyState, 'next'> }>;

export type KeyTransition = keyof typeof KEY_TRANSITIONS;

/** The states of a key out of service for good: its private part is erased as it enters one. */
export const FINAL_STATES = ['destroyed', 'revoked'] as const satisfies readonly KeyState[];

/** Which of a stored key's times records when it entered each state. */
export const STATE_ENTERED_AT = {
  next: 'createdAt',
  active: 'activatedAt',
  grace: 'demotedAt',
  retired: 'retiredAt',
  destroyed: 'destroyedAt',
  revoked: 'revokedAt',
} as const satisfies Record<KeyState, string>;

/**
 * A live key as the workflow tracks it: epoch-millisecond timestamps, never key material. Every time
 * is the commit time of the change recorded in PostgreSQL, so a crash, a retry or a slow activity
 * never makes a window start before the change it follows really happened.
 */
export interface KeyTimeline {
  kid: string;
  alg: SigningAlgorithm;
  state: LiveKeyState;
  /** When it was generated and entered this deployment's JWKS. */
  createdAt: number;
  /** When the propagation gate first found it at every JWKS URL. */
  listedAt?: number;
  /** The earliest it may sign: every verifier's cached JWKS that could predate its listing has expired. */
  promotableAt?: number;
  activatedAt?: number;
  /** The longest token lifetime it has signed under: tokens it signed may live this long. */
  tokenTtlMs?: number;
  demotedAt?: number;
  /** When it stops verifying: fixed at demotion, lengthened by a longer grace period, never shortened. */
  graceEndsAt?: number;
  retiredAt?: number;
}

/** The times a key timeline may record beside its creation, in lifecycle order. */
export const TIMELINE_TIMES = [
  'listedAt',
  'promotableAt',
  'activatedAt',
  'tokenTtlMs',
  'demotedAt',
  'graceEndsAt',
  'retiredAt',
] as const;

/** A key as a record holds it: a time not reached is null or missing. */
export type RecordedKey = Pick<KeyTimeline, 'kid' | 'alg' | 'createdAt'> & {
  state: KeyState;
} & Partial<Record<(typeof TIMELINE_TIMES)[number], number | null>>;

/** A live key's timeline from its record, the times reached and no others. */
export function toKeyTimeline(key: RecordedKey): KeyTimeline {
  const timeline: KeyTimeline = {
    kid: key.kid,
    alg: key.alg,
    state: key.state as LiveKeyState,
    createdAt: key.createdAt,
  };
  for (const field of TIMELINE_TIMES) {
    const at = key[field];
    if (at !== null && at !== undefined) timeline[field] = at;
  }
  return timeline;
}

/** A forced rotation waiting for its key to become promotable. */
export interface ForcedRotation {
  requestedAt: number;
  /** Promote at once even if verifiers' caches may not hold the key yet (the operator accepted that). */
  immediately: boolean;
}

/** The next scheduled change of a key set and when it is due. */
export type ScheduledTransition =
  /** No key can sign: generate one and promote it at once. */
  | { kind: 'bootstrap'; at: number }
  | { kind: 'generateNext'; at: number }
  /** The propagation gate: is the next key listed at every JWKS URL yet? */
  | { kind: 'checkPublication'; at: number; kid: string }
  | { kind: 'promote'; at: number; kid: string }
  /** A next key in an algorithm the policy no longer names: it never signed, so it simply leaves. */
  | { kind: 'withdraw'; at: number; kid: string }
  | { kind: 'retire'; at: number; kid: string }
  | { kind: 'destroy'; at: number; kid: string };

/** Every kind of scheduled transition, as metrics label them. */
export const SCHEDULED_TRANSITION_KINDS = [
  'bootstrap',
  'generateNext',
  'checkPublication',
  'promote',
  'withdraw',
  'retire',
  'destroy',
] as const satisfies readonly ScheduledTransition['kind'][];

/** What the lifecycle rules read besides the keys. */
export interface LifecycleContext {
  timings: PolicyTimings;
  algorithm: SigningAlgorithm;
  now: number;
  /** Decommissioned: nothing new is generated or promoted, the remaining keys only run out. */
  windingDown?: boolean;
  rotation?: ForcedRotation | null;
  /** When the propagation gate asks next (it backs off between answers); now when absent. */
  publicationCheckAt?: number;
}

/**
 * The earliest transition a key set's keys are due for; `at` may lie in the past, meaning "now".
 * Undefined only for a set with nothing left to do: a wound-down set whose keys are all gone.
 *
 * A next key is promoted when the active key's period ends (or when a rotation was asked for), but
 * never before its `promotableAt`: it must have been listed at every JWKS URL and stayed there for
 * as long as a verifier may cache the JWKS fetched just before. A key set with no active key is the
 * exception: nothing signs, so no verifier holds a token to reject.
 */
export function nextTransition(
  keys: readonly KeyTimeline[],
  context: LifecycleContext,
): ScheduledTransition | undefined {
  const { timings, now, rotation } = context;
  const active = keys.find((k) => k.state === 'active');
  const next = keys.find((k) => k.state === 'next');
  const candidates: ScheduledTransition[] = [];

  if (context.windingDown) {
    // A decommissioned set signs nothing new: its remaining keys only run out.
  } else if (active === undefined) {
    candidates.push(next === undefined ? { kind: 'bootstrap', at: now } : { kind: 'promote', at: now, kid: next.kid });
  } else {
    const activeEndsAt = (active.activatedAt ?? active.createdAt) + timings.rotationPeriodMs;
    const rotationDue = rotation ? rotation.requestedAt : activeEndsAt;
    if (next === undefined) {
      candidates.push({
        kind: 'generateNext',
        at: rotation ? rotation.requestedAt : activeEndsAt - timings.prepublishMs,
      });
    } else if (next.alg !== context.algorithm) {
      candidates.push({ kind: 'withdraw', at: now, kid: next.kid });
    } else if (rotation?.immediately) {
      candidates.push({ kind: 'promote', at: rotation.requestedAt, kid: next.kid });
    } else if (next.promotableAt === undefined) {
      candidates.push({ kind: 'checkPublication', at: context.publicationCheckAt ?? now, kid: next.kid });
    } else {
      candidates.push({ kind: 'promote', at: Math.max(rotationDue, next.promotableAt), kid: next.kid });
    }
  }
  for (const key of keys) {
    if (key.state === 'grace') candidates.push({ kind: 'retire', at: key.graceEndsAt ?? now, kid: key.kid });
    if (key.state === 'retired')
      candidates.push({ kind: 'destroy', at: (key.retiredAt ?? now) + timings.retirementMs, kid: key.kid });
  }
  // Earliest first; on a tie the order above (signing keys before clean-up) decides.
  return candidates.reduce<ScheduledTransition | undefined>(
    (earliest, c) => (earliest === undefined || c.at < earliest.at ? c : earliest),
    undefined,
  );
}

/**
 * How long a newly listed key waits before it may sign: `jwksMaxAge`, so that every cached JWKS
 * fetched before the listing has expired; `prepublish` when it brings a new algorithm, so that
 * verifiers learn the algorithm as long before its first token as they learn any scheduled key.
 */
export function listingWaitMs(
  key: Pick<KeyTimeline, 'alg'>,
  active: Pick<KeyTimeline, 'alg'> | undefined,
  timings: PolicyTimings,
): number {
  return active !== undefined && active.alg !== key.alg
    ? Math.max(timings.prepublishMs, timings.jwksMaxAgeMs)
    : timings.jwksMaxAgeMs;
}

/**
 * How long a key demoted now verifies: the grace period, and never less than its longest token
 * lifetime plus the clock-skew margin, so that every token it signed expires (on any clock within
 * the margin) before it leaves the JWKS.
 */
export function graceMs(key: Pick<KeyTimeline, 'tokenTtlMs'>, timings: PolicyTimings): number {
  return Math.max(timings.gracePeriodMs, (key.tokenTtlMs ?? timings.maxTokenTtlMs) + timings.clockSkewMs);
}

/** A key's windows as a policy change leaves them, for the store to record. */
export interface KeyWindows {
  kid: string;
  promotableAt?: number;
  tokenTtlMs?: number;
  graceEndsAt?: number;
}

/**
 * What a policy change does to the windows keys already rely on: it may lengthen them, never shorten
 * them. A grace key verifies at least as long as it was promised at demotion (longer if the new grace
 * period says so); the active key remembers the longest token lifetime it signed under; a listed next
 * key waits for the longer of its old wait and a new, longer `jwksMaxAge`. Returns only what changes.
 */
export function windowsAfterPolicyChange(keys: readonly KeyTimeline[], timings: PolicyTimings): KeyWindows[] {
  const active = keys.find((k) => k.state === 'active');
  const changes: KeyWindows[] = [];
  for (const key of keys) {
    if (key.state === 'grace' && key.demotedAt !== undefined) {
      const graceEndsAt = Math.max(key.graceEndsAt ?? 0, key.demotedAt + graceMs(key, timings));
      if (graceEndsAt !== key.graceEndsAt) changes.push({ kid: key.kid, graceEndsAt });
    } else if (key.state === 'active') {
      const tokenTtlMs = Math.max(key.tokenTtlMs ?? 0, timings.maxTokenTtlMs);
      if (tokenTtlMs !== key.tokenTtlMs) changes.push({ kid: key.kid, tokenTtlMs });
    } else if (key.state === 'next' && key.listedAt !== undefined && key.promotableAt !== undefined) {
      const promotableAt = Math.max(key.promotableAt, key.listedAt + listingWaitMs(key, active, timings));
      if (promotableAt !== key.promotableAt) changes.push({ kid: key.kid, promotableAt });
    }
  }
  return changes;
}

/** The kids a verifier should find in the JWKS: next, active and grace keys. */
export function publishedKids(keys: readonly KeyTimeline[]): string[] {
  return keys.filter((k) => PUBLISHED_STATES.includes(k.state)).map((k) => k.kid);
}
