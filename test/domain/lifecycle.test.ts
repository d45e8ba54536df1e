import {
  graceMs,
  listingWaitMs,
  nextTransition,
  publishedKids,
  windowsAfterPolicyChange,
  type KeyTimeline,
  type LifecycleContext,
  type ScheduledTransition,
} from '../../src/domain/lifecycle';
import { DEFAULT_POLICY, policyTimings, validatePolicy } from '../../src/domain/policy';

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const seed = policyTimings(DEFAULT_POLICY);
const T0 = Date.UTC(2025, 0, 1);

const at = (now: number, more: Partial<LifecycleContext> = {}): LifecycleContext => ({
  timings: seed,
  algorithm: 'ES256',
  now,
  ...more,
});

/** Applies a transition to a list of keys the way the workflow and the store do, with no I/O. */
function apply(keys: KeyTimeline[], t: ScheduledTransition, newKid: () => string): KeyTimeline[] {
  switch (t.kind) {
    case 'bootstrap':
      return [
        ...keys,
        {
          kid: newKid(),
          alg: 'ES256',
          state: 'active',
          createdAt: t.at,
          activatedAt: t.at,
          tokenTtlMs: seed.maxTokenTtlMs,
        },
      ];
    case 'generateNext':
      return [...keys, { kid: newKid(), alg: 'ES256', state: 'next', createdAt: t.at }];
    case 'checkPublication':
      return keys.map((k) => (k.kid === t.kid ? { ...k, listedAt: t.at, promotableAt: t.at + seed.jwksMaxAgeMs } : k));
    case 'promote':
      return keys.map((k) =>
        k.kid === t.kid
          ? { ...k, state: 'active', activatedAt: t.at, tokenTtlMs: seed.maxTokenTtlMs }
          : k.state === 'active'
            ? { ...k, state: 'grace', demotedAt: t.at, graceEndsAt: t.at + graceMs(k, seed) }
            : k,
      );
    case 'withdraw':
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
      const t = nextTransition(keys, at(now));
      if (t === undefined) throw new Error('a bootstrapped key set always has something ahead');
      if (t.at > T0 + 100 * DAY) break;
      // The clock only moves forward, and never skips a transition that was due.
      expect(t.at).toBeGreaterThanOrEqual(now);
      now = t.at;
      keys = apply(keys, t, newKid);
      if (t.kind !== 'checkPublication') seen.push([(t.at - T0) / DAY, t.kind, 'kid' in t ? t.kid : undefined]);
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
    expect(keys).toEqual([
      {
        kid: 'k4',
        alg: 'ES256',
        state: 'active',
        createdAt: T0 + 85 * DAY,
        listedAt: T0 + 85 * DAY,
        promotableAt: T0 + 85 * DAY + 15 * MINUTE,
        activatedAt: T0 + 90 * DAY,
        tokenTtlMs: HOUR,
      },
    ]);
    expect(nextTransition(keys, at(now))).toEqual({ kind: 'generateNext', at: T0 + 115 * DAY });
  });
});

describe('nextTransition edge cases', () => {
  const active = (activatedAt: number, kid = 'a'): KeyTimeline => ({
    kid,
    alg: 'ES256',
    state: 'active',
    createdAt: activatedAt,
    activatedAt,
  });
  const next = (createdAt: number, more: Partial<KeyTimeline> = {}): KeyTimeline => ({
    kid: 'n',
    alg: 'ES256',
    state: 'next',
    createdAt,
    ...more,
  });
  const listed = (createdAt: number, listedAt = createdAt) =>
    next(createdAt, { listedAt, promotableAt: listedAt + 15 * MINUTE });

  test('no keys at all: bootstrap now', () => {
    expect(nextTransition([], at(T0))).toEqual({ kind: 'bootstrap', at: T0 });
  });

  test('a due transition keeps its time even when now is later (it is overdue, not rescheduled)', () => {
    expect(nextTransition([active(T0)], at(T0 + 40 * DAY))).toEqual({ kind: 'generateNext', at: T0 + 25 * DAY });
  });

  test('a next key not yet listed everywhere is checked, when the gate asks next, and never promoted', () => {
    expect(nextTransition([active(T0), next(T0 + 25 * DAY)], at(T0 + 31 * DAY))).toEqual({
      kind: 'checkPublication',
      kid: 'n',
      at: T0 + 31 * DAY,
    });
    expect(
      nextTransition([active(T0), next(T0 + 25 * DAY)], at(T0 + 31 * DAY, { publicationCheckAt: T0 + 32 * DAY })),
    ).toEqual({
      kind: 'checkPublication',
      kid: 'n',
      at: T0 + 32 * DAY,
    });
  });

  test('a next key listed late is promoted when it becomes promotable, not at the period end', () => {
    const listedAt = T0 + 40 * DAY; // ten days after the active key's period ended
    expect(nextTransition([active(T0), listed(T0 + 25 * DAY, listedAt)], at(listedAt))).toEqual({
      kind: 'promote',
      kid: 'n',
      at: listedAt + 15 * MINUTE,
    });
  });

  test('a next key listed on time is promoted at the end of the active period', () => {
    expect(nextTransition([active(T0), listed(T0 + 25 * DAY)], at(T0 + 25 * DAY))).toEqual({
      kind: 'promote',
      kid: 'n',
      at: T0 + 30 * DAY,
    });
  });

  test('a rotation asked for: a next key is generated at once, and promoted once promotable', () => {
    const rotation = { requestedAt: T0 + 3 * DAY, immediately: false };
    expect(nextTransition([active(T0)], at(T0 + 3 * DAY, { rotation }))).toEqual({
      kind: 'generateNext',
      at: T0 + 3 * DAY,
    });
    expect(nextTransition([active(T0), listed(T0 + 3 * DAY)], at(T0 + 3 * DAY, { rotation }))).toEqual({
      kind: 'promote',
      kid: 'n',
      at: T0 + 3 * DAY + 15 * MINUTE,
    });
    // Immediately: promoted now, listed or not.
    expect(
      nextTransition(
        [active(T0), next(T0 + 3 * DAY)],
        at(T0 + 3 * DAY, { rotation: { ...rotation, immediately: true } }),
      ),
    ).toEqual({
      kind: 'promote',
      kid: 'n',
      at: T0 + 3 * DAY,
    });
  });

  test('a next key in an algorithm the policy no longer names is withdrawn at once', () => {
    expect(nextTransition([active(T0), listed(T0 + 25 * DAY)], at(T0 + 26 * DAY, { algorithm: 'RS256' }))).toEqual({
      kind: 'withdraw',
      kid: 'n',
      at: T0 + 26 * DAY,
    });
  });

  test('no active key but a next key (after a revocation): promote now, listed or not', () => {
    const now = T0 + 3 * DAY;
    expect(nextTransition([next(now - MINUTE)], at(now))).toEqual({ kind: 'promote', kid: 'n', at: now });
  });

  test('no active key and a grace key (its active successor was revoked): bootstrap now', () => {
    const grace: KeyTimeline = {
      kid: 'g',
      alg: 'ES256',
      state: 'grace',
      createdAt: T0,
      activatedAt: T0,
      demotedAt: T0 + 8 * DAY,
      graceEndsAt: T0 + 13 * DAY,
    };
    expect(nextTransition([grace], at(T0 + 10 * DAY))).toEqual({ kind: 'bootstrap', at: T0 + 10 * DAY });
  });

  test('a grace key retires when its recorded grace ends, whatever the policy says now', () => {
    const grace: KeyTimeline = {
      kid: 'g',
      alg: 'ES256',
      state: 'grace',
      createdAt: T0,
      activatedAt: T0,
      demotedAt: T0,
      graceEndsAt: T0 + 7 * DAY,
    };
    expect(nextTransition([grace, active(T0)], at(T0))).toEqual({ kind: 'retire', kid: 'g', at: T0 + 7 * DAY });
  });

  test('on equal times the signing-key transition comes before clean-up', () => {
    // The grace key's grace period and the active key's period both end on day 30.
    const grace: KeyTimeline = {
      kid: 'g',
      alg: 'ES256',
      state: 'grace',
      createdAt: T0,
      activatedAt: T0,
      demotedAt: T0 + 25 * DAY,
      graceEndsAt: T0 + 30 * DAY,
    };
    const keys = [grace, active(T0), listed(T0 + 25 * DAY)];
    expect(nextTransition(keys, at(T0 + 26 * DAY))).toEqual({ kind: 'promote', kid: 'n', at: T0 + 30 * DAY });
    // generateNext (day 25) against a destroy due the same instant.
    const retired: KeyTimeline = { kid: 'r', alg: 'ES256', state: 'retired', createdAt: T0, retiredAt: T0 + 24 * DAY };
    expect(nextTransition([retired, active(T0)], at(T0))).toEqual({ kind: 'generateNext', at: T0 + 25 * DAY });
  });

  test('an earlier clean-up comes before a later signing-key transition', () => {
    const grace: KeyTimeline = {
      kid: 'g',
      alg: 'ES256',
      state: 'grace',
      createdAt: T0,
      activatedAt: T0,
      demotedAt: T0,
      graceEndsAt: T0 + 5 * DAY,
    };
    expect(nextTransition([grace, active(T0)], at(T0))).toEqual({ kind: 'retire', kid: 'g', at: T0 + 5 * DAY });
    const retired: KeyTimeline = { kid: 'r', alg: 'ES256', state: 'retired', createdAt: T0, retiredAt: T0 + 5 * DAY };
    expect(nextTransition([retired, active(T0)], at(T0))).toEqual({ kind: 'destroy', kid: 'r', at: T0 + 6 * DAY });
  });
});

describe('the windows keys rely on', () => {
  test('a listed key waits jwksMaxAge, and prepublish when it brings a new algorithm', () => {
    expect(listingWaitMs({ alg: 'ES256' }, { alg: 'ES256' }, seed)).toBe(15 * MINUTE);
    expect(listingWaitMs({ alg: 'ES256' }, { alg: 'RS256' }, seed)).toBe(5 * DAY);
    expect(listingWaitMs({ alg: 'ES256' }, undefined, seed)).toBe(15 * MINUTE);
  });

  test('a demoted key verifies for the grace period, and at least its longest token lifetime plus the clock-skew margin', () => {
    expect(graceMs({ tokenTtlMs: HOUR }, seed)).toBe(5 * DAY);
    expect(graceMs({ tokenTtlMs: 10 * DAY }, seed)).toBe(10 * DAY + 30_000);
  });

  describe('after a policy change, at each state', () => {
    const keys: KeyTimeline[] = [
      {
        kid: 'g',
        alg: 'ES256',
        state: 'grace',
        createdAt: T0,
        activatedAt: T0,
        tokenTtlMs: HOUR,
        demotedAt: T0 + 30 * DAY,
        graceEndsAt: T0 + 35 * DAY,
      },
      {
        kid: 'a',
        alg: 'ES256',
        state: 'active',
        createdAt: T0 + 25 * DAY,
        activatedAt: T0 + 30 * DAY,
        tokenTtlMs: HOUR,
      },
      {
        kid: 'n',
        alg: 'ES256',
        state: 'next',
        createdAt: T0 + 55 * DAY,
        listedAt: T0 + 55 * DAY,
        promotableAt: T0 + 55 * DAY + 15 * MINUTE,
      },
      { kid: 'r', alg: 'ES256', state: 'retired', createdAt: 0, retiredAt: T0 + 29 * DAY },
    ];

    test('shorter grace, token lifetime and jwksMaxAge shorten nothing', () => {
      const shorter = policyTimings(
        validatePolicy({ gracePeriod: '1h', maxTokenTtl: '10m', jwksMaxAge: '1m', prepublish: '1m' }),
      );
      expect(windowsAfterPolicyChange(keys, shorter)).toEqual([]);
    });

    test('longer ones lengthen the windows of the keys that rely on them', () => {
      const longer = policyTimings(
        validatePolicy({ gracePeriod: '8d', maxTokenTtl: '2h', jwksMaxAge: '1d', prepublish: '6d' }),
      );
      expect(windowsAfterPolicyChange(keys, longer)).toEqual([
        { kid: 'g', graceEndsAt: T0 + 38 * DAY },
        { kid: 'a', tokenTtlMs: 2 * HOUR },
        { kid: 'n', promotableAt: T0 + 56 * DAY },
      ]);
    });
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
