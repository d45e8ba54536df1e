import type { WorkflowHandle } from '@temporalio/client';
import type { KeySetStatus } from '../../src/domain/key-set-state';
import type { KeyTimeline } from '../../src/domain/lifecycle';
import { DEFAULT_POLICY, type PolicyPatch } from '../../src/domain/policy';
import { readAuditTrail } from '../../src/store/audit-log';
import { keySetWorkflow } from '../../src/workflows';
import { getStateQuery, updatePolicyUpdate } from '../../src/workflows/messages';
import { createKeySetWorker, randomKekRing, settled, uniqueNames } from '../helpers/key-set-worker';
import { historyNameOfTest, recordHistory } from '../helpers/history';
import { useTimeSkippingSuite } from '../helpers/time-skipping-suite';
import { listKeys } from '../../src/store/stored-keys';
import { listPublishedJwks } from '../../src/store/published-keys';
import { getPolicy } from '../../src/store/key-set-registry';

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;

// A policy change never shortens a window a key already relies on, whatever state the key is in.
describe('windows under policy changes', () => {
  const suite = useTimeSkippingSuite();
  const kekRing = randomKekRing();

  /** Starts a key set under the seed policy and runs `body` once its first key signs; times are from that key's activation. */
  async function withKeySet(
    body: (handle: WorkflowHandle<typeof keySetWorkflow>, keySetId: string, t0: number) => Promise<void>,
  ) {
    const { env, db, bundle } = suite;
    const { keySetId, taskQueue, workflowId } = uniqueNames('windows');
    const worker = await createKeySetWorker({ env, db, bundle, kekRing, taskQueue });
    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(keySetWorkflow, {
        workflowId,
        taskQueue,
        args: [{ keySetId, policy: { ...DEFAULT_POLICY } }],
      });
      try {
        const first = await settled(env, handle);
        await body(handle, keySetId, first.keys[0].activatedAt!);
        await recordHistory(handle, historyNameOfTest());
      } finally {
        await handle.terminate('test finished');
      }
    });
  }

  const sleepUntil = async (at: number) => suite.env.sleep(Math.max(at - (await suite.env.currentTimeMs()), 1));
  const update = (handle: WorkflowHandle, patch: PolicyPatch) =>
    handle.executeUpdate(updatePolicyUpdate, { args: [{ patch, requestedBy: 'test' }] });
  const key = (status: KeySetStatus, state: KeyTimeline['state']) => status.keys.find((k) => k.state === state)!;

  test('a key in grace keeps the grace it was demoted under; a longer grace period lengthens it', async () => {
    await withKeySet(async (handle, keySetId, t0) => {
      await sleepUntil(t0 + 31 * DAY);
      const demoted = key(await settled(suite.env, handle), 'grace');
      expect(demoted.graceEndsAt).toBe(demoted.demotedAt! + 5 * DAY);

      await update(handle, { gracePeriod: '2h' });
      expect(key(await handle.query(getStateQuery), 'grace').graceEndsAt).toBe(demoted.graceEndsAt);
      await sleepUntil(demoted.demotedAt! + 4 * DAY);
      expect(key(await settled(suite.env, handle), 'grace').kid).toBe(demoted.kid);

      await update(handle, { gracePeriod: '6d' });
      expect(key(await handle.query(getStateQuery), 'grace').graceEndsAt).toBe(demoted.demotedAt! + 6 * DAY);
      const stored = (await listKeys(suite.db.pool, keySetId)).find((k) => k.kid === demoted.kid)!;
      expect(stored.graceEndsAt).toBe(demoted.demotedAt! + 6 * DAY);
      await sleepUntil(demoted.demotedAt! + 6 * DAY + HOUR);
      const after = await settled(suite.env, handle);
      expect(after.keys.find((k) => k.kid === demoted.kid)).toMatchObject({ state: 'retired' });
      expect(after.keys.find((k) => k.kid === demoted.kid)!.retiredAt).toBeGreaterThanOrEqual(
        demoted.demotedAt! + 6 * DAY,
      );
    });
  });

  test('tokens signed under a longer maxTokenTtl stay verifiable after it is lowered', async () => {
    await withKeySet(async (handle, _keySetId, t0) => {
      await sleepUntil(t0 + 10 * DAY);
      // The active key may have signed 1-hour tokens until now.
      await update(handle, { maxTokenTtl: '10m', gracePeriod: '20m' });
      await sleepUntil(t0 + 30 * DAY + 10 * MINUTE);
      const demoted = key(await settled(suite.env, handle), 'grace');
      expect(demoted.tokenTtlMs).toBe(HOUR);
      expect(demoted.graceEndsAt! - demoted.demotedAt!).toBe(HOUR + 30_000);
      // The key that signs now was promoted under the new policy: its own tokens live 10 minutes.
      expect(key(await handle.query(getStateQuery), 'active').tokenTtlMs).toBe(10 * MINUTE);
    });
  });

  test('a longer jwksMaxAge delays the promotion until the next key has been listed that long', async () => {
    await withKeySet(async (handle, _keySetId, t0) => {
      await sleepUntil(t0 + 29 * DAY);
      const next = key(await settled(suite.env, handle), 'next');
      expect(next.promotableAt).toBe(next.listedAt! + 15 * MINUTE);

      await update(handle, { jwksMaxAge: '6d', prepublish: '6d' });
      const waiting = await handle.query(getStateQuery);
      expect(key(waiting, 'next').promotableAt).toBe(next.listedAt! + 6 * DAY);
      expect(waiting.nextTransition).toEqual({ kind: 'promote', kid: next.kid, at: next.listedAt! + 6 * DAY });
      await sleepUntil(t0 + 30 * DAY + HOUR);
      expect(key(await settled(suite.env, handle), 'next').kid).toBe(next.kid);
      await sleepUntil(next.listedAt! + 6 * DAY + HOUR);
      expect(key(await settled(suite.env, handle), 'active').kid).toBe(next.kid);
    });
  });

  test('a new algorithm replaces a next key already published, which then waits prepublish before it signs', async () => {
    await withKeySet(async (handle, keySetId, t0) => {
      await sleepUntil(t0 + 26 * DAY);
      const old = key(await settled(suite.env, handle), 'next');
      expect(old.alg).toBe('ES256');

      await update(handle, { algorithm: 'RS256' });
      const replaced = await settled(suite.env, handle);
      const next = key(replaced, 'next');
      expect(next.alg).toBe('RS256');
      expect(replaced.keys.find((k) => k.kid === old.kid)).toMatchObject({ state: 'retired' });
      // Verifiers see both algorithms: the ES256 active key and the RS256 next key are published together.
      const published = await listPublishedJwks(suite.db.pool, keySetId);
      expect(published.map((k) => k.alg).sort()).toEqual(['ES256', 'RS256']);
      expect(next.promotableAt).toBe(next.listedAt! + 5 * DAY);
      // The ES256 key signs on past its period's end (day 30) until the RS256 key has been published prepublish.
      await sleepUntil(t0 + 30 * DAY + HOUR);
      expect(key(await settled(suite.env, handle), 'active').alg).toBe('ES256');
      await sleepUntil(next.promotableAt! + HOUR);
      const rotated = await settled(suite.env, handle);
      expect(key(rotated, 'active')).toMatchObject({ kid: next.kid, alg: 'RS256' });
      expect(key(rotated, 'grace').alg).toBe('ES256');
      const withdrawn = (await readAuditTrail(suite.db.pool, keySetId)).find((e) => e.event === 'withdrawn')!;
      expect(withdrawn).toMatchObject({ kid: old.kid, fromState: 'next', toState: 'retired' });
    });
  });

  test('two policy updates at once: both apply in order, the later wins, and PostgreSQL agrees with the workflow', async () => {
    await withKeySet(async (handle, keySetId) => {
      const results = await Promise.all([
        update(handle, { rotationPeriod: '20d', issuer: 'https://a.example' }),
        update(handle, { rotationPeriod: '10d', retirement: '2d' }),
      ]);
      // One was applied first, to the seed policy; the other to the result of the first.
      const [firstApplied, secondApplied] =
        results[0].previous.rotationPeriod === '30d' ? results : [results[1], results[0]];
      expect(secondApplied.previous).toEqual(firstApplied.policy);
      const status = await handle.query(getStateQuery);
      // Nothing lost: each update's own fields are in force; on the field both set, the one applied last.
      expect(status.policy).toMatchObject({ issuer: 'https://a.example', retirement: '2d' });
      expect(status.policy).toEqual(secondApplied.policy);
      expect(await getPolicy(suite.db.pool, keySetId)).toEqual(status.policy);
      const changes = (await readAuditTrail(suite.db.pool, keySetId)).filter((e) => e.event === 'policy_changed');
      expect(changes).toHaveLength(2);
      expect(changes.at(-1)!.details.policy).toEqual(status.policy);
    });
  });

  test('an update can remove publishedAt and issuer', async () => {
    await withKeySet(async (handle, keySetId) => {
      await update(handle, { issuer: 'https://login.example', publishedAt: ['https://cdn.example/jwks.json'] });
      const result = await update(handle, { issuer: null, publishedAt: null });
      expect(result.policy).toEqual(DEFAULT_POLICY);
      expect(result.changed.sort()).toEqual(['issuer', 'publishedAt']);
      expect(await getPolicy(suite.db.pool, keySetId)).toEqual(DEFAULT_POLICY);
    });
  });
});
