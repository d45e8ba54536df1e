import { checkInvariants, type StoredKeyRecord } from '../../src/domain/invariants';
import type { KeySetStatus } from '../../src/domain/key-set-state';
import type { KeyTimeline } from '../../src/domain/lifecycle';
import { DEFAULT_POLICY } from '../../src/domain/policy';

const DAY = 86_400_000;
const T0 = Date.UTC(2026, 0, 1);

const stored = (
  kid: string,
  state: StoredKeyRecord['state'],
  times: Partial<StoredKeyRecord> = {},
): StoredKeyRecord => ({
  kid,
  alg: 'ES256',
  state,
  hasPrivateKey: !['destroyed', 'revoked'].includes(state),
  thumbprint: kid,
  createdAt: T0,
  listedAt: null,
  promotableAt: null,
  activatedAt: null,
  tokenTtlMs: null,
  demotedAt: null,
  graceEndsAt: null,
  retiredAt: null,
  ...times,
});

function statusOf(keys: StoredKeyRecord[], extra: Partial<KeySetStatus> = {}): KeySetStatus {
  return {
    keySetId: 'ks',
    policy: { ...DEFAULT_POLICY },
    paused: null,
    decommissioned: null,
    keys: keys
      .filter((k) => !['destroyed', 'revoked'].includes(k.state))
      // The workflow's view of a stored key: the same fields, absent where the database has null.
      .map(
        ({ hasPrivateKey: _, thumbprint: __, ...k }) =>
          Object.fromEntries(Object.entries(k).filter(([, v]) => v !== null)) as unknown as KeyTimeline,
      ),
    nextTransition: null,
    rotation: null,
    lastError: null,
    pendingCommands: 0,
    inFlight: null,
    ...extra,
  };
}

const healthy = [stored('a', 'active', { activatedAt: T0 })];
const codes = (status: KeySetStatus, keys: StoredKeyRecord[], now = T0 + DAY) =>
  checkInvariants(status, keys, now).map((v) => v.code);

test('a healthy key set has no violations', () => {
  expect(codes(statusOf(healthy), healthy)).toEqual([]);
});

test('no active key, and two next keys, are reported', () => {
  const keys = [stored('n1', 'next'), stored('n2', 'next')];
  expect(codes(statusOf(keys), keys)).toEqual(['NO_ACTIVE_KEY', 'SEVERAL_NEXT_KEYS']);
});

test('a decommissioned key set winding down needs no active key', () => {
  const keys = [stored('g', 'grace', { demotedAt: T0 })];
  expect(codes(statusOf(keys, { decommissioned: { reason: 'gone', since: T0 } }), keys)).toEqual([]);
});

test('the workflow and the database disagree on a state, a time, or which keys exist', () => {
  const workflowView = statusOf([stored('a', 'active', { activatedAt: T0 }), stored('g', 'grace', { demotedAt: T0 })]);
  const database = [
    stored('a', 'active', { activatedAt: T0 + 1 }),
    stored('g', 'retired', { demotedAt: T0 }),
    stored('x', 'next'),
  ];
  expect(codes(workflowView, database).sort()).toEqual(['STATE_MISMATCH', 'TIME_MISMATCH', 'UNKNOWN_TO_WORKFLOW']);
  expect(codes(statusOf([...healthy, stored('n', 'next')]), healthy)).toEqual(['MISSING_FROM_DATABASE']);
});

test('a destroyed key that kept its private part is reported with its kid', () => {
  const keys = [...healthy, { ...stored('d', 'destroyed'), hasPrivateKey: true }];
  expect(checkInvariants(statusOf(keys), keys, T0 + DAY)).toEqual([
    expect.objectContaining({ code: 'PRIVATE_PART_KEPT', kid: 'd' }),
  ]);
});

test('a live key whose kid is not the thumbprint of its stored public key is reported with its kid; a revoked one no longer', () => {
  const keys = [
    stored('a', 'active', { activatedAt: T0, thumbprint: 'b' }),
    stored('n', 'next', { thumbprint: null }),
    stored('r', 'revoked', { thumbprint: 'x' }),
  ];
  expect(checkInvariants(statusOf(keys), keys, T0 + DAY)).toEqual([
    {
      code: 'KID_MISMATCH',
      keySetId: 'ks',
      kid: 'a',
      message: "key a (active): its stored public key's RFC 7638 thumbprint is b, not its kid",
    },
    {
      code: 'KID_MISMATCH',
      keySetId: 'ks',
      kid: 'n',
      message: 'key n (next): its stored public key lacks members, so it has no RFC 7638 thumbprint to match its kid',
    },
  ]);
});

test('a transition overdue beyond the tolerance is reported, unless the key set is paused', () => {
  const overdueAt = T0 + 25 * DAY + 10 * 60_000; // the next key was due on day 25
  expect(codes(statusOf(healthy), healthy, overdueAt)).toEqual(['OVERDUE']);
  expect(codes(statusOf(healthy), healthy, T0 + 25 * DAY + 60_000)).toEqual([]);
  expect(
    codes(statusOf(healthy, { paused: { reason: 'freeze', since: T0, requestedBy: 'ops' } }), healthy, overdueAt),
  ).toEqual([]);
});

test('an active key signing longer than its rotation period plus the tolerance is reported, paused or not', () => {
  const HOUR = 3_600_000;
  const due = T0 + 30 * DAY; // DEFAULT_POLICY rotates every 30 days
  const tooOld = (status: KeySetStatus, now: number, keyAgeMs?: number) =>
    checkInvariants(status, healthy, now, keyAgeMs === undefined ? {} : { keyAgeMs }).filter(
      (v) => v.code === 'ACTIVE_KEY_TOO_OLD',
    );

  expect(tooOld(statusOf(healthy), due + HOUR)).toEqual([]);
  expect(tooOld(statusOf(healthy), due + HOUR + 60_000)).toEqual([
    {
      code: 'ACTIVE_KEY_TOO_OLD',
      keySetId: 'ks',
      kid: 'a',
      message: 'key a has signed for 30d 1h, longer than the rotation period 30d plus 1h',
    },
  ]);
  expect(tooOld(statusOf(healthy), due + 10 * 60_000, 5 * 60_000)).toHaveLength(1);

  // A pause stops the rotation but not the key's exposure: still reported, and the message says why.
  const paused = statusOf(healthy, { paused: { reason: 'change freeze', since: T0, requestedBy: 'ops' } });
  expect(tooOld(paused, due + 2 * HOUR)[0].message).toContain('the key set is paused: change freeze');
  expect(codes(paused, healthy, due + 2 * HOUR)).toEqual(['ACTIVE_KEY_TOO_OLD']);
});

test('a next key the propagation gate still waits for is no overdue transition (the gate alerts about it)', () => {
  const keys = [...healthy, stored('n', 'next', { createdAt: T0 + 25 * DAY })];
  expect(codes(statusOf(keys), keys, T0 + 30 * DAY + 30 * 60_000)).toEqual([]);
});

test('an active key kept on while its successor may not sign yet is not too old', () => {
  const next = stored('n', 'next', { createdAt: T0 + 29 * DAY, listedAt: T0 + 29 * DAY, promotableAt: T0 + 34 * DAY });
  const keys = [...healthy, next];
  expect(codes(statusOf(keys), keys, T0 + 33 * DAY)).toEqual([]);
  expect(codes(statusOf(keys), keys, T0 + 34 * DAY + 2 * 3_600_000)).toEqual(['OVERDUE', 'ACTIVE_KEY_TOO_OLD']);
});
