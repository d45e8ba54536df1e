import { keySetSummary } from '../../src/domain/describe';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { keySetWorkflow } from '../../src/workflows';
import { createKeySetWorker, randomKekRing, settled, uniqueNames } from '../helpers/key-set-worker';
import { useTimeSkippingSuite } from '../helpers/time-skipping-suite';

const DAY = 86_400_000;

describe('what an operator sees', () => {
  const suite = useTimeSkippingSuite();

  // Search attributes need a server that indexes them: the dev-server tests check those.
  test('current details in words follow each transition, under a static summary', async () => {
    const { env, db, bundle } = suite;
    const { keySetId, taskQueue, workflowId } = uniqueNames('ui');
    const worker = await createKeySetWorker({ env, db, bundle, kekRing: randomKekRing(), taskQueue });
    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(keySetWorkflow, {
        workflowId,
        taskQueue,
        args: [{ keySetId, policy: { ...DEFAULT_POLICY } }],
        staticSummary: keySetSummary(keySetId, DEFAULT_POLICY),
      });
      const first = await settled(env, handle);
      const active = first.keys[0];

      const metadata = await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata');
      expect(metadata.currentDetails).toContain(`Active key: ${active.kid} (ES256)`);
      expect(metadata.currentDetails).toContain('Next transition: generate and publish the next key at');
      expect(metadata.currentDetails).toContain('Paused: no');
      expect(await (await handle.describe()).staticSummary()).toBe(
        `JWT key set ${keySetId} — ES256, rotates every 30d`,
      );

      await env.sleep(30 * DAY + 60_000);
      const rotated = await settled(env, handle);
      const newActive = rotated.keys.find((k) => k.state === 'active')!;
      const details = (await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata')).currentDetails;
      expect(details).toContain(`Active key: ${newActive.kid}`);
      expect(details).toContain(`Grace key: ${active.kid}, verifies until`);
      await handle.terminate('test finished');
    });
  });
});
