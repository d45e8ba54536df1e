import { nextTransition, publishedKids, type KeyTimeline, type ScheduledTransition } from '../../src/domain/lifecycle';
import { DEFAULT_POLICY, policyTimings } from '../../src/domain/policy';

const MINUTE = 60_000;
const DAY = 86_400_000;
const seed = policyTimings(DEFAULT_POLICY);
const T0 = Date.UTC(2025, 0, 1);

/** Applies a transition to a list of keys the way the workflow does, with no I/O. */
function apply(keys: KeyTimeline[], t: ScheduledTransition, newKid: () => string): KeyTimeline[] {
  switch (t.kind) {
    case 'bootstrap':
      return [...keys, { kid: newKid(), alg: 'ES256', state: 'active', createdAt: t.at, activatedAt: t.at }];
    case 'generateNext':
      return [...keys, { kid: newKid(), alg: 'ES256', state: 'next', createdAt: t.at }];
    case 'promote':
      return keys.map((k) =>
        k.kid === t.kid
          ? { ...k, state: 'active', activatedAt: t.at }
          : k.state === 'active'
            ? { ...k, state: 'grace', demotedAt: t.at }
            : k,
      );
    case 'retire':
      return keys.map((k) => (k.kid === t.kid ? { ...k, state: 'retired', retiredAt: t.at } : k));
    case 'destroy':
      return keys.filter((k) => k.kid !== t.kid);
  }
}

describe('nextTransition over 100 days under the seed policy', () => {
  test('follows the schedule written out by hand, with one active key throughout', () => {
    let keys: KeyTimeline[] = [];
    let now = T0;
    let counter = 0;
    const newKid = () => `k${++counter}`;
    const seen: [number, string, string?][] = [];

    for (;;) {
      const t = nextTransition(keys, seed, now);
      if (t === undefined) throw new Error('a bootstrapped key set always has something ahead');
      if (t.at > T0 + 100 * DAY) break;
      // The clock only moves forward, and never skips a transition that was due.
      expect(t.at).toBeGreaterThanOrEqual(now);
      now = t.at;
      keys = apply(keys, t, newKid);
      seen.push([(t.at - T0) / DAY, t.kind, 'kid' in t ? t.kid : undefined]);
      expect(keys.filter((k) => k.state === 'active')).toHaveLength(1);
      expect(keys.filter((k) => k.state === 'next').length).toBeLessThanOrEqual(1);
    }

    expect(seen).toEqual([
      [0, 'bootstrap', undefined],
      [25, 'generateNext', undefined],
      [30, 'promote', 'k2'],
      [35, 'retire', 'k1'],
      [36, 'destroy', 'k1'],
      [55, 'generateNext', undefined],
      [60, 'promote', 'k3'],
      [65, 'retire', 'k2'],
      [66, 'destroy', 'k2'],
      [85, 'generateNext', undefined],
      [90, 'promote', 'k4'],
      [95, 'retire', 'k3'],
      [96, 'destroy', 'k3'],
    ]);
    // Day 100: k4 signs, nothing else is left.
    expect(keys).toEqual([{ kid: 'k4', alg: 'ES256', state: 'active', createdAt: T0 + 85 * DAY, activatedAt: T0 + 90 * DAY }]);
    expect(nextTransition(keys, seed, now)).toEqual({ kind: 'generateNext', at: T0 + 115 * DAY });
  });
});

describe('nextTransition edge cases', () => {
  const active = (activatedAt: number, kid = 'a'): KeyTimeline => ({ kid, alg: 'ES256', state: 'active', createdAt: activatedAt, activatedAt });
  const next = (createdAt: number, kid = 'n'): KeyTimeline => ({ kid, alg: 'ES256', state: 'next', createdAt });

  test('no keys at all: bootstrap now', () => {
    expect(nextTransition([], seed, T0)).toEqual({ kind: 'bootstrap', at: T0 });
  });

  test('a due transition keeps its time even when now is later (it is overdue, not rescheduled)', () => {
    expect(nextTransition([active(T0)], seed, T0 + 40 * DAY)).toEqual({ kind: 'generateNext', at: T0 + 25 * DAY });
  });

  test('a next key generated late is promoted jwksMaxAge after its creation, not at the period end', () => {
    const createdAt = T0 + 40 * DAY; // ten days after the active key's period ended
    expect(nextTransition([active(T0), next(createdAt)], seed, createdAt)).toEqual({
      kind: 'promote',
      kid: 'n',
      at: createdAt + 15 * MINUTE,
    });
  });

  test('a next key generated on time is promoted at the end of the active period', () => {
    expect(nextTransition([active(T0), next(T0 + 25 * DAY)], seed, T0 + 25 * DAY)).toEqual({ kind: 'promote', kid: 'n', at: T0 + 30 * DAY });
  });

  test('no active key but a next key (after a revocation): promote now, without waiting out jwksMaxAge', () => {
    const now = T0 + 3 * DAY;
    expect(nextTransition([next(now - MINUTE)], seed, now)).toEqual({ kind: 'promote', kid: 'n', at: now });
  });

  test('no active key and a grace key (its active successor was revoked): bootstrap now', () => {
    const grace: KeyTimeline = { kid: 'g', alg: 'ES256', state: 'grace', createdAt: T0, activatedAt: T0, demotedAt: T0 + 8 * DAY };
    expect(nextTransition([grace], seed, T0 + 10 * DAY)).toEqual({ kind: 'bootstrap', at: T0 + 10 * DAY });
  });

  test('on equal times the signing-key transition comes before clean-up', () => {
    // The grace key's grace period and the active key's period both end on day 30.
    const grace: KeyTimeline = { kid: 'g', alg: 'ES256', state: 'grace', createdAt: T0, activatedAt: T0, demotedAt: T0 + 25 * DAY };
    const keys = [grace, active(T0), next(T0 + 25 * DAY)];
    expect(nextTransition(keys, seed, T0 + 26 * DAY)).toEqual({ kind: 'promote', kid: 'n', at: T0 + 30 * DAY });
    // generateNext (day 25) against a destroy due the same instant.
    const retired: KeyTimeline = { kid: 'r', alg: 'ES256', state: 'retired', createdAt: T0, retiredAt: T0 + 24 * DAY };
    expect(nextTransition([retired, active(T0)], seed, T0)).toEqual({ kind: 'generateNext', at: T0 + 25 * DAY });
  });

  test('an earlier clean-up comes before a later signing-key transition', () => {
    const grace: KeyTimeline = { kid: 'g', alg: 'ES256', state: 'grace', createdAt: T0, activatedAt: T0, demotedAt: T0 };
    expect(nextTransition([grace, active(T0)], seed, T0)).toEqual({ kind: 'retire', kid: 'g', at: T0 + 5 * DAY });
    const retired: KeyTimeline = { kid: 'r', alg: 'ES256', state: 'retired', createdAt: T0, retiredAt: T0 + 5 * DAY };
    expect(nextTransition([retired, active(T0)], seed, T0)).toEqual({ kind: 'destroy', kid: 'r', at: T0 + 6 * DAY });
  });
});

describe('publishedKids', () => {
  test('lists next, active and grace keys, in order, and never retired ones', () => {
    const keys: KeyTimeline[] = [
      { kid: 'r', alg: 'ES256', state: 'retired', createdAt: 0 },
      { kid: 'g', alg: 'ES256', state: 'grace', createdAt: 1 },
      { kid: 'a', alg: 'ES256', state: 'active', createdAt: 2 },
      { kid: 'n', alg: 'ES256', state: 'next', createdAt: 3 },
    ];
    expect(publishedKids(keys)).toEqual(['g', 'a', 'n']);
    expect(publishedKids([])).toEqual([]);
  });
});
