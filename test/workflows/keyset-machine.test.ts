import type { KeySetCommand, KeySetState } from '../../src/domain/keyset-state';
import type { KeyTimeline } from '../../src/domain/lifecycle';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { KeySetMachine, failureBackoffMs, initialState } from '../../src/workflows/keyset-machine';

const MINUTE = 60_000;
const DAY = 86_400_000;
const T0 = Date.UTC(2025, 0, 1);

const activeKey: KeyTimeline = { kid: 'a', alg: 'ES256', state: 'active', createdAt: T0, activatedAt: T0 };
const nextKey: KeyTimeline = { kid: 'n', alg: 'ES256', state: 'next', createdAt: T0 + 25 * DAY };

const signalRotate: KeySetCommand = { id: 'c-signal', type: 'rotate', reason: 'r', requestedBy: 'ops', viaSignal: true };
const updateRotate: KeySetCommand = { id: 'c-update', type: 'rotate', reason: 'r', requestedBy: 'ops', viaSignal: false };
const revoke: KeySetCommand = { id: 'c-revoke', type: 'revoke', kid: 'a', reason: 'leaked', requestedBy: 'ops' };

/** A machine whose keys are loaded, optionally with more state. */
function machineWith(state: Partial<KeySetState> = {}): KeySetMachine {
  return new KeySetMachine({ ...initialState('payments', { ...DEFAULT_POLICY }), loaded: true, keys: [{ ...activeKey }], ...state });
}

describe('nextStep', () => {
  test('a new workflow loads its keys first, even with commands queued', () => {
    const machine = new KeySetMachine(initialState('payments', { ...DEFAULT_POLICY }));
    machine.enqueue(revoke);
    expect(machine.nextStep(T0)).toEqual({ type: 'load' });
  });

  test('with no keys, bootstrap is due at once', () => {
    expect(machineWith({ keys: [] }).nextStep(T0)).toEqual({ type: 'transition', transition: { kind: 'bootstrap', at: T0 } });
  });

  test('waits until the next transition, then performs it', () => {
    const machine = machineWith();
    expect(machine.nextStep(T0 + DAY)).toEqual({ type: 'wait', until: T0 + 25 * DAY });
    expect(machine.nextStep(T0 + 25 * DAY)).toEqual({ type: 'transition', transition: { kind: 'generateNext', at: T0 + 25 * DAY } });
  });

  test('commands run before scheduled work, in order, revocations and awaited rotations first', () => {
    const overdue = T0 + 40 * DAY;
    expect(machineWith({ commands: [signalRotate] }).nextStep(overdue)).toEqual({ type: 'command', command: signalRotate });
    expect(machineWith({ commands: [signalRotate, revoke] }).nextStep(overdue)).toEqual({ type: 'command', command: revoke });
    expect(machineWith({ commands: [updateRotate, revoke] }).nextStep(overdue)).toEqual({ type: 'command', command: revoke });
    expect(machineWith({ commands: [signalRotate, updateRotate] }).nextStep(overdue)).toEqual({ type: 'command', command: updateRotate });
  });

  test('paused: no scheduled work and no deadline, but commands still run', () => {
    const machine = machineWith();
    machine.pause('maintenance', T0);
    expect(machine.nextStep(T0 + 40 * DAY)).toEqual({ type: 'wait' });
    machine.enqueue(signalRotate);
    expect(machine.nextStep(T0 + 40 * DAY)).toEqual({ type: 'command', command: signalRotate });
    machine.complete(signalRotate.id);
    machine.resume();
    expect(machine.nextStep(T0 + 40 * DAY)).toMatchObject({ type: 'transition', transition: { kind: 'generateNext' } });
  });

  test('paused before its keys were loaded: it still loads', () => {
    const machine = machineWith({ loaded: false, paused: { reason: 'x', since: T0 } });
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

    test('a signalled rotation waits for the backoff too', () => {
      const machine = failedMachine([signalRotate]);
      expect(machine.nextStep(failedAt)).toEqual({ type: 'wait', until: retryAt });
      expect(machine.nextStep(retryAt)).toEqual({ type: 'load' });
      machine.loaded([{ ...activeKey }]);
      machine.succeeded();
      expect(machine.nextStep(retryAt)).toEqual({ type: 'command', command: signalRotate });
    });

    test.each([
      ['an update-originated rotation', updateRotate],
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

describe('assertRevocable', () => {
  test('returns a live key of the set', () => {
    expect(machineWith({ keys: [{ ...activeKey }, { ...nextKey }] }).assertRevocable({ kid: 'n', reason: 'leaked' })).toEqual(nextKey);
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

describe('policyWith / setPolicy', () => {
  test('a bad patch throws a PolicyError and changes nothing', () => {
    const machine = machineWith();
    const revision = machine.revision;
    expect(() => machine.policyWith({ gracePeriod: '1m', algorithm: 'HS256' })).toThrow(
      expect.objectContaining({
        code: 'ERR_POLICY_INVALID',
        keySetId: 'payments',
        violations: [expect.objectContaining({ field: 'algorithm' }), expect.objectContaining({ field: 'gracePeriod' })],
      }),
    );
    expect(machine.policy).toEqual(DEFAULT_POLICY);
    expect(machine.revision).toBe(revision);
  });

  test('a good patch is merged over the current policy; only setPolicy puts it in force', () => {
    const machine = machineWith({ policy: { ...DEFAULT_POLICY, algorithm: 'EdDSA' } });
    const policy = machine.policyWith({ rotationPeriod: '1440h' });
    expect(policy).toEqual({ ...DEFAULT_POLICY, algorithm: 'EdDSA', rotationPeriod: '60d' });
    expect(machine.policy.rotationPeriod).toBe('30d');
    machine.setPolicy(policy);
    expect(machine.policy).toEqual(policy);
    // The new rotation period reschedules the next key.
    expect(machine.nextStep(T0)).toEqual({ type: 'wait', until: T0 + 55 * DAY });
  });
});

describe('revision', () => {
  test.each<[string, (m: KeySetMachine) => void]>([
    ['enqueue', (m) => m.enqueue(signalRotate)],
    ['complete', (m) => m.complete('c-revoke')],
    ['pause', (m) => m.pause('why', T0)],
    ['resume', (m) => m.resume()],
    ['setPolicy', (m) => m.setPolicy({ ...DEFAULT_POLICY, algorithm: 'RS256' })],
    ['loaded', (m) => m.loaded([])],
    ['keyGenerated', (m) => m.keyGenerated({ ...nextKey })],
    ['keyPromoted', (m) => m.keyPromoted('n', 'a', T0 + 30 * DAY)],
    ['keyRetired', (m) => m.keyRetired('a', T0)],
    ['keyRemoved', (m) => m.keyRemoved('a')],
    ['failed', (m) => m.failed('load', 'down', T0)],
  ])('%s bumps it', (_, change) => {
    const machine = machineWith({ keys: [{ ...activeKey }, { ...nextKey }], commands: [revoke] });
    const before = machine.revision;
    change(machine);
    expect(machine.revision).toBe(before + 1);
  });
});

describe('key events', () => {
  test('a promotion activates the next key and puts the active one in grace', () => {
    const machine = machineWith({ keys: [{ ...activeKey }, { ...nextKey }] });
    machine.keyPromoted('n', 'a', T0 + 30 * DAY);
    expect(machine.key('active')).toEqual({ ...nextKey, state: 'active', activatedAt: T0 + 30 * DAY });
    expect(machine.key('grace')).toEqual({ ...activeKey, state: 'grace', demotedAt: T0 + 30 * DAY });
    expect(machine.nextStep(T0 + 30 * DAY)).toEqual({ type: 'wait', until: T0 + 35 * DAY });
    machine.keyRetired('a', T0 + 35 * DAY);
    expect(machine.nextStep(T0 + 35 * DAY)).toEqual({ type: 'wait', until: T0 + 36 * DAY });
    machine.keyRemoved('a');
    expect(machine.state.keys.map((k) => k.kid)).toEqual(['n']);
  });
});

describe('status', () => {
  test('reports the next transition, no earlier than the backoff, and none while paused', () => {
    const machine = machineWith({ keys: [], retryAt: T0 + MINUTE, commands: [signalRotate] });
    expect(machine.status(T0)).toMatchObject({ nextTransition: { kind: 'bootstrap', at: T0 + MINUTE }, pendingCommands: 1, inFlight: null });
    machine.pause('why', T0);
    expect(machine.status(T0)).toMatchObject({ nextTransition: null, paused: { reason: 'why', since: T0 } });
  });
});

describe('continue-as-new', () => {
  test('the state survives JSON and a machine built from it answers the same', () => {
    const machine = machineWith({ keys: [{ ...activeKey }, { ...nextKey }, { kid: 'g', alg: 'ES256', state: 'grace', createdAt: 0, activatedAt: 0, demotedAt: T0 }] });
    machine.enqueue(signalRotate);
    machine.enqueue(revoke);
    machine.pause('freeze', T0 + DAY);
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

    const plain = machineWith({ keys: [{ ...activeKey }, { ...nextKey }] });
    const resumedPlain = new KeySetMachine(JSON.parse(JSON.stringify(plain.state)));
    for (const now of [T0, T0 + 29 * DAY, T0 + 30 * DAY]) expect(resumedPlain.nextStep(now)).toEqual(plain.nextStep(now));
  });
});
