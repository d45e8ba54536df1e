import type { KeySetCommand, KeySetState } from '../../src/domain/key-set-state';
import type { KeyTimeline } from '../../src/domain/lifecycle';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import {
  KeySetMachine,
  failureBackoffMs,
  initialState,
  publicationCheckDelayMs,
} from '../../src/workflows/key-set-machine';

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
const T0 = Date.UTC(2025, 0, 1);

const activeKey: KeyTimeline = {
  kid: 'a',
  alg: 'ES256',
  state: 'active',
  createdAt: T0,
  activatedAt: T0,
  tokenTtlMs: HOUR,
};
const nextKey: KeyTimeline = { kid: 'n', alg: 'ES256', state: 'next', createdAt: T0 + 25 * DAY };
const listedKey: KeyTimeline = { ...nextKey, listedAt: T0 + 25 * DAY, promotableAt: T0 + 25 * DAY + 15 * MINUTE };

const who = { requestedBy: 'ops', reason: 'r' };
const signalRotate: KeySetCommand = { id: 'c-signal', type: 'rotate', ...who, immediately: false, awaited: false };
const updateRotate: KeySetCommand = { id: 'c-update', type: 'rotate', ...who, immediately: false, awaited: true };
const revoke: KeySetCommand = { id: 'c-revoke', type: 'revoke', kid: 'a', ...who, reason: 'leaked', awaited: true };
const pause: KeySetCommand = { id: 'c-pause', type: 'pause', ...who, awaited: false };

/** A machine whose keys are loaded, optionally with more state. */
function machineWith(state: Partial<KeySetState> = {}): KeySetMachine {
  return new KeySetMachine({
    ...initialState('payments', { ...DEFAULT_POLICY }),
    loaded: true,
    keys: [{ ...activeKey }],
    ...state,
  });
}

describe('nextStep', () => {
  test('a new workflow loads its keys first, even with commands queued', () => {
    const machine = new KeySetMachine(initialState('payments', { ...DEFAULT_POLICY }));
    machine.enqueue(revoke);
    expect(machine.nextStep(T0)).toEqual({ type: 'load' });
  });

  test('with no keys, bootstrap is due at once', () => {
    expect(machineWith({ keys: [] }).nextStep(T0)).toEqual({
      type: 'transition',
      transition: { kind: 'bootstrap', at: T0 },
    });
  });

  test('waits until the next transition, then performs it', () => {
    const machine = machineWith();
    expect(machine.nextStep(T0 + DAY)).toEqual({ type: 'wait', until: T0 + 25 * DAY });
    expect(machine.nextStep(T0 + 25 * DAY)).toEqual({
      type: 'transition',
      transition: { kind: 'generateNext', at: T0 + 25 * DAY },
    });
  });

  test('every message is a command, run before scheduled work, in order, revocations and awaited ones first', () => {
    const overdue = T0 + 40 * DAY;
    expect(machineWith({ commands: [signalRotate] }).nextStep(overdue)).toEqual({
      type: 'command',
      command: signalRotate,
    });
    expect(machineWith({ commands: [pause, signalRotate] }).nextStep(overdue)).toEqual({
      type: 'command',
      command: pause,
    });
    expect(machineWith({ commands: [signalRotate, revoke] }).nextStep(overdue)).toEqual({
      type: 'command',
      command: revoke,
    });
    expect(machineWith({ commands: [updateRotate, revoke] }).nextStep(overdue)).toEqual({
      type: 'command',
      command: revoke,
    });
    expect(machineWith({ commands: [signalRotate, updateRotate] }).nextStep(overdue)).toEqual({
      type: 'command',
      command: updateRotate,
    });
  });

  test('paused: no scheduled work and no deadline, but commands still run', () => {
    const machine = machineWith();
    machine.paused({ reason: 'maintenance', since: T0, requestedBy: 'ops' });
    expect(machine.nextStep(T0 + 40 * DAY)).toEqual({ type: 'wait' });
    machine.enqueue(signalRotate);
    expect(machine.nextStep(T0 + 40 * DAY)).toEqual({ type: 'command', command: signalRotate });
    machine.complete(signalRotate.id);
    machine.resumed();
    expect(machine.nextStep(T0 + 40 * DAY)).toMatchObject({ type: 'transition', transition: { kind: 'generateNext' } });
  });

  test('paused with a rotation asked for: its key goes ahead, clean-up waits', () => {
    const grace: KeyTimeline = {
      kid: 'g',
      alg: 'ES256',
      state: 'grace',
      createdAt: 0,
      activatedAt: 0,
      demotedAt: T0,
      graceEndsAt: T0 + DAY,
    };
    const machine = machineWith({ keys: [grace, { ...activeKey }, { ...listedKey }] });
    machine.paused({ reason: 'freeze', since: T0, requestedBy: 'ops' });
    machine.rotationRequested({ requestedAt: T0 + 26 * DAY, requestedBy: 'ops', reason: 'drill', immediately: false });
    expect(machine.nextStep(T0 + 26 * DAY)).toEqual({
      type: 'transition',
      transition: { kind: 'promote', kid: 'n', at: T0 + 26 * DAY },
    });
  });

  test('paused before its keys were loaded: it still loads', () => {
    const machine = machineWith({ loaded: false, paused: { reason: 'x', since: T0, requestedBy: 'ops' } });
    expect(machine.nextStep(T0)).toEqual({ type: 'load' });
  });

  describe('after a failure', () => {
    const failedAt = T0 + 25 * DAY;
    const retryAt = failedAt + MINUTE;
    const failedMachine = (commands: KeySetCommand[] = []) => {
      const machine = machineWith({ commands });
      machine.failed('generateNext', 'connection refused', failedAt);
      return machine;
    };

    test('scheduled work waits for the backoff, then reloads the keys', () => {
      const machine = failedMachine();
      expect(machine.nextStep(failedAt)).toEqual({ type: 'wait', until: retryAt });
      expect(machine.nextStep(retryAt - 1)).toEqual({ type: 'wait', until: retryAt });
      expect(machine.nextStep(retryAt)).toEqual({ type: 'load' });
    });

    test("a signal's command waits for the backoff too", () => {
      const machine = failedMachine([signalRotate]);
      expect(machine.nextStep(failedAt)).toEqual({ type: 'wait', until: retryAt });
      expect(machine.nextStep(retryAt)).toEqual({ type: 'load' });
      machine.loaded([{ ...activeKey }]);
      machine.succeeded();
      expect(machine.nextStep(retryAt)).toEqual({ type: 'command', command: signalRotate });
    });

    test.each([
      ['an Update-originated rotation', updateRotate],
      ['a revocation', revoke],
    ])('%s ignores the backoff: load, then run it', (_, command) => {
      const machine = failedMachine([signalRotate, command]);
      expect(machine.nextStep(failedAt)).toEqual({ type: 'load' });
      // Loaded (without a success being recorded yet): the urgent command still skips the backoff.
      machine.loaded([{ ...activeKey }]);
      expect(machine.nextStep(failedAt)).toEqual({ type: 'command', command });
    });

    test('a loaded machine still backing off holds a due transition until retryAt', () => {
      const machine = machineWith({ keys: [], retryAt });
      expect(machine.nextStep(failedAt)).toEqual({ type: 'wait', until: retryAt });
      expect(machine.nextStep(retryAt)).toEqual({ type: 'transition', transition: { kind: 'bootstrap', at: retryAt } });
    });
  });
});

describe('failed / succeeded', () => {
  test('backoff doubles from 1 minute and is capped at 1 hour', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 20].map(failureBackoffMs)).toEqual(
      [1, 2, 4, 8, 16, 32, 60, 60, 60].map((m) => m * MINUTE),
    );
  });

  test('each consecutive failure is counted, backs off longer, and marks the keys unloaded', () => {
    const machine = machineWith();
    const backoffs: number[] = [];
    for (let i = 1; i <= 8; i++) {
      const now = T0 + i * DAY;
      const lastError = machine.failed('promote', `boom ${i}`, now);
      expect(lastError).toEqual({ step: 'promote', message: `boom ${i}`, at: now, failures: i });
      expect(machine.state).toMatchObject({ loaded: false, lastError });
      backoffs.push((machine.state.retryAt! - now) / MINUTE);
    }
    expect(backoffs).toEqual([1, 2, 4, 8, 16, 32, 60, 60]);
  });

  test('succeeded returns the error it recovers from and clears it; the count starts again', () => {
    const machine = machineWith();
    machine.failed('load', 'down', T0);
    const second = machine.failed('load', 'still down', T0 + MINUTE);
    expect(machine.succeeded()).toEqual(second);
    expect(machine.state).toMatchObject({ lastError: null, retryAt: null });
    expect(machine.succeeded()).toBeNull();
    expect(machine.failed('retire', 'down again', T0 + DAY)).toMatchObject({ failures: 1 });
    expect(machine.state.retryAt).toBe(T0 + DAY + MINUTE);
  });
});

describe('the propagation gate', () => {
  test('asks quickly at first, then about a tenth of the time waited, at most hourly', () => {
    expect([1, 2, 3, 4, 5, 6].map((checks) => publicationCheckDelayMs(checks, 0))).toEqual([
      100, 200, 400, 800, 1_000, 1_000,
    ]);
    expect(publicationCheckDelayMs(12, 30 * MINUTE)).toBe(3 * MINUTE);
    expect(publicationCheckDelayMs(12, 10 * HOUR)).toBe(HOUR);
    expect(publicationCheckDelayMs(40, 10 * DAY)).toBe(HOUR);
  });

  test('a key not listed yet is checked again later; the wait alerts once it holds up the promotion', () => {
    const machine = machineWith({ keys: [{ ...activeKey }, { ...nextKey }] });
    expect(machine.nextStep(T0 + 25 * DAY)).toEqual({
      type: 'transition',
      transition: { kind: 'checkPublication', kid: 'n', at: T0 + 25 * DAY },
    });
    const wait = machine.publicationPending(nextKey, T0 + 25 * DAY);
    expect(wait).toEqual({
      kid: 'n',
      since: T0 + 25 * DAY,
      checks: 1,
      nextCheckAt: T0 + 25 * DAY + 100,
      alertAt: T0 + 30 * DAY,
    });
    // Generated late, the key is due at once: the alert comes jwksMaxAge into the wait.
    const late = { ...nextKey, createdAt: T0 + 40 * DAY };
    expect(machineWith({ keys: [{ ...activeKey }, late] }).publicationPending(late, T0 + 40 * DAY).alertAt).toBe(
      T0 + 40 * DAY + 15 * MINUTE,
    );
    expect(machine.nextStep(T0 + 25 * DAY)).toEqual({ type: 'wait', until: T0 + 25 * DAY + 100 });
    machine.publicationAlerted(T0 + 26 * DAY);
    expect(machine.publicationPending(nextKey, T0 + 25 * DAY + 100)).toMatchObject({
      checks: 2,
      alertAt: T0 + 26 * DAY,
    });
  });

  test('once listed it is promoted at the period end; meanwhile grace keys retire on time', () => {
    const grace: KeyTimeline = {
      kid: 'g',
      alg: 'ES256',
      state: 'grace',
      createdAt: 0,
      activatedAt: 0,
      demotedAt: T0,
      graceEndsAt: T0 + 5 * DAY,
    };
    const machine = machineWith({ keys: [grace, { ...activeKey }, { ...nextKey }] });
    machine.publicationPending(nextKey, T0 + 1 * DAY);
    expect(machine.nextStep(T0 + 5 * DAY)).toEqual({
      type: 'transition',
      transition: { kind: 'checkPublication', kid: 'n', at: T0 + DAY + 100 },
    });
    machine.keyListed({ ...listedKey });
    expect(machine.state.publication).toBeNull();
    expect(machine.nextStep(T0 + 5 * DAY)).toEqual({
      type: 'transition',
      transition: { kind: 'retire', kid: 'g', at: T0 + 5 * DAY },
    });
  });

  test('a next key promoted, revoked or withdrawn ends the wait', () => {
    for (const end of [
      (m: KeySetMachine) => m.keyRemoved('n'),
      (m: KeySetMachine) => m.keyWithdrawn({ ...nextKey, state: 'retired', retiredAt: T0 }),
    ]) {
      const machine = machineWith({ keys: [{ ...activeKey }, { ...nextKey }] });
      machine.publicationPending(nextKey, T0 + 25 * DAY);
      end(machine);
      expect(machine.state.publication).toBeNull();
    }
  });
});

describe('assertRevocable', () => {
  test('returns a live key of the set', () => {
    expect(
      machineWith({ keys: [{ ...activeKey }, { ...nextKey }] }).assertRevocable({ kid: 'n', reason: 'leaked' }),
    ).toEqual(nextKey);
  });

  test('rejects a kid the set does not have', () => {
    expect(() => machineWith().assertRevocable({ kid: 'nope', reason: 'leaked' })).toThrow(
      expect.objectContaining({ code: 'ERR_KID_UNKNOWN', kid: 'nope', keySetId: 'payments' }),
    );
  });

  test.each([undefined, '', '   '])('rejects a missing reason (%p)', (reason) => {
    expect(() => machineWith().assertRevocable({ kid: 'a', reason: reason as string })).toThrow(
      expect.objectContaining({ code: 'ERR_REASON_REQUIRED', field: 'reason', keySetId: 'payments' }),
    );
  });
});

describe('policyWith / policyChanged', () => {
  test('a bad patch throws a PolicyError and changes nothing', () => {
    const machine = machineWith();
    const revision = machine.revision;
    expect(() => machine.policyWith({ gracePeriod: '1m', algorithm: 'HS256' as 'ES256' })).toThrow(
      expect.objectContaining({
        code: 'ERR_POLICY_INVALID',
        keySetId: 'payments',
        violations: [
          expect.objectContaining({ field: 'algorithm' }),
          expect.objectContaining({ field: 'gracePeriod' }),
        ],
      }),
    );
    expect(machine.policy).toEqual(DEFAULT_POLICY);
    expect(machine.revision).toBe(revision);
  });

  test('a good patch is merged over the current policy; only policyChanged puts it in force', () => {
    const machine = machineWith({
      policy: { ...DEFAULT_POLICY, algorithm: 'EdDSA' },
      keys: [{ ...activeKey, alg: 'EdDSA' }],
    });
    const policy = machine.policyWith({ rotationPeriod: '1440h' });
    expect(policy).toEqual({ ...DEFAULT_POLICY, algorithm: 'EdDSA', rotationPeriod: '60d' });
    expect(machine.policy.rotationPeriod).toBe('30d');
    machine.policyChanged(policy, machine.state.keys, T0);
    expect(machine.policy).toEqual(policy);
    // The new rotation period reschedules the next key.
    expect(machine.nextStep(T0)).toEqual({ type: 'wait', until: T0 + 55 * DAY });
  });

  test('a lower jwksMaxAge keeps older caches in mind: no key listed before they expire signs before then', () => {
    const machine = machineWith();
    machine.policyChanged({ ...DEFAULT_POLICY, jwksMaxAge: '1m', prepublish: '1d' }, machine.state.keys, T0 + 20 * DAY);
    expect(machine.staleCachesUntil).toBe(T0 + 20 * DAY + 15 * MINUTE);
    machine.policyChanged({ ...DEFAULT_POLICY, jwksMaxAge: '5m', prepublish: '1d' }, machine.state.keys, T0 + 21 * DAY);
    expect(machine.staleCachesUntil).toBe(T0 + 20 * DAY + 15 * MINUTE);
  });
});

describe('revision', () => {
  test.each<[string, (m: KeySetMachine) => void]>([
    ['enqueue', (m) => m.enqueue(signalRotate)],
    ['complete', (m) => m.complete('c-revoke')],
    ['paused', (m) => m.paused({ reason: 'why', since: T0, requestedBy: 'ops' })],
    ['resumed', (m) => m.resumed()],
    ['policyChanged', (m) => m.policyChanged({ ...DEFAULT_POLICY, algorithm: 'RS256' }, m.state.keys, T0)],
    ['loaded', (m) => m.loaded([])],
    ['keyGenerated', (m) => m.keyGenerated({ ...nextKey, kid: 'n2' })],
    ['keyListed', (m) => m.keyListed({ ...listedKey })],
    ['keyPromoted', (m) => m.keyPromoted({ active: { ...nextKey, state: 'active', activatedAt: T0 }, demoted: null })],
    ['keyRetired', (m) => m.keyRetired({ ...activeKey, state: 'retired', retiredAt: T0 })],
    ['keyRemoved', (m) => m.keyRemoved('a')],
    [
      'rotationRequested',
      (m) => m.rotationRequested({ requestedAt: T0, requestedBy: 'ops', reason: 'r', immediately: false }),
    ],
    ['failed', (m) => m.failed('load', 'down', T0)],
  ])('%s bumps it', (_, change) => {
    const machine = machineWith({ keys: [{ ...activeKey }, { ...nextKey }], commands: [revoke] });
    const before = machine.revision;
    change(machine);
    expect(machine.revision).toBeGreaterThan(before);
  });
});

describe('key events', () => {
  test('a promotion activates the next key, puts the active one in grace until its recorded end, and ends a rotation asked for', () => {
    const machine = machineWith({ keys: [{ ...activeKey }, { ...listedKey }] });
    machine.rotationRequested({ requestedAt: T0 + 26 * DAY, requestedBy: 'ops', reason: 'r', immediately: false });
    const promoted: KeyTimeline = { ...listedKey, state: 'active', activatedAt: T0 + 30 * DAY, tokenTtlMs: HOUR };
    const demoted: KeyTimeline = { ...activeKey, state: 'grace', demotedAt: T0 + 30 * DAY, graceEndsAt: T0 + 35 * DAY };
    machine.keyPromoted({ active: promoted, demoted });
    expect(machine.state.rotation).toBeNull();
    expect(machine.key('active')).toEqual(promoted);
    expect(machine.key('grace')).toEqual(demoted);
    expect(machine.nextStep(T0 + 30 * DAY)).toEqual({ type: 'wait', until: T0 + 35 * DAY });
    machine.keyRetired({ ...demoted, state: 'retired', retiredAt: T0 + 35 * DAY });
    expect(machine.nextStep(T0 + 35 * DAY)).toEqual({ type: 'wait', until: T0 + 36 * DAY });
    machine.keyRemoved('a');
    expect(machine.state.keys.map((k) => k.kid)).toEqual(['n']);
  });

  test('signsAt: the recorded promotableAt, else the soonest its listing could make it', () => {
    const machine = machineWith({ keys: [{ ...activeKey }, { ...nextKey }] });
    expect(machine.signsAt(nextKey, T0 + 25 * DAY)).toBe(T0 + 25 * DAY + 15 * MINUTE);
    expect(machine.signsAt(listedKey, T0 + 26 * DAY)).toBe(T0 + 26 * DAY);
    expect(machine.signsAt({ ...nextKey, alg: 'RS256' }, T0 + 25 * DAY)).toBe(T0 + 30 * DAY);
  });
});

describe('status', () => {
  test('reports the next transition, no earlier than the backoff, and none while paused', () => {
    const machine = machineWith({ keys: [], retryAt: T0 + MINUTE, commands: [signalRotate] });
    expect(machine.status(T0)).toMatchObject({
      nextTransition: { kind: 'bootstrap', at: T0 + MINUTE },
      pendingCommands: 1,
      inFlight: null,
    });
    machine.paused({ reason: 'why', since: T0, requestedBy: 'ops' });
    expect(machine.status(T0)).toMatchObject({ nextTransition: null, paused: { reason: 'why', since: T0 } });
  });
});

describe('continue-as-new', () => {
  test('the state survives JSON and a machine built from it answers the same', () => {
    const grace: KeyTimeline = {
      kid: 'g',
      alg: 'ES256',
      state: 'grace',
      createdAt: 0,
      activatedAt: 0,
      demotedAt: T0,
      graceEndsAt: T0 + 5 * DAY,
    };
    const machine = machineWith({ keys: [{ ...activeKey }, { ...nextKey }, grace] });
    machine.enqueue(signalRotate);
    machine.enqueue(revoke);
    machine.publicationPending(nextKey, T0 + 25 * DAY);
    machine.paused({ reason: 'freeze', since: T0 + DAY, requestedBy: 'ops' });
    machine.failed('retire', 'down', T0 + 2 * DAY);
    machine.failed('retire', 'down', T0 + 3 * DAY);

    const carried: KeySetState = JSON.parse(JSON.stringify(machine.state));
    expect(carried).toEqual(machine.state);
    const resumed = new KeySetMachine(carried);
    for (const now of [T0, T0 + 3 * DAY, T0 + 3 * DAY + 2 * MINUTE, T0 + 40 * DAY]) {
      expect(resumed.nextStep(now)).toEqual(machine.nextStep(now));
      expect(resumed.status(now)).toEqual(machine.status(now));
    }
    // And it goes on counting failures where the old run stopped.
    expect(resumed.failed('retire', 'down', T0 + 4 * DAY).failures).toBe(3);
  });
});
