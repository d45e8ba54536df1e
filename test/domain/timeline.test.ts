import type { KeyTimeline } from '../../src/domain/lifecycle';
import { DEFAULT_POLICY, policyTimings } from '../../src/domain/policy';
import { keySetTimeline, type TimelineRow } from '../../src/domain/timeline';

// The seed policy (30d active, 5d prepublish, 5d grace, 1d retirement, 15m jwksMaxAge) on fixed times:
// each row as [phase, planned, start day, end day], days counted from DAY0.

const DAY = 86_400_000;
const DAY0 = Date.UTC(2026, 10, 1);
const timings = policyTimings(DEFAULT_POLICY);
const at = (days: number) => DAY0 + days * DAY;

function days(rows: TimelineRow[]) {
  return rows.map((row) => ({
    kid: row.kid,
    periods: row.periods.map((p) => [p.phase, p.planned, (p.start - DAY0) / DAY, (p.end - DAY0) / DAY]),
  }));
}

test('a bootstrapped active key: its period so far, the rest planned, and the key to come after it', () => {
  const keys: KeyTimeline[] = [{ kid: 'A', alg: 'ES256', state: 'active', createdAt: at(0), activatedAt: at(0) }];
  expect(days(keySetTimeline(keys, timings, at(10)))).toEqual([
    {
      kid: 'A',
      periods: [
        ['active', false, 0, 10],
        ['active', true, 10, 30],
        ['grace', true, 30, 35],
        ['retired', true, 35, 36],
      ],
    },
    {
      kid: undefined,
      periods: [
        ['next', true, 25, 30],
        ['active', true, 30, 60],
        ['grace', true, 60, 65],
        ['retired', true, 65, 66],
      ],
    },
  ]);
});

test('a published next key follows the active key: no key to come then', () => {
  const keys: KeyTimeline[] = [
    { kid: 'N', alg: 'ES256', state: 'next', createdAt: at(25), listedAt: at(25), promotableAt: at(25.01) },
    { kid: 'A', alg: 'ES256', state: 'active', createdAt: at(-5), activatedAt: at(0) },
  ];
  expect(days(keySetTimeline(keys, timings, at(26)))).toEqual([
    {
      kid: 'A',
      periods: [
        ['next', false, -5, 0],
        ['active', false, 0, 26],
        ['active', true, 26, 30],
        ['grace', true, 30, 35],
        ['retired', true, 35, 36],
      ],
    },
    {
      kid: 'N',
      periods: [
        ['next', false, 25, 26],
        ['next', true, 26, 30],
        ['active', true, 30, 60],
        ['grace', true, 60, 65],
        ['retired', true, 65, 66],
      ],
    },
  ]);
});

test("a grace key ends at its graceEndsAt, which its tokens' lifetime may have lengthened", () => {
  const keys: KeyTimeline[] = [
    {
      kid: 'G',
      alg: 'ES256',
      state: 'grace',
      createdAt: at(-35),
      activatedAt: at(-30),
      tokenTtlMs: 7 * DAY,
      demotedAt: at(0),
      graceEndsAt: at(7),
    },
    { kid: 'A', alg: 'ES256', state: 'active', createdAt: at(-5), activatedAt: at(0) },
  ];
  const [grace] = days(keySetTimeline(keys, timings, at(3)));
  expect(grace).toEqual({
    kid: 'G',
    periods: [
      ['next', false, -35, -30],
      ['active', false, -30, 0],
      ['grace', false, 0, 3],
      ['grace', true, 3, 7],
      ['retired', true, 7, 8],
    ],
  });
});

test('a transition overdue is planned for now, not in the past', () => {
  const keys: KeyTimeline[] = [{ kid: 'A', alg: 'ES256', state: 'active', createdAt: at(0), activatedAt: at(0) }];
  const [active, successor] = days(keySetTimeline(keys, timings, at(40)));
  expect(active.periods).toEqual([
    ['active', false, 0, 40],
    ['grace', true, 40, 45],
    ['retired', true, 45, 46],
  ]);
  expect(successor.periods[0]).toEqual(['next', true, 40, 40 + timings.jwksMaxAgeMs / DAY]);
});
