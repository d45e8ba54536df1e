import type { WorkflowHandle } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import type { AlertNotification } from '../../src/alerts/notification';
import { DEFAULT_POLICY, validatePolicy } from '../../src/domain/policy';
import { readAuditTrail } from '../../src/store/audit-log';
import { keySetWorkflow } from '../../src/workflows';
import { DEFAULT_MAX_HISTORY_EVENTS } from '../../src/workflows/key-set';
import { getStateQuery, pauseSignal, resumeSignal, revokeKeyUpdate } from '../../src/workflows/messages';
import { startControlledJwks } from '../helpers/controlled-jwks';
import { waitFor } from '../helpers/wait';
import { createKeySetWorker, deliveriesEnded, randomKekRing, settled, uniqueNames } from '../helpers/key-set-worker';
import { recordHistory } from '../helpers/history';
import { useTimeSkippingSuite } from '../helpers/time-skipping-suite';

const MINUTE = 60_000;
const HOUR = 3_600_000;
const DAY = 86_400_000;
/** One step adds at most this many events after the continue-as-new check (a command with a few activities). */
const STEP_EVENTS = 60;

describe('the propagation gate', () => {
  const suite = useTimeSkippingSuite();

  /** The history length of every run of the workflow, oldest first, following continue-as-new back. */
  async function runLengths(handle: WorkflowHandle): Promise<number[]> {
    const lengths: number[] = [];
    let runId: string | undefined = (await handle.describe()).runId;
    while (runId) {
      const history: temporal.api.history.v1.IHistory = await handle.client
        .getHandle(handle.workflowId, runId)
        .fetchHistory();
      lengths.unshift(history.events?.length ?? 0);
      runId = history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
    }
    return lengths;
  }

  test('holds a promotion for as long as a JWKS URL lacks the next key: every run stays short, pause holds, older keys retire on time', async () => {
    const { env, db, bundle } = suite;
    const jwks = await startControlledJwks();
    const { keySetId, taskQueue, workflowId } = uniqueNames('gate');
    const alerts: AlertNotification[] = [];
    const worker = await createKeySetWorker({
      env,
      db,
      bundle,
      kekRing: randomKekRing(),
      taskQueue,
      alerts,
      reminderMs: 5 * DAY,
    });
    try {
      await worker.runUntil(async () => {
        // Each key signs 8 days and is published 5 days ahead, so a grace key runs out while the third key waits.
        const policy = validatePolicy({ ...DEFAULT_POLICY, rotationPeriod: '8d', publishedAt: [jwks.url] });
        const handle = await env.client.workflow.start(keySetWorkflow, {
          workflowId,
          taskQueue,
          args: [{ keySetId, policy }],
        });
        const first = await settled(env, handle);
        const t0 = first.keys[0].activatedAt!;
        const sleepUntil = async (at: number) => env.sleep(Math.max(at - (await env.currentTimeMs()), 1));

        await sleepUntil(t0 + 3 * DAY + HOUR);
        const second = (await settled(env, handle)).keys.find((k) => k.state === 'next')!;
        jwks.kids.add(second.kid); // listed an hour after its generation; it signs from day 8
        await sleepUntil(t0 + 11 * DAY + HOUR);
        const waiting = await settled(env, handle);
        const third = waiting.keys.find((k) => k.state === 'next')!;
        expect(waiting.keys.find((k) => k.state === 'active')!.kid).toBe(second.kid);
        expect(third.listedAt).toBeUndefined();

        // Ten days past its due date (day 16), the third key still waits; the second key signs on.
        await sleepUntil(t0 + 20 * DAY);
        await handle.signal(pauseSignal, { reason: 'freeze during the wait' });
        const paused = await settled(env, handle);
        expect(paused.nextTransition).toBeNull();
        const checksBefore = (await handle.fetchHistory()).events!.filter(isPublicationCheck).length;
        await sleepUntil(t0 + 21 * DAY);
        expect((await handle.fetchHistory()).events!.filter(isPublicationCheck).length).toBe(checksBefore);
        await handle.signal(resumeSignal);
        await sleepUntil(t0 + 26 * DAY);
        expect((await settled(env, handle)).keys.find((k) => k.state === 'active')!.kid).toBe(second.kid);

        jwks.kids.add(third.kid);
        await sleepUntil(t0 + 26 * DAY + 3 * HOUR); // the gate asks at most an hour apart; then 15 minutes of caching
        const promoted = await settled(env, handle);
        expect(promoted.keys.find((k) => k.state === 'active')!.kid).toBe(third.kid);

        // The first key retired and was destroyed on time while the third key waited.
        const trail = await readAuditTrail(db.pool, keySetId);
        const when = (event: string, kid: string) => trail.find((e) => e.event === event && e.kid === kid)!.at;
        const firstKid = first.keys[0].kid;
        const demotedAt = when('demoted', firstKid);
        expect(when('retired', firstKid) - (demotedAt + 5 * DAY)).toBeLessThan(MINUTE);
        expect(when('destroyed', firstKid) - (demotedAt + 6 * DAY)).toBeLessThan(MINUTE);
        expect(when('promoted', third.kid)).toBeGreaterThanOrEqual(when('published', third.kid) + 15 * MINUTE);

        // Fifteen days of waiting took several runs, none longer than the bound.
        const lengths = await runLengths(handle);
        expect(lengths.length).toBeGreaterThanOrEqual(3);
        for (const length of lengths) expect(length).toBeLessThanOrEqual(DEFAULT_MAX_HISTORY_EVENTS + STEP_EVENTS);
        console.log(
          `15 days at the gate: ${lengths.length} runs of ${lengths.join(', ')} events (bound ${DEFAULT_MAX_HISTORY_EVENTS} + one step)`,
        );

        // One incident for the wait that held up a promotion: opened once it did, reminded, resolved once the key was listed.
        // (The second key was missing for an hour too, days before it was due: no alert.)
        await waitFor(() => (alerts.at(-1)?.status === 'resolved' ? true : undefined), 10_000, 'the resolved alert');
        expect(alerts.map((a) => [a.kid, a.kind])).toEqual([
          [third.kid, 'opened'],
          [third.kid, 'reminder'],
          [third.kid, 'resolved'],
        ]);
        expect(alerts[0]).toMatchObject({
          keySetId,
          step: 'propagation',
          error: expect.stringContaining(`kid ${third.kid} not listed yet`),
        });
        expect(alerts[0].openedAt).toBeGreaterThanOrEqual(t0 + 16 * DAY);
        await deliveriesEnded(env, alerts);
        await recordHistory(handle, 'gate-held-for-days-last-run');
        await handle.terminate('test finished');
      });
    } finally {
      await jwks.close();
    }
  });

  test('a revocation while the next key waits runs at once and promotes it without the gate', async () => {
    const { env, db, bundle } = suite;
    const jwks = await startControlledJwks();
    const { keySetId, taskQueue, workflowId } = uniqueNames('gate-revoke');
    const alerts: AlertNotification[] = [];
    const worker = await createKeySetWorker({ env, db, bundle, kekRing: randomKekRing(), taskQueue, alerts });
    try {
      await worker.runUntil(async () => {
        const policy = { ...DEFAULT_POLICY, publishedAt: [jwks.url] };
        const handle = await env.client.workflow.start(keySetWorkflow, {
          workflowId,
          taskQueue,
          args: [{ keySetId, policy }],
        });
        const original = (await settled(env, handle)).keys[0].kid;
        await env.sleep(30 * DAY + HOUR);
        const next = (await handle.query(getStateQuery)).keys.find((k) => k.state === 'next')!.kid;

        const result = await handle.executeUpdate(revokeKeyUpdate, {
          args: [{ kid: original, reason: 'compromised while waiting' }],
        });

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
        expect(alerts[1].summary).toBe(
          `next key ${next} no longer waits to be published: it was promoted at once after a revocation`,
        );
        await deliveriesEnded(env, alerts);
        await recordHistory(handle, 'revocation-during-a-gate-wait');
        await handle.terminate('test finished');
      });
    } finally {
      await jwks.close();
    }
  });
});

function isPublicationCheck(event: temporal.api.history.v1.IHistoryEvent): boolean {
  return event.activityTaskScheduledEventAttributes?.activityType?.name === 'confirmPublication';
}
