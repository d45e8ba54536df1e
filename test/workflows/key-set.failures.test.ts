import type { AlertNotification } from '../../src/alerts/notification';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { keySetWorkflow } from '../../src/workflows';
import { getStateQuery } from '../../src/workflows/messages';
import { waitFor } from '../helpers/wait';
import { createKeySetWorker, randomKekRing, settled, uniqueNames } from '../helpers/key-set-worker';
import { takeKeyTableOffline } from '../helpers/outage';
import { recordHistory } from '../helpers/history';
import { useTimeSkippingSuite } from '../helpers/time-skipping-suite';
import { listKeys } from '../../src/store/stored-keys';

const DAY = 86_400_000;
const HOUR = 3_600_000;

describe('a failing dependency', () => {
  const suite = useTimeSkippingSuite();

  test('PostgreSQL failing at a transition: an alert, backoff, recovery, and no duplicated key', async () => {
    const { env, db, bundle } = suite;
    const { keySetId, taskQueue, workflowId } = uniqueNames('outage');
    const kekRing = randomKekRing();
    const alerts: AlertNotification[] = [];
    const worker = await createKeySetWorker({ env, db, bundle, kekRing, taskQueue, alerts });

    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(keySetWorkflow, {
        workflowId,
        taskQueue,
        args: [{ keySetId, policy: { ...DEFAULT_POLICY } }],
      });
      const first = await settled(env, handle);
      const restore = await takeKeyTableOffline(db.pool);

      // The next key is due on day 25; the activity retries, gives up, and the workflow backs off.
      await env.sleep(25 * DAY + HOUR);
      const failing = await handle.query(getStateQuery);
      expect(failing.lastError).toMatchObject({
        step: expect.any(String),
        message: expect.stringContaining('signing_keys'),
      });
      expect(failing.lastError!.failures).toBeGreaterThanOrEqual(2);
      // Messages are delivered by workflows of their own, which the key set workflow does not wait for.
      const firing = await waitFor(
        () => (alerts.length > 0 ? alerts.filter((a) => a.status === 'firing') : undefined),
        10_000,
        'the alert',
      );
      expect(firing[0]).toMatchObject({ keySetId, workflowId, step: 'generateNext', failures: 1 });
      expect(firing[0].error).toContain('signing_keys');
      expect(alerts.some((a) => a.status === 'resolved')).toBe(false);

      await restore();
      await env.sleep(2 * HOUR); // past the longest backoff (1 h)
      const recovered = await settled(env, handle);

      expect(recovered.lastError).toBeNull();
      await waitFor(() => (alerts.at(-1)?.status === 'resolved' ? true : undefined), 10_000, 'the resolved alert');
      expect(alerts.at(-1)).toMatchObject({ keySetId, status: 'resolved' });
      const keys = await listKeys(db.pool, keySetId);
      expect(keys.map((k) => k.state)).toEqual(['active', 'next']);
      expect(keys[0].kid).toBe(first.keys[0].kid);
      expect(recovered.keys.map((k) => k.kid)).toEqual(keys.map((k) => k.kid));
      // The workflow never failed: it is still running and on schedule.
      expect((await handle.describe()).status.name).toBe('RUNNING');
      expect(recovered.nextTransition).toMatchObject({ kind: 'promote', at: first.keys[0].activatedAt! + 30 * DAY });
      await recordHistory(handle, 'postgresql-failing-at-a-transition-then-recovering');
      await handle.terminate('test finished');
    });
  });
});
