import { WorkflowUpdateFailedError, type WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker, WorkflowBundleWithSourceMap } from '@temporalio/worker';
import type { KekRing } from '../../src/crypto/kek';
import type { CustodyRegistry } from '../../src/custody/custody-registry';
import type { SigningAlgorithm } from '../../src/domain/algorithms';
import type { CustodySettings } from '../../src/domain/custody-settings';
import type { KeySetStatus } from '../../src/domain/key-set-state';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { readAuditTrail } from '../../src/store/audit-log';
import { KeyStore } from '../../src/store/key-store';
import { keySetWorkflow } from '../../src/workflows';
import {
  decommissionUpdate,
  getStateQuery,
  recommissionUpdate,
  pauseSignal,
  requestRotationSignal,
  resumeSignal,
  revokeKeyUpdate,
  rotateUpdate,
  updatePolicyUpdate,
} from '../../src/workflows/messages';
import { bundleWorkflows, createKeySetWorker, randomKekRing, settled, uniqueNames } from '../helpers/key-set-worker';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { createTimeSkippingEnv } from '../helpers/temporal-env';
import { historyNameOfTest, recordHistory } from '../helpers/history';
import { CUSTODY_BACKENDS_UNDER_TEST, useCustodyBackends } from '../helpers/custody';
import { listKeys } from '../../src/store/stored-keys';
import { listPublishedJwks } from '../../src/store/published-keys';

const MINUTE = 60_000;
const DAY = 86_400_000;

const custodyOf = useCustodyBackends();
let env: TestWorkflowEnvironment;
let db: TestDatabase;
let bundle: WorkflowBundleWithSourceMap;
let kekRing: KekRing;
let keyStore: KeyStore;

beforeAll(async () => {
  [env, db, bundle] = await Promise.all([createTimeSkippingEnv(), createTestDatabase(), bundleWorkflows()]);
  kekRing = randomKekRing();
  keyStore = new KeyStore(db.pool, kekRing);
});
afterAll(async () => {
  await env?.teardown();
  await db?.drop();
});

/** Starts a key set under the seed policy, waits for its first active key, and runs `body` with a worker. */
async function withKeySet(
  body: (handle: WorkflowHandle<typeof keySetWorkflow>, keySetId: string, first: KeySetStatus) => Promise<void>,
  custody?: { settings: CustodySettings | undefined; registry: CustodyRegistry },
) {
  const { keySetId, taskQueue, workflowId } = uniqueNames('msg');
  const worker: Worker = await createKeySetWorker({ env, db, bundle, kekRing, taskQueue, custody: custody?.registry });
  await worker.runUntil(async () => {
    const handle = await env.client.workflow.start(keySetWorkflow, {
      workflowId,
      taskQueue,
      args: [{ keySetId, policy: { ...DEFAULT_POLICY, ...(custody?.settings && { custody: custody.settings }) } }],
    });
    try {
      await body(handle, keySetId, await settled(env, handle));
      await recordHistory(handle, historyNameOfTest());
    } finally {
      // A timer firing for a workflow whose worker is gone would stop the test server's clock.
      if ((await handle.describe()).status.name === 'RUNNING') await handle.terminate('test finished');
    }
  });
}

const activeKid = (status: KeySetStatus) => status.keys.find((k) => k.state === 'active')?.kid;

async function statesInDb(keySetId: string): Promise<Record<string, string>> {
  return Object.fromEntries((await listKeys(keyStore.pool, keySetId)).map((k) => [k.kid, k.state]));
}

async function expectUpdateRejected(update: Promise<unknown>, type: string): Promise<ApplicationFailure> {
  const error = await update.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(WorkflowUpdateFailedError);
  const cause = (error as WorkflowUpdateFailedError).cause;
  expect(cause).toBeInstanceOf(ApplicationFailure);
  expect((cause as ApplicationFailure).type).toBe(type);
  return cause as ApplicationFailure;
}

describe('operator messages', () => {
  test('a rotation signal publishes a new key, promotes it once verifiers can have cached it, and records who asked', async () => {
    await withKeySet(async (handle, keySetId, first) => {
      const before = activeKid(first)!;
      await handle.signal(requestRotationSignal, { reason: 'drill', requestedBy: 'alice' });
      // A second request while the first is pending joins it.
      await handle.signal(requestRotationSignal, { reason: 'drill again', requestedBy: 'bob' });
      const pending = await settled(env, handle);
      const next = pending.keys.find((k) => k.state === 'next')!;
      expect(activeKid(pending)).toBe(before);
      expect(pending.rotation).toMatchObject({ requestedBy: 'alice', reason: 'drill' });
      expect(pending.nextTransition).toEqual({ kind: 'promote', kid: next.kid, at: next.promotableAt });
      expect(next.promotableAt! - next.listedAt!).toBe(15 * MINUTE);

      await env.sleep(16 * MINUTE);
      const status = await settled(env, handle);
      expect(activeKid(status)).toBe(next.kid);
      expect(status.rotation).toBeNull();
      expect(await statesInDb(keySetId)).toEqual({ [before]: 'grace', [next.kid]: 'active' });
      const trail = (await readAuditTrail(db.pool, keySetId)).filter(
        (e) => e.kid === next.kid || e.event === 'rotation_requested',
      );
      expect(trail.map((e) => [e.event, e.trigger, e.actor, e.reason])).toEqual([
        ['rotation_requested', 'manual', 'alice', 'drill'],
        ['generated', 'manual', 'alice', 'drill'],
        ['published', 'manual', 'alice', 'drill'],
        ['promoted', 'manual', 'alice', 'drill'],
      ]);
      const promoted = trail.at(-1)!;
      expect(promoted.at).toBeGreaterThanOrEqual(trail[2].at + 15 * MINUTE);
    });
  });

  test('a rotate Update promotes at once a next key already cached everywhere, and answers with it', async () => {
    await withKeySet(async (handle, keySetId, first) => {
      const before = activeKid(first)!;
      await env.sleep(26 * DAY); // the next key is published on day 25
      const published = (await settled(env, handle)).keys.find((k) => k.state === 'next')!.kid;

      const result = await handle.executeUpdate(rotateUpdate, { args: [{ reason: 'suspected leak' }] });

      expect(result).toEqual({ kid: published, signsAt: expect.any(Number), active: true, previousKid: before });
      expect(activeKid(await handle.query(getStateQuery))).toBe(published);
      expect(await statesInDb(keySetId)).toEqual({ [before]: 'grace', [published]: 'active' });
    });
  });

  test('a rotate Update with no next key answers with the new key and when it signs; repeated, it joins the pending one', async () => {
    await withKeySet(async (handle, keySetId, first) => {
      const [a, b] = await Promise.all([
        handle.executeUpdate(rotateUpdate, { args: [{ reason: 'first', requestedBy: 'alice' }] }),
        handle.executeUpdate(rotateUpdate, { args: [{ reason: 'second', requestedBy: 'bob' }] }),
      ]);
      expect(a).toEqual({
        kid: expect.any(String),
        signsAt: expect.any(Number),
        active: false,
        previousKid: activeKid(first),
      });
      expect(b).toEqual(a);
      const next = (await handle.query(getStateQuery)).keys.find((k) => k.state === 'next')!;
      expect(next.kid).toBe(a.kid);
      expect(a.signsAt).toBe(next.promotableAt);
      const events = (await readAuditTrail(db.pool, keySetId)).map((e) => e.event);
      expect(events.filter((e) => e === 'rotation_requested')).toHaveLength(1);
      expect(events.filter((e) => e === 'generated')).toHaveLength(2); // the first key and this one
    });
  });

  test('rotate immediately promotes at once and says until when verifiers may reject the new key', async () => {
    await withKeySet(async (handle, keySetId, first) => {
      const result = await handle.executeUpdate(rotateUpdate, {
        args: [{ reason: 'active key must stop now', immediately: true }],
      });
      expect(result).toMatchObject({ active: true, previousKid: activeKid(first) });
      expect(result.rejectionWindowUntil! - result.signsAt).toBeGreaterThan(14 * MINUTE);
      expect(activeKid(await handle.query(getStateQuery))).toBe(result.kid);
      const requested = (await readAuditTrail(db.pool, keySetId)).find((e) => e.event === 'rotation_requested')!;
      expect(requested.details).toEqual({ immediately: true });
    });
  });

  test('pause stops scheduled transitions and resume catches up', async () => {
    await withKeySet(async (handle, keySetId, first) => {
      const original = activeKid(first)!;
      await handle.signal(pauseSignal, { reason: 'change freeze', requestedBy: 'carol' });
      await env.sleep(40 * DAY);

      const paused = await settled(env, handle);
      expect(paused.paused?.reason).toBe('change freeze');
      expect(paused.nextTransition).toBeNull();
      expect(await statesInDb(keySetId)).toEqual({ [original]: 'active' });

      await handle.signal(resumeSignal);
      // Overdue: the next key is generated at once and promoted once verifiers' caches (15m) hold it.
      let resumed = await settled(env, handle);
      for (let i = 0; resumed.paused !== null && i < 100; i++) resumed = await settled(env, handle);
      expect(resumed.nextTransition?.kind).toBe('promote');
      await env.sleep(16 * 60_000);
      const caughtUp = await settled(env, handle);
      expect(activeKid(caughtUp)).not.toBe(original);
      expect(caughtUp.keys.find((k) => k.kid === original)?.state).toBe('grace');
      const actions = (await readAuditTrail(db.pool, keySetId)).filter(
        (e) => e.event === 'paused' || e.event === 'resumed',
      );
      expect(actions.map((e) => [e.event, e.actor, e.reason])).toEqual([
        ['paused', 'carol', 'change freeze'],
        ['resumed', 'operator', 'resumed'],
      ]);
    });
  });

  test('a policy update is validated: a bad one is rejected whole, a good one reschedules', async () => {
    await withKeySet(async (handle, keySetId, first) => {
      const rejected = await expectUpdateRejected(
        handle.executeUpdate(updatePolicyUpdate, { args: [{ patch: { gracePeriod: '30m', rotationPeriod: '7d' } }] }),
        'ERR_POLICY_INVALID',
      );
      expect(rejected.message).toMatch(/gracePeriod: 30m is shorter than maxTokenTtl 1h plus clockSkew 30s/);
      expect((await handle.query(getStateQuery)).policy).toEqual(DEFAULT_POLICY);
      const stored = await db.pool.query('SELECT policy FROM key_sets WHERE id = $1', [keySetId]);
      expect(stored.rows[0].policy).toEqual(DEFAULT_POLICY);

      const result = await handle.executeUpdate(updatePolicyUpdate, {
        args: [{ patch: { rotationPeriod: '240h' }, requestedBy: 'dana', reason: 'shorter' }],
      });
      expect(result).toEqual({
        policy: { ...DEFAULT_POLICY, rotationPeriod: '10d' },
        previous: DEFAULT_POLICY,
        changed: ['rotationPeriod'],
      });
      const status = await settled(env, handle);
      expect(status.nextTransition).toEqual({ kind: 'generateNext', at: first.keys[0].activatedAt! + 5 * DAY });
      const changes = (await readAuditTrail(db.pool, keySetId)).filter((e) => e.event === 'policy_changed');
      expect(changes.map((e) => [e.actor, e.reason, e.details.fields])).toEqual([
        ['dana', 'shorter', ['rotationPeriod']],
      ]);
    });
  });

  test('decommissioning winds the key set down: no key cut short, then the workflow completes', async () => {
    await withKeySet(async (handle, keySetId, first) => {
      await env.sleep(26 * DAY); // a next key is published too
      const before = await settled(env, handle);
      const [active, next] = [
        before.keys.find((k) => k.state === 'active')!,
        before.keys.find((k) => k.state === 'next')!,
      ];

      await handle.executeUpdate(decommissionUpdate, { args: [{ reason: 'issuer retired', requestedBy: 'dana' }] });

      const windingDown = await settled(env, handle);
      expect(windingDown.decommissioned?.reason).toBe('issuer retired');
      expect(windingDown.keys.map((k) => [k.kid, k.state])).toEqual([
        [active.kid, 'grace'],
        [next.kid, 'grace'],
      ]);
      // Still published: tokens signed before the wind-down verify until their grace period ends.
      expect((await listPublishedJwks(keyStore.pool, keySetId)).map((k) => k.kid).sort()).toEqual(
        [active.kid, next.kid].sort(),
      );
      await expectUpdateRejected(handle.executeUpdate(rotateUpdate, { args: [{}] }), 'ERR_KEYSET_DECOMMISSIONED');

      await env.sleep(7 * DAY); // 5d grace + 1d retirement
      await handle.result();
      expect(Object.values(await statesInDb(keySetId))).toEqual(['destroyed', 'destroyed']);
      const stored = await db.pool.query('SELECT decommissioned_at FROM key_sets WHERE id = $1', [keySetId]);
      expect(stored.rows[0].decommissioned_at).not.toBeNull();
      expect(first.decommissioned).toBeNull();
    });
  });

  test('a key set listed again while it winds down is back in service: a new key signs, the old keys run out as planned', async () => {
    await withKeySet(async (handle, keySetId, first) => {
      await handle.executeUpdate(decommissionUpdate, { args: [{ reason: 'issuer retired', requestedBy: 'dana' }] });
      const windingDown = await settled(env, handle);
      const old = windingDown.keys[0];
      expect(old).toMatchObject({ kid: activeKid(first), state: 'grace' });

      await handle.executeUpdate(recommissionUpdate, { args: [{ reason: 'listed again', requestedBy: 'apply' }] });
      const back = await settled(env, handle);
      expect(back.decommissioned).toBeNull();
      expect(activeKid(back)).toBeDefined();
      expect(back.keys.find((k) => k.kid === old.kid)).toEqual(old);
      const stored = await db.pool.query('SELECT decommissioned_at FROM key_sets WHERE id = $1', [keySetId]);
      expect(stored.rows[0].decommissioned_at).toBeNull();
      const events = (await readAuditTrail(db.pool, keySetId)).map((e) => [e.event, e.actor]);
      expect(events).toEqual(
        expect.arrayContaining([
          ['decommissioned', 'dana'],
          ['recommissioned', 'apply'],
        ]),
      );
    });
  });
});

describe.each(CUSTODY_BACKENDS_UNDER_TEST)('revocation, keys held %s', (backend) => {
  let custody: { settings: CustodySettings | undefined; registry: CustodyRegistry };
  beforeAll(() => {
    const underTest = custodyOf(backend);
    custody = { settings: underTest.settings, registry: underTest.registry(kekRing) };
  });

  /** A revoked key signs no more: sealed, its row lost its private part; in a KMS or on a token, the backend destroyed it. */
  async function expectGoneFromCustody(keySetId: string, kid: string) {
    if (backend === 'sealed') return;
    const { rows } = await db.pool.query<{ custody: CustodySettings; custody_handle: string; alg: SigningAlgorithm }>(
      'SELECT custody, custody_handle, alg FROM signing_keys WHERE key_set_id = $1 AND kid = $2',
      [keySetId, kid],
    );
    const held = { keySetId, kid, alg: rows[0].alg, handle: rows[0].custody_handle };
    const backendOfKey = await custody.registry.get(rows[0].custody);
    await expect((async () => (await backendOfKey.signer(held))(Buffer.from('x')))()).rejects.toMatchObject({
      code: 'ERR_CUSTODY_KEY_MISSING',
    });
    const destroyed = (await readAuditTrail(db.pool, keySetId)).filter((e) => e.event === 'custody_destroyed');
    expect(destroyed.map((e) => [e.kid, e.details])).toEqual([[kid, { custody: backend, handle: held.handle }]]);
  }

  test('revoking the active key takes it out of the JWKS and promotes a replacement at once', async () => {
    await withKeySet(async (handle, keySetId, first) => {
      const revoked = activeKid(first)!;

      const result = await handle.executeUpdate(revokeKeyUpdate, {
        args: [{ kid: revoked, reason: 'key leaked', requestedBy: 'bob' }],
      });

      expect(result.revokedKid).toBe(revoked);
      expect(result.previousState).toBe('active');
      expect(result.activeKid).not.toBe(revoked);
      expect(activeKid(await handle.query(getStateQuery))).toBe(result.activeKid);
      const keys = await listKeys(keyStore.pool, keySetId);
      expect(keys.map((k) => [k.kid, k.state, k.hasPrivateKey])).toEqual([
        [revoked, 'revoked', false],
        [result.activeKid, 'active', true],
      ]);
      expect((await listPublishedJwks(keyStore.pool, keySetId)).map((k) => k.kid)).toEqual([result.activeKid]);
      await expectGoneFromCustody(keySetId, revoked);
      const revocation = (await readAuditTrail(db.pool, keySetId)).find((e) => e.event === 'revoked')!;
      expect([revocation.kid, revocation.fromState, revocation.actor, revocation.reason]).toEqual([
        revoked,
        'active',
        'bob',
        'key leaked',
      ]);
    }, custody);
  });

  test('revoking a grace key leaves the active key alone', async () => {
    await withKeySet(async (handle, keySetId) => {
      const { kid: current, previousKid } = await handle.executeUpdate(rotateUpdate, { args: [{ immediately: true }] });

      const result = await handle.executeUpdate(revokeKeyUpdate, {
        args: [{ kid: previousKid!, reason: 'retire early' }],
      });

      expect(result).toEqual({ revokedKid: previousKid, previousState: 'grace', activeKid: current });
      expect(await statesInDb(keySetId)).toEqual({ [previousKid!]: 'revoked', [current]: 'active' });
    }, custody);
  });

  test('revoking a next key and a retired key: out at once; a new next key is published in its place', async () => {
    await withKeySet(async (handle, keySetId, first) => {
      const { previousKid } = await handle.executeUpdate(rotateUpdate, { args: [{ immediately: true }] });
      await env.sleep(5 * DAY + MINUTE); // the first key retires after its 5 days of grace
      await env.sleep(20 * DAY); // and a next key is published 25 days into the second key's period
      const before = await settled(env, handle);
      const next = before.keys.find((k) => k.state === 'next')!.kid;
      expect(before.keys.find((k) => k.kid === previousKid)).toBeUndefined(); // destroyed a day after retiring

      expect(
        await handle.executeUpdate(revokeKeyUpdate, { args: [{ kid: next, reason: 'generated on a bad host' }] }),
      ).toMatchObject({
        revokedKid: next,
        previousState: 'next',
        activeKid: activeKid(before),
      });
      const after = await settled(env, handle);
      const replacement = after.keys.find((k) => k.state === 'next')!;
      expect(replacement.kid).not.toBe(next);
      expect((await listPublishedJwks(keyStore.pool, keySetId)).map((k) => k.kid).sort()).toEqual(
        [activeKid(before), replacement.kid].sort(),
      );
      expect(first.keys[0].kid).toBe(previousKid);
    }, custody);
  });

  test('revoking a retired key erases its private part at once', async () => {
    await withKeySet(async (handle, keySetId) => {
      const { previousKid } = await handle.executeUpdate(rotateUpdate, { args: [{ immediately: true }] });
      await env.sleep(5 * DAY + MINUTE);
      expect((await settled(env, handle)).keys.find((k) => k.kid === previousKid)?.state).toBe('retired');
      expect(
        await handle.executeUpdate(revokeKeyUpdate, { args: [{ kid: previousKid!, reason: 'backup tape lost' }] }),
      ).toMatchObject({
        revokedKid: previousKid,
        previousState: 'retired',
      });
      expect((await listKeys(keyStore.pool, keySetId)).find((k) => k.kid === previousKid)).toMatchObject({
        state: 'revoked',
        hasPrivateKey: false,
      });
      await expectGoneFromCustody(keySetId, previousKid!);
    }, custody);
  });

  test('revoking an unknown kid, or without a reason, is refused and changes nothing', async () => {
    await withKeySet(async (handle, keySetId, first) => {
      const auditBefore = await readAuditTrail(db.pool, keySetId);

      const unknown = await expectUpdateRejected(
        handle.executeUpdate(revokeKeyUpdate, { args: [{ kid: 'no-such-kid', reason: 'typo' }] }),
        'ERR_KID_UNKNOWN',
      );
      expect(unknown.message).toContain('no-such-kid');
      await expectUpdateRejected(
        handle.executeUpdate(revokeKeyUpdate, { args: [{ kid: activeKid(first)!, reason: ' ' }] }),
        'ERR_REASON_REQUIRED',
      );

      expect((await handle.query(getStateQuery)).keys).toEqual(first.keys);
      expect(await readAuditTrail(db.pool, keySetId)).toEqual(auditBefore);
    }, custody);
  });
});
