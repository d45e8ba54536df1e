import { WorkflowFailedError, WorkflowUpdateFailedError } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { keySetWorkflow } from '../../src/workflows';
import { getStateQuery, updatePolicyUpdate } from '../../src/workflows/messages';
import { createKeySetWorker, randomKekRing, settled, uniqueNames } from '../helpers/key-set-worker';
import { useTimeSkippingSuite } from '../helpers/time-skipping-suite';

const HOUR = 3_600_000;
const DAY = 86_400_000;

// Whoever can reach Temporal can start a key set workflow or send it a policy: the workflow checks
// both against the rules `apply` checks and the worker's ceilings, and changes nothing when refused.
describe('a key set workflow distrusts its input', () => {
  const suite = useTimeSkippingSuite();
  /** This worker's deployment: tokens of an hour at most, keys rotated within 90 days. */
  const ceilings = { maxTokenTtlMs: HOUR, rotationPeriodMs: 90 * DAY };

  async function registered(keySetId: string): Promise<boolean> {
    return (await suite.db.pool.query('SELECT 1 FROM key_sets WHERE id = $1', [keySetId])).rowCount === 1;
  }

  test.each<[string, Record<string, unknown>, string]>([
    [
      'a grace period shorter than the token lifetime',
      { ...DEFAULT_POLICY, gracePeriod: '30m' },
      'gracePeriod: 30m is shorter than maxTokenTtl 1h',
    ],
    [
      'a token lifetime above the ceiling',
      { ...DEFAULT_POLICY, maxTokenTtl: '3650d', gracePeriod: '3651d' },
      "maxTokenTtl: 3650d is above this deployment's ceiling 1h (KEYTURN_MAX_TOKEN_TTL_CEILING on the worker)",
    ],
    [
      'a rotation period above the ceiling',
      { ...DEFAULT_POLICY, rotationPeriod: '100d' },
      "rotationPeriod: 100d is above this deployment's ceiling 90d",
    ],
    ['a field no policy has', { ...DEFAULT_POLICY, rotateNever: true }, 'rotateNever: unknown field'],
  ])(
    'started with %s: the workflow fails at once, naming the field, and nothing is registered',
    async (_, policy, message) => {
      const { env, db, bundle } = suite;
      const { keySetId, taskQueue, workflowId } = uniqueNames('input');
      const worker = await createKeySetWorker({ env, db, bundle, kekRing: randomKekRing(), taskQueue, ceilings });
      await worker.runUntil(async () => {
        const handle = await env.client.workflow.start(keySetWorkflow, {
          workflowId,
          taskQueue,
          args: [{ keySetId, policy: policy as typeof DEFAULT_POLICY }],
        });
        const failure = await handle.result().then(
          () => undefined,
          (error: unknown) => error,
        );
        expect(failure).toBeInstanceOf(WorkflowFailedError);
        const cause = (failure as WorkflowFailedError).cause as ApplicationFailure;
        expect(cause).toBeInstanceOf(ApplicationFailure);
        expect(cause.type).toBe('ERR_POLICY_INVALID');
        expect(cause.message).toContain(message);
        expect(await registered(keySetId)).toBe(false);
      });
    },
  );

  test('started under a key set id no JWKS URL could name: it fails at once, and nothing is registered', async () => {
    const { env, db, bundle } = suite;
    const { taskQueue } = uniqueNames('input-id');
    const worker = await createKeySetWorker({ env, db, bundle, kekRing: randomKekRing(), taskQueue, ceilings });
    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(keySetWorkflow, {
        workflowId: `keyset/..-${taskQueue}`,
        taskQueue,
        args: [{ keySetId: '..', policy: { ...DEFAULT_POLICY } }],
      });
      const failure = await handle.result().then(
        () => undefined,
        (error: unknown) => (error as WorkflowFailedError).cause,
      );
      expect(failure).toMatchObject({
        type: 'ERR_KEYSET_ID_INVALID',
        message: expect.stringContaining('keySetId: ".." is not a valid key set id'),
      });
      expect(await registered('..')).toBe(false);
    });
  });

  test('a policy update above a ceiling is refused whole and changes nothing', async () => {
    const { env, db, bundle } = suite;
    const { keySetId, taskQueue, workflowId } = uniqueNames('input-update');
    const worker = await createKeySetWorker({ env, db, bundle, kekRing: randomKekRing(), taskQueue, ceilings });
    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(keySetWorkflow, {
        workflowId,
        taskQueue,
        args: [{ keySetId, policy: { ...DEFAULT_POLICY } }],
      });
      await settled(env, handle);
      const refused = await handle
        .executeUpdate(updatePolicyUpdate, {
          args: [{ patch: { maxTokenTtl: '2h', gracePeriod: '6d', retirement: '2d' }, requestedBy: 'mallory' }],
        })
        .then(
          () => undefined,
          (error: unknown) => error,
        );
      expect(refused).toBeInstanceOf(WorkflowUpdateFailedError);
      expect((refused as WorkflowUpdateFailedError).cause).toMatchObject({
        type: 'ERR_POLICY_INVALID',
        message: expect.stringContaining('maxTokenTtl: 2h is above'),
      });
      expect((await handle.query(getStateQuery)).policy).toEqual(DEFAULT_POLICY);
      const stored = await db.pool.query('SELECT policy FROM key_sets WHERE id = $1', [keySetId]);
      expect(stored.rows[0].policy).toEqual(DEFAULT_POLICY);
      await handle.terminate('test finished');
    });
  });
});
