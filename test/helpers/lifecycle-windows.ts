import type { Pool } from 'pg';
import { policyTimings, type KeySetPolicy } from '../../src/domain/policy';

/** One audit event of a key set, with both of its times. */
export interface TimedAuditEvent {
  event: string;
  kid: string | null;
  fromState: string | null;
  toState: string | null;
  /**
   * `occurred_at`: when it happened, as the store stamps it once it holds the key set's lock,
   * milliseconds before the change commits. What the windows are judged by.
   */
  occurredAt: number;
  /** `recorded_at`: the database's now() in the transaction that made the change (its start). */
  recordedAt: number;
}

/** A key set's audit trail in the order it was written, with both times. */
export async function readTimedTrail(pool: Pick<Pool, 'query'>, keySetId: string): Promise<TimedAuditEvent[]> {
  const { rows } = await pool.query<{
    event: string;
    kid: string | null;
    from_state: string | null;
    to_state: string | null;
    occurred_at: Date;
    recorded_at: Date;
  }>(
    'SELECT event, kid, from_state, to_state, occurred_at, recorded_at FROM audit_events WHERE key_set_id = $1 ORDER BY id',
    [keySetId],
  );
  return rows.map((r) => ({
    event: r.event,
    kid: r.kid,
    fromState: r.from_state,
    toState: r.to_state,
    occurredAt: r.occurred_at.getTime(),
    recordedAt: r.recorded_at.getTime(),
  }));
}

/** The lifecycle steps a key takes at most once, each an audit event. */
const STEPS = [
  'generated',
  'published',
  'promoted',
  'demoted',
  'withdrawn',
  'retired',
  'destroyed',
  'revoked',
] as const;
type Step = (typeof STEPS)[number];

/**
 * Every window of the key lifecycle that the trail shows broken, in words (none: all honoured).
 * Times are those the changes committed at (`occurredAt`):
 * - a key replaces the active key only once the propagation gate found it at every JWKS URL
 *   (`published`), and no earlier than `jwksMaxAge` after that; a key set with no active key (a first
 *   key, a replacement after a revocation) promotes at once: no verifier holds a token of a newer key;
 * - at most one key is active at any instant, and each key takes each step at most once;
 * - a demoted key verifies for `gracePeriod`, and leaves the JWKS no earlier than the last token it
 *   signed expires (`lastTokenExpiry`, by kid, from the tokens the test saw signed);
 * - a retired key's private part is kept for `retirement` before it is destroyed.
 */
export function windowViolations(
  trail: readonly TimedAuditEvent[],
  policy: KeySetPolicy,
  lastTokenExpiry: ReadonlyMap<string, number> = new Map(),
): string[] {
  const { jwksMaxAgeMs, gracePeriodMs, retirementMs } = policyTimings(policy);
  const violations: string[] = [];
  const steps = new Map<string, Partial<Record<Step, number>>>();
  const active = new Set<string>();

  trail.forEach((e, i) => {
    if (e.kid === null || !STEPS.includes(e.event as Step)) return;
    const kid = e.kid;
    const at = steps.get(kid) ?? {};
    steps.set(kid, at);
    if (at[e.event as Step] !== undefined) violations.push(`${kid} was ${e.event} twice`);
    at[e.event as Step] = e.occurredAt;
    switch (e.event) {
      case 'promoted': {
        if (at.generated === undefined) {
          violations.push(`${kid} was promoted but never generated`);
          break;
        }
        // A promotion's transaction first demotes the key that was active until then.
        const previous = trail[i - 1];
        const replacing = previous?.event === 'demoted' && previous.fromState === 'active';
        if (replacing && at.published === undefined)
          violations.push(`${kid} replaced the active key before it was found at every JWKS URL`);
        else if (replacing && e.occurredAt - at.published! < jwksMaxAgeMs) {
          violations.push(
            `${kid} became active ${e.occurredAt - at.published!} ms after it was published, before every verifier's cache (jwksMaxAge ${jwksMaxAgeMs} ms) could hold it`,
          );
        }
        active.add(kid);
        if (active.size > 1) violations.push(`${[...active].join(' and ')} were active at once`);
        break;
      }
      case 'demoted':
      case 'revoked':
        active.delete(kid);
        break;
      case 'retired':
        if (at.demoted === undefined) violations.push(`${kid} was retired but never demoted`);
        else if (e.occurredAt - at.demoted < gracePeriodMs) {
          violations.push(
            `${kid} left the JWKS ${e.occurredAt - at.demoted} ms after its demotion, before its grace period (${gracePeriodMs} ms) ended`,
          );
        }
        if ((lastTokenExpiry.get(kid) ?? 0) > e.occurredAt) {
          violations.push(
            `${kid} left the JWKS ${lastTokenExpiry.get(kid)! - e.occurredAt} ms before the last token it signed expired`,
          );
        }
        break;
      case 'withdrawn':
        // A next key that never signed leaves the JWKS at once: its retirement.
        if (at.promoted !== undefined) violations.push(`${kid} was withdrawn after it had signed`);
        at.retired = e.occurredAt;
        break;
      case 'destroyed':
        if (at.retired === undefined) violations.push(`${kid} was destroyed but never retired`);
        else if (e.occurredAt - at.retired < retirementMs) {
          violations.push(
            `${kid} was destroyed ${e.occurredAt - at.retired} ms after its retirement, before its retirement period (${retirementMs} ms) ended`,
          );
        }
        break;
    }
  });
  return violations;
}
