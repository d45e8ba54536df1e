import type { AlertNotification } from '../../src/alerts/notification';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { keySetWorkflow } from '../../src/workflows';
import { getStateQuery, revokeKeyUpdate } from '../../src/workflows/messages';
import { waitFor } from '../helpers/key-sets';
import { createKeySetWorker, deliveriesEnded, randomKekRing, settled, uniqueNames } from '../helpers/keyset-worker';
import { useTimeSkippingSuite } from '../helpers/time-skipping-suite';
import { startControlledJwks } from '../helpers/controlled-jwks';

const DAY = 86_400_000;
const HOUR = 3_600_000;

describe('the propagation gate', () => {
  const suite = useTimeSkippingSuite();

  test('holds a promotion while a JWKS URL lacks the next key, alerts after jwksMaxAge, and lets it through once listed', async () => {
    const { env, db, bundle } = suite;
    const jwks = await startControlledJwks();
    const { keySetId, taskQueue, workflowId } = uniqueNames('gate');
    const alerts: AlertNotification[] = [];
    const worker = await createKeySetWorker({ env, db, bundle, kekRing: randomKekRing(), taskQueue, alerts });
    try {
      await worker.runUntil(async () => {
        const policy = { ...DEFAULT_POLICY, publishedAt: [jwks.url] };
        const handle = await env.client.workflow.start(keySetWorkflow, { workflowId, taskQueue, args: [{ keySetId, policy }] });
        const first = await settled(env, handle);
        const original = first.keys[0].kid;
        jwks.kids.add(original);

        // Day 30 and an hour: the next key is due to sign, but the URL does not list it.
        await env.sleep(30 * DAY + HOUR);
        const held = await handle.query(getStateQuery);
        const next = held.keys.find((k) => k.state === 'next')!;
        expect(held.keys.find((k) => k.state === 'active')!.kid).toBe(original);
        expect(held.inFlight).toBe('promote');
        // Messages are delivered by workflows of their own, which the key set workflow does not wait for.
        await waitFor(() => (alerts.length > 0 ? true : undefined), 10_000, 'the alert');
        expect(alerts).toEqual([
          expect.objectContaining({ keySetId, status: 'firing', step: 'propagation', error: expect.stringContaining(`kid ${next.kid} not listed yet`) }),
        ]);

        jwks.kids.add(next.kid);
        await env.sleep(2 * 60_000); // the gate asks at most a minute apart
        const promoted = await settled(env, handle);
        expect(promoted.keys.find((k) => k.state === 'active')!.kid).toBe(next.kid);
        expect(promoted.keys.find((k) => k.kid === original)!.state).toBe('grace');
        await waitFor(() => (alerts.length > 1 ? true : undefined), 10_000, 'the resolved alert');
        expect(alerts.at(-1)).toMatchObject({ status: 'resolved', step: 'propagation' });
        await deliveriesEnded(env, alerts);
        await handle.terminate('test finished');
      });
    } finally {
      await jwks.close();
    }
  });

  test('a revocation arriving while a promotion waits at the gate runs at once and skips it', async () => {
    const { env, db, bundle } = suite;
    const jwks = await startControlledJwks();
    const { keySetId, taskQueue, workflowId } = uniqueNames('gate-revoke');
    const alerts: AlertNotification[] = [];
    const worker = await createKeySetWorker({ env, db, bundle, kekRing: randomKekRing(), taskQueue, alerts });
    try {
      await worker.runUntil(async () => {
        const policy = { ...DEFAULT_POLICY, publishedAt: [jwks.url] };
        const handle = await env.client.workflow.start(keySetWorkflow, { workflowId, taskQueue, args: [{ keySetId, policy }] });
        const original = (await settled(env, handle)).keys[0].kid;
        await env.sleep(30 * DAY + HOUR);
        const next = (await handle.query(getStateQuery)).keys.find((k) => k.state === 'next')!.kid;

        const result = await handle.executeUpdate(revokeKeyUpdate, { args: [{ kid: original, reason: 'compromised while waiting' }] });

        // The emergency replacement is the waiting next key, promoted without the gate.
        expect(result).toEqual({ revokedKid: original, previousState: 'active', activeKid: next });
        const after = await settled(env, handle);
        expect(after.keys.map((k) => [k.kid, k.state])).toEqual([[next, 'active']]);
        // The wait it alerted about is over: the revocation promoted the key without the gate.
        await waitFor(() => (alerts.length > 1 ? true : undefined), 10_000, 'the resolved alert');
        expect(alerts.map((a) => [a.kind, a.kid])).toEqual([
          ['opened', next],
          ['resolved', next],
        ]);
        expect(alerts[1].summary).toBe(`next key ${next} no longer waits to be published: it was promoted at once after a revocation`);
        await deliveriesEnded(env, alerts);
        await handle.terminate('test finished');
      });
    } finally {
      await jwks.close();
    }
  });
});
