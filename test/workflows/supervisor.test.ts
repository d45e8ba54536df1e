import type { AlertNotification } from '../../src/alerts/notification';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { keySetWorkflow, supervisorWorkflow } from '../../src/workflows';
import { decommissionUpdate, getStateQuery } from '../../src/workflows/messages';
import { Registry } from 'prom-client';
import { KeyStore } from '../../src/store/key-store';
import { waitFor } from '../helpers/wait';
import { createKeySetWorker, randomKekRing, settled, uniqueNames } from '../helpers/key-set-worker';
import { recordHistory } from '../helpers/history';
import { useTimeSkippingSuite } from '../helpers/time-skipping-suite';

describe('the supervisor', () => {
  const suite = useTimeSkippingSuite();

  // Restarting a terminated workflow is checked against the dev server (test/client/supervisor-schedule.test.ts):
  // the time-skipping server does not serve a workflow id whose earlier run was terminated.
  test('checks every live key set against PostgreSQL, alerts on what disagrees, and skips decommissioned sets', async () => {
    const { env, db, bundle } = suite;
    const { keySetId, taskQueue } = uniqueNames('sup');
    const gone = `${keySetId}-gone`;
    const alerts: AlertNotification[] = [];
    const worker = await createKeySetWorker({ env, db, bundle, kekRing: randomKekRing(), taskQueue, alerts });
    const supervise = async () => {
      const round = await env.client.workflow.start(supervisorWorkflow, {
        taskQueue,
        workflowId: `supervisor-${keySetId}-${Date.now()}`,
      });
      const report = await round.result();
      await recordHistory(round, 'supervisor-round');
      return report;
    };

    await worker.runUntil(async () => {
      const start = (id: string) =>
        env.client.workflow.start(keySetWorkflow, {
          workflowId: `keyset/${id}`,
          taskQueue,
          args: [{ keySetId: id, policy: { ...DEFAULT_POLICY } }],
        });
      const handle = await start(keySetId);
      const { kid } = (await settled(env, handle)).keys[0];
      const decommissioned = await start(gone);
      await settled(env, decommissioned);
      await decommissioned.executeUpdate(decommissionUpdate, { args: [{ reason: 'test' }] });
      await decommissioned.terminate('gone for good');

      expect(await supervise()).toEqual({ keySets: 1, restarted: [], violations: [], failed: [] });
      expect((await env.client.workflow.getHandle(`keyset/${gone}`).describe()).status.name).toBe('TERMINATED');

      await db.pool.query(`UPDATE signing_keys SET activated_at = activated_at - interval '1 day' WHERE kid = $1`, [
        kid,
      ]);
      const tampered = await supervise();
      expect(tampered.violations).toEqual([expect.objectContaining({ code: 'TIME_MISMATCH', keySetId, kid })]);
      // The round does not wait for its messages: they are delivered by workflows of their own.
      await waitFor(() => (alerts.length > 0 ? true : undefined), 10_000, 'the alert');
      expect(alerts.at(-1)).toMatchObject({
        keySetId,
        status: 'firing',
        step: 'supervisor',
        error: expect.stringContaining('activatedAt'),
      });
      // The supervisor only reports: the workflow keeps its own view.
      expect((await handle.query(getStateQuery)).keys[0].kid).toBe(kid);
      await handle.terminate('test finished');
    });
  });

  test('a key set that cannot be checked is reported and counted; the round goes on with the others', async () => {
    const { env, db, bundle } = suite;
    const { keySetId, taskQueue } = uniqueNames('sup-stuck');
    const stuck = `${keySetId}-stuck`;
    const registry = new Registry();
    const worker = await createKeySetWorker({ env, db, bundle, kekRing: randomKekRing(), taskQueue, registry });
    const supervise = () =>
      env.client.workflow.execute(supervisorWorkflow, {
        taskQueue,
        workflowId: `supervisor-${keySetId}-${Date.now()}`,
      });

    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(keySetWorkflow, {
        workflowId: `keyset/${keySetId}`,
        taskQueue,
        args: [{ keySetId, policy: { ...DEFAULT_POLICY } }],
      });
      await settled(env, handle);
      // Registered, and its workflow runs, but on a task queue no worker polls: it never answers a query.
      await new KeyStore(db.pool, randomKekRing()).registerKeySet(
        { keySetId: stuck, trigger: 'manual', actor: 'test', reason: 'stuck' },
        { ...DEFAULT_POLICY },
        { inService: true },
      );
      const stuckHandle = await env.client.workflow.start(keySetWorkflow, {
        workflowId: `keyset/${stuck}`,
        taskQueue: `${taskQueue}-nobody`,
        args: [{ keySetId: stuck, policy: { ...DEFAULT_POLICY } }],
      });

      // The file's first test left its own key sets in the database: this round checks them too.
      const report = await supervise();
      expect(report.violations.filter((v) => v.keySetId === keySetId)).toEqual([]);
      expect(report.failed).toContainEqual({
        keySetId: stuck,
        error: expect.stringContaining(`key set "${stuck}" did not answer`),
      });
      expect(report.failed.map((f) => f.keySetId)).not.toContain(keySetId);
      const rounds = await registry.getSingleMetricAsString('keyturn_supervisor_rounds_total');
      expect(rounds).toContain('keyturn_supervisor_rounds_total{outcome="incomplete"} 1');
      expect(rounds).toContain('keyturn_supervisor_rounds_total{outcome="failed"} 0');
      expect(await registry.getSingleMetricAsString('keyturn_supervisor_unchecked_key_sets')).toContain(
        `keyturn_supervisor_unchecked_key_sets ${report.failed.length}`,
      );
      await stuckHandle.terminate('test finished');
      await handle.terminate('test finished');
    });
  });
});
