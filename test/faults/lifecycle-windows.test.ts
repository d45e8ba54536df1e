import { validatePolicy } from '../../src/domain/policy';
import { windowViolations, type TimedAuditEvent } from '../helpers/lifecycle-windows';

// The window check the fault suite relies on, on trails written by hand: it must pass a lifecycle
// that keeps every window and name each window a trail breaks.

const POLICY = validatePolicy({
  rotationPeriod: '60s',
  prepublish: '20s',
  jwksMaxAge: '10s',
  gracePeriod: '30s',
  maxTokenTtl: '20s',
  retirement: '15s',
  clockSkew: '1s',
});

function event(
  event: string,
  kid: string,
  fromState: string | null,
  toState: string | null,
  occurredAt: number,
): TimedAuditEvent {
  return { event, kid, fromState, toState, occurredAt, recordedAt: occurredAt };
}

/** Key a bootstraps at 0; b is generated at 40 s, found at every JWKS URL at 41 s and promoted at 60 s; a retires at 90 s and is destroyed at 105 s. */
function rotation(changes: { promoteB?: number; retireA?: number; destroyA?: number } = {}): TimedAuditEvent[] {
  const promoteB = changes.promoteB ?? 60_000;
  return [
    event('generated', 'a', null, 'next', 0),
    event('promoted', 'a', 'next', 'active', 0),
    event('generated', 'b', null, 'next', 40_000),
    event('published', 'b', null, null, 41_000),
    event('demoted', 'a', 'active', 'grace', promoteB),
    event('promoted', 'b', 'next', 'active', promoteB),
    event('retired', 'a', 'grace', 'retired', changes.retireA ?? 90_000),
    event('destroyed', 'a', 'retired', 'destroyed', changes.destroyA ?? 105_000),
  ];
}

test('a lifecycle that keeps every window breaks none, a first key becoming active at once included', () => {
  expect(windowViolations(rotation(), POLICY, new Map([['a', 80_000]]))).toEqual([]);
});

test('each window broken is named with its kid and by how much', () => {
  expect(windowViolations(rotation({ promoteB: 45_000 }), POLICY)).toEqual([
    "b became active 4000 ms after it was published, before every verifier's cache (jwksMaxAge 10000 ms) could hold it",
  ]);
  const unlisted = rotation().filter((e) => e.event !== 'published');
  expect(windowViolations(unlisted, POLICY)).toEqual([
    'b replaced the active key before it was found at every JWKS URL',
  ]);
  expect(windowViolations(rotation({ retireA: 80_000 }), POLICY)).toEqual([
    'a left the JWKS 20000 ms after its demotion, before its grace period (30000 ms) ended',
  ]);
  expect(windowViolations(rotation(), POLICY, new Map([['a', 95_000]]))).toEqual([
    'a left the JWKS 5000 ms before the last token it signed expired',
  ]);
  expect(windowViolations(rotation({ destroyA: 100_000 }), POLICY)).toEqual([
    'a was destroyed 10000 ms after its retirement, before its retirement period (15000 ms) ended',
  ]);
});

test('a second active key and a step taken twice are named', () => {
  const trail = [
    ...rotation().slice(0, 4),
    event('promoted', 'b', 'next', 'active', 60_000),
    event('promoted', 'b', 'next', 'active', 61_000),
  ];
  expect(windowViolations(trail, POLICY)).toEqual([
    'a and b were active at once',
    'b was promoted twice',
    'a and b were active at once',
  ]);
});

test('a replacement after a revocation becomes active at once', () => {
  const trail = [
    ...rotation().slice(0, 3),
    event('revoked', 'a', 'active', 'revoked', 40_500),
    event('promoted', 'b', 'next', 'active', 40_500),
  ];
  expect(windowViolations(trail, POLICY)).toEqual([]);
});

test('a next key withdrawn before it signed is retired by the withdrawal, and destroyed a retirement period later', () => {
  const withdrawal = [...rotation().slice(0, 4), event('withdrawn', 'b', 'next', 'retired', 45_000)];
  expect(windowViolations([...withdrawal, event('destroyed', 'b', 'retired', 'destroyed', 60_000)], POLICY)).toEqual(
    [],
  );
  expect(windowViolations([...withdrawal, event('destroyed', 'b', 'retired', 'destroyed', 50_000)], POLICY)).toEqual([
    'b was destroyed 5000 ms after its retirement, before its retirement period (15000 ms) ended',
  ]);
});
