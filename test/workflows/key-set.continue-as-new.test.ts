import { validatePolicy } from '../../src/domain/policy';
import { readAuditTrail } from '../../src/store/audit-log';
import { keySetWorkflow } from '../../src/workflows';
import { getStateQuery, requestRotationSignal } from '../../src/workflows/messages';
import { historyText, PRIVATE_MEMBER_KEYS, recordHistory } from '../helpers/history';
import { createKeySetWorker, randomKekRing, settled, uniqueNames } from '../helpers/key-set-worker';
import { takeKeyTableOffline } from '../helpers/outage';
import { useTimeSkippingSuite } from '../helpers/time-skipping-suite';

const HOUR = 3_600_000;

describe('continue-as-new', () => {
  const suite = useTimeSkippingSuite();

  test('keeps the keys, the policy and a rotation still waiting to run', async () => {
    const { env, db, bundle } = suite;
    const { keySetId, taskQueue, workflowId } = uniqueNames('can');
    const policy = validatePolicy({
      algorithm: 'EdDSA',
      rotationPeriod: '20d',
      prepublish: '2d',
      gracePeriod: '3d',
      jwksMaxAge: '1h',
    });
    const worker = await createKeySetWorker({ env, db, bundle, kekRing: randomKekRing(), taskQueue });

    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(keySetWorkflow, {
        workflowId,
        taskQueue,
        args: [{ keySetId, policy, maxHistoryEvents: 40 }],
      });
      const first = await settled(env, handle);
      const firstRunId = (await handle.describe()).runId;
      const originalKid = first.keys[0].kid;

      // A signalled rotation that cannot run yet stays queued while the workflow backs off...
      const restore = await takeKeyTableOffline(db.pool);
      await handle.signal(requestRotationSignal, { reason: 'across runs', requestedBy: 'carol' });
      await env.sleep(HOUR);
      const latest = env.client.workflow.getHandle(workflowId);
      expect((await latest.describe()).runId).not.toBe(firstRunId);

      // ...and the new run carries it, with the keys and the policy.
      const carried = await latest.query(getStateQuery);
      expect(carried.pendingCommands).toBe(1);
      expect(carried.policy).toEqual(policy);
      expect(carried.keys).toEqual(first.keys);

      await restore();
      await env.sleep(2 * HOUR);
      const rotated = await settled(env, latest);
      expect(rotated.pendingCommands).toBe(0);
      const active = rotated.keys.find((k) => k.state === 'active')!;
      expect(active.kid).not.toBe(originalKid);
      expect(active.alg).toBe('EdDSA');
      expect(rotated.keys.find((k) => k.kid === originalKid)?.state).toBe('grace');
      const promotion = (await readAuditTrail(db.pool, keySetId)).find(
        (e) => e.event === 'promoted' && e.kid === active.kid,
      )!;
      expect([promotion.trigger, promotion.actor, promotion.reason]).toEqual(['manual', 'carol', 'across runs']);

      const history = await historyText(latest);
      for (const member of PRIVATE_MEMBER_KEYS) expect(history).not.toMatch(member);
      await recordHistory(handle, 'continue-as-new-first-run-with-a-rotation-queued', firstRunId);
      await recordHistory(latest, 'continue-as-new-carried-state-rotation-runs');
      await latest.terminate('test finished');
    });
  });
});
