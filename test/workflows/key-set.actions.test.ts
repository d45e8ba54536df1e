import type { WorkflowHandle } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { Registry } from 'prom-client';
import { DEFAULT_POLICY, validatePolicy } from '../../src/domain/policy';
import { startJwksServer, type RunningJwksServer } from '../../src/jwks/server';
import { createLogger } from '../../src/logger';
import { keySetWorkflow } from '../../src/workflows';
import { KeySetIdSearchAttribute } from '../../src/workflows/search-attributes';
import { historyNameOfTest, recordHistory } from '../helpers/history';
import { createKeySetWorker, randomKekRing, settled, uniqueNames } from '../helpers/key-set-worker';
import { useTimeSkippingSuite } from '../helpers/time-skipping-suite';

const DAY = 86_400_000;
const HOUR = 3_600_000;
const PERIODS = 24;

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/** Every event of every run of the workflow, oldest run first, following continue-as-new back. */
async function allEvents(handle: WorkflowHandle): Promise<{ runs: number; events: HistoryEvent[] }> {
  const runs: HistoryEvent[][] = [];
  let runId: string | undefined = (await handle.describe()).runId;
  while (runId) {
    const history = await handle.client.getHandle(handle.workflowId, runId).fetchHistory();
    runs.unshift(history.events ?? []);
    runId = history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
  }
  return { runs: runs.length, events: runs.flat() };
}

/**
 * The billable actions an event stands for, by Temporal Cloud's definition (docs.temporal.io/cloud/actions):
 * a workflow started (by a client, continue-as-new or a parent), each activity attempt, a timer
 * started, a search attribute upsert (not one that only records a patch in TemporalChangeVersion), a
 * signal, an Update, a child workflow, a marker other than a patch's (side effects, local activities).
 * Queries leave no event: the ones this test sends to wait for the workflow are the test's, not the key set's.
 */
function actionsOf(event: HistoryEvent): number {
  if (event.workflowExecutionStartedEventAttributes) return 1;
  // The attempt count lands on the started event: the first attempt and every retry are actions.
  if (event.activityTaskStartedEventAttributes) return event.activityTaskStartedEventAttributes.attempt ?? 1;
  if (event.timerStartedEventAttributes) return 1;
  if (event.upsertWorkflowSearchAttributesEventAttributes) {
    const fields = Object.keys(
      event.upsertWorkflowSearchAttributesEventAttributes.searchAttributes?.indexedFields ?? {},
    );
    return fields.every((f) => f === 'TemporalChangeVersion') ? 0 : 1;
  }
  if (event.workflowExecutionSignaledEventAttributes || event.workflowExecutionUpdateAcceptedEventAttributes) return 1;
  if (
    event.startChildWorkflowExecutionInitiatedEventAttributes ||
    event.signalExternalWorkflowExecutionInitiatedEventAttributes
  )
    return 1;
  if (event.markerRecordedEventAttributes)
    return event.markerRecordedEventAttributes.markerName === 'core_patch' ? 0 : 1;
  return 0;
}

/** What an event is, in the words of the Temporal Web UI's event list, for a failure message. */
function kindOf(event: HistoryEvent): string {
  if (event.activityTaskStartedEventAttributes) return 'activity';
  if (event.timerStartedEventAttributes) return 'timer';
  if (event.upsertWorkflowSearchAttributesEventAttributes) return 'upsert';
  if (event.workflowExecutionStartedEventAttributes) return 'workflow started';
  return 'other';
}

describe('Temporal actions of a key set', () => {
  const suite = useTimeSkippingSuite();
  let jwks: RunningJwksServer;
  beforeAll(async () => {
    // The test server indexes no search attribute until it is told of it, like any namespace.
    const { INDEXED_VALUE_TYPE_KEYWORD: keyword, INDEXED_VALUE_TYPE_DATETIME: datetime } =
      temporal.api.enums.v1.IndexedValueType;
    await suite.env.connection.operatorService.addSearchAttributes({
      namespace: suite.env.namespace ?? 'default',
      searchAttributes: { KeySetId: keyword, ActiveKid: keyword, NextTransitionAt: datetime },
    });
    jwks = await startJwksServer({
      port: 0,
      host: '127.0.0.1',
      pool: suite.db.pool,
      registry: new Registry(),
      logger: createLogger({ level: 'silent' }),
    });
  });
  afterAll(async () => jwks?.close());

  test(`at most 10 per rotation period, counted from the history of ${PERIODS} periods under the seed policy, its JWKS checked by the gate`, async () => {
    const { env, db, bundle } = suite;
    const { keySetId, taskQueue, workflowId } = uniqueNames('actions');
    // The propagation gate looks at keyturn's own JWKS server, which lists a key once PostgreSQL announces it.
    const policy = validatePolicy({ ...DEFAULT_POLICY, publishedAt: [`${jwks.url}/keysets/${keySetId}/jwks.json`] });
    const worker = await createKeySetWorker({ env, db, bundle, kekRing: randomKekRing(), taskQueue });
    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(keySetWorkflow, {
        workflowId,
        taskQueue,
        args: [{ keySetId, policy }],
        // As `apply` starts it: the workflow keeps ActiveKid and NextTransitionAt current.
        typedSearchAttributes: [{ key: KeySetIdSearchAttribute, value: keySetId }],
      });
      const first = await settled(env, handle);
      const firstRunId = (await handle.describe()).runId;
      const t0 = first.keys[0].activatedAt!;
      for (let period = 1; period <= PERIODS; period++) {
        await env.sleep(t0 + period * 30 * DAY + HOUR - (await env.currentTimeMs()));
        await settled(env, handle);
      }
      const { runs, events } = await allEvents(handle);

      // Period n runs from day 30n - 10, days before the next key's generation (day 30n - 5), to the
      // next one's: the generation, the promotion (day 30n), the old key's retirement (30n + 5) and
      // destruction (30n + 6), each with the timer that waits for it.
      const periodOf = (event: HistoryEvent) =>
        Math.floor((Number(event.eventTime!.seconds) * 1000 - t0 + 10 * DAY) / (30 * DAY));
      const perPeriod = new Map<number, Record<string, number>>();
      for (const event of events) {
        const actions = actionsOf(event);
        if (actions === 0) continue;
        const period = periodOf(event);
        const counts = perPeriod.get(period) ?? {};
        counts[kindOf(event)] = (counts[kindOf(event)] ?? 0) + actions;
        perPeriod.set(period, counts);
      }
      const total = (counts: Record<string, number>) => Object.values(counts).reduce((a, b) => a + b, 0);
      const full = [...perPeriod.entries()].filter(([period]) => period >= 1 && period < PERIODS);
      expect(full).toHaveLength(PERIODS - 1);
      for (const [period, counts] of full)
        expect({ period, counts, total: total(counts) <= 10 }).toEqual({ period, counts, total: true });
      // The history's length made the workflow continue as new once: one action more that period.
      expect(runs).toBe(2);
      const continued = full.filter(([, counts]) => counts['workflow started'] === 1).map(([period]) => period);
      expect(continued).toHaveLength(1);
      expect(total(perPeriod.get(continued[0])!)).toBe(10);
      // The steady state: four activities (generate, watched until listed; promote; retire; destroy),
      // their four timers and one upsert of ActiveKid with NextTransitionAt, at the promotion. (The
      // time-skipping server drops a run's search attributes at continue-as-new, so the runs after it
      // upsert nothing here; the Temporal server carries them on.)
      for (const [period, counts] of full.filter(([period]) => period < continued[0])) {
        expect({ period, counts }).toEqual({ period, counts: { activity: 4, timer: 4, upsert: 1 } });
      }
      // A new key set: started, loaded with its first key active in one activity, one upsert, one timer.
      expect(perPeriod.get(0)).toEqual({ 'workflow started': 1, activity: 1, upsert: 1, timer: 1 });

      await recordHistory(handle, `${historyNameOfTest()}-first-run`, firstRunId);
      await recordHistory(handle, historyNameOfTest());
      await handle.terminate('test finished');
    });
  });
});
