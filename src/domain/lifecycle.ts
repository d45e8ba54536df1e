import type { SigningAlgorithm } from './algorithms';
import type { PolicyTimings } from './policy';

/**
 * next ─promote→ active ─demote→ grace ─expire→ retired ─purge→ destroyed, and revoked from any
 * state but destroyed. `destroyed` and `revoked` are final: the private part is gone.
 */
export type KeyState = 'next' | 'active' | 'grace' | 'retired' | 'destroyed' | 'revoked';

/** A key that still has a transition ahead of it. */
export type LiveKeyState = Exclude<KeyState, 'destroyed' | 'revoked'>;

/** The states whose public keys are served in the JWKS. */
export const PUBLISHED_STATES: readonly KeyState[] = ['next', 'active', 'grace'];

/** The states a key can be revoked from (a destroyed key cannot sign anything any more). */
export const REVOCABLE_STATES: readonly KeyState[] = ['next', 'active', 'grace', 'retired'];

/** A live key as the workflow tracks it: epoch-millisecond timestamps, never key material. */
export interface KeyTimeline {
  kid: string;
  alg: SigningAlgorithm;
  state: LiveKeyState;
  createdAt: number;
  activatedAt?: number;
  demotedAt?: number;
  retiredAt?: number;
}

/** The next scheduled change of a key set and when it is due. */
export type ScheduledTransition =
  /** No key can sign: generate one and promote it at once. */
  | { kind: 'bootstrap'; at: number }
  | { kind: 'generateNext'; at: number }
  | { kind: 'promote'; at: number; kid: string }
  | { kind: 'retire'; at: number; kid: string }
  | { kind: 'destroy'; at: number; kid: string };

/** When a grace key stops verifying and is retired. */
export function graceEndsAt(key: KeyTimeline, timings: PolicyTimings): number | undefined {
  return key.demotedAt === undefined ? undefined : key.demotedAt + timings.gracePeriodMs;
}

/**
 * The earliest transition a key set's keys are due for under `timings`; `at` may lie in the past,
 * meaning "now". Undefined only for a set with nothing left to do: a wound-down set whose keys are all gone.
 *
 * A next key is promoted when the active key's period ends, but never before it has been published
 * for `jwksMaxAge`: a next key generated late (after a pause or an outage) still reaches every
 * verifier's cache before it signs.
 */
export function nextTransition(
  keys: readonly KeyTimeline[],
  timings: PolicyTimings,
  now: number,
  options: { windingDown?: boolean } = {},
): ScheduledTransition | undefined {
  const active = keys.find((k) => k.state === 'active');
  const next = keys.find((k) => k.state === 'next');
  const candidates: ScheduledTransition[] = [];

  if (options.windingDown) {
    // A decommissioned set signs nothing new: its remaining keys only run out.
  } else if (active === undefined) {
    // Nothing signs: an emergency (revocation) or an interrupted bootstrap. No verifier can be
    // holding a token from a newer key, so promotion does not wait.
    candidates.push(next === undefined ? { kind: 'bootstrap', at: now } : { kind: 'promote', at: now, kid: next.kid });
  } else {
    const activeEndsAt = (active.activatedAt ?? active.createdAt) + timings.rotationPeriodMs;
    if (next === undefined) {
      candidates.push({ kind: 'generateNext', at: activeEndsAt - timings.prepublishMs });
    } else {
      candidates.push({ kind: 'promote', at: Math.max(activeEndsAt, next.createdAt + timings.jwksMaxAgeMs), kid: next.kid });
    }
  }
  for (const key of keys) {
    if (key.state === 'grace') candidates.push({ kind: 'retire', at: graceEndsAt(key, timings)!, kid: key.kid });
    if (key.state === 'retired') {
      candidates.push({ kind: 'destroy', at: (key.retiredAt ?? now) + timings.retirementMs, kid: key.kid });
    }
  }
  // Earliest first; on a tie the order above (signing keys before clean-up) decides.
  return candidates.reduce<ScheduledTransition | undefined>((earliest, c) => (earliest === undefined || c.at < earliest.at ? c : earliest), undefined);
}

/** The kids a verifier should find in the JWKS: next, active and grace keys. */
export function publishedKids(keys: readonly KeyTimeline[]): string[] {
  return keys.filter((k) => PUBLISHED_STATES.includes(k.state)).map((k) => k.kid);
}
