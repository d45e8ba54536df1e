import { Pool } from 'pg';
import pino from 'pino';
import type { Registry } from 'prom-client';
import { loadConfig } from '../../src/config';
import { KEY_STATES, SCHEDULED_TRANSITION_KINDS, type ScheduledTransition } from '../../src/domain/lifecycle';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { startMetricsServer } from '../../src/observability/metrics-server';
import { registerKeyStateMetrics } from '../../src/observability/key-state-metrics';
import { createMetricsRegistry, FAILURE_SERIES_LIFETIME_MS, keyturnMetrics } from '../../src/observability/metrics';
import { KeyStore } from '../../src/store/key-store';
import { AlertIncidentStore } from '../../src/store/alert-incidents';
import { OpenIncidentStore } from '../../src/store/open-incidents';
import { createAlertActivities } from '../../src/activities/alerts';
import {
  INCIDENT_KINDS,
  invariantIncident,
  propagationIncident,
  STEP_FAILURE_INCIDENT,
} from '../../src/domain/incidents';
import { createWorker } from '../../src/worker';
import { keySetWorkflow } from '../../src/workflows';
import { revokeKeyUpdate, rotateUpdate } from '../../src/workflows/messages';
import type { KekRing } from '../../src/crypto/kek';
import { KeySetDriver, manualChange, testPolicy } from '../helpers/key-sets';
import { randomKekRing, settled, uniqueNames } from '../helpers/key-set-worker';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { takeKeyTableOffline } from '../helpers/outage';
import { freePort } from '../helpers/ports';
import { useTimeSkippingSuite } from '../helpers/time-skipping-suite';
import { listKeys } from '../../src/store/stored-keys';

const DAY = 86_400_000;
const HOUR = 3_600_000;
const MINUTE = 60_000;
/** The activity each scheduled transition runs. */
const STEP_ACTIVITY: Record<ScheduledTransition['kind'], string> = {
  bootstrap: 'generateNextKey',
  generateNext: 'generateNextKey',
  checkPublication: 'confirmPublication',
  promote: 'promoteNextKey',
  withdraw: 'withdrawKey',
  retire: 'retireKey',
  destroy: 'destroyKey',
};

/** The value of one series in the registry's exposition text, or undefined when it is absent. */
async function sample(
  registry: Registry,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  const text = await registry.metrics();
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const present = (match[2] ?? '').split(',');
    if (wanted.every((pair) => present.includes(pair))) return Number(match[3]);
  }
  return undefined;
}

const storeOf = (db: TestDatabase, kekRing: KekRing) => new KeyStore(db.pool, kekRing);

describe('metrics', () => {
  const suite = useTimeSkippingSuite();

  test('the worker counts rotations by trigger, failed steps and activity durations, and logs stable fields', async () => {
    const { env, db, bundle } = suite;
    const { keySetId, taskQueue, workflowId } = uniqueNames('metrics');
    const registry = createMetricsRegistry();
    const lines: Record<string, unknown>[] = [];
    const logger = pino(
      { level: 'debug' },
      { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) },
    );
    const keyStore = new KeyStore(db.pool, randomKekRing(), { clock: () => env.currentTimeMs() });
    const config = loadConfig({ KEYTURN_TASK_QUEUE: taskQueue });
    const worker = await createWorker(config, {
      connection: env.nativeConnection,
      keyStore,
      logger,
      workflowBundle: bundle,
      registry,
    });

    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(keySetWorkflow, {
        workflowId,
        taskQueue,
        args: [{ keySetId, policy: { ...DEFAULT_POLICY } }],
      });
      await settled(env, handle);
      // The first key replaces nothing: no rotation yet, but the series exist from the start, by trigger only.
      expect(await sample(registry, 'keyturn_rotations_total', { trigger: 'scheduled' })).toBe(0);
      expect(await sample(registry, 'keyturn_rotations_total', { key_set: keySetId })).toBeUndefined();

      await env.sleep(30 * DAY + HOUR);
      await settled(env, handle);
      await handle.executeUpdate(rotateUpdate, { args: [{ reason: 'drill', immediately: true }] });
      const { kid } = await handle.executeUpdate(rotateUpdate, {
        args: [{ reason: 'second drill', immediately: true }],
      });
      await handle.executeUpdate(revokeKeyUpdate, { args: [{ kid, reason: 'leaked' }] });
      const { nextTransition } = await settled(env, handle);

      expect(await sample(registry, 'keyturn_rotations_total', { trigger: 'scheduled' })).toBe(1);
      expect(await sample(registry, 'keyturn_rotations_total', { trigger: 'manual' })).toBe(2);
      expect(await sample(registry, 'keyturn_rotations_total', { trigger: 'revocation' })).toBe(1);
      // The first key is made active by registerKeySet, in the bootstrap's one activity: four promotions.
      expect(
        await sample(registry, 'keyturn_activity_duration_seconds_count', {
          activity: 'registerKeySet',
          outcome: 'success',
        }),
      ).toBe(1);
      expect(
        await sample(registry, 'keyturn_activity_duration_seconds_count', {
          activity: 'promoteNextKey',
          outcome: 'success',
        }),
      ).toBe(4);
      // A key set has failure series only once one of its steps failed.
      expect(await sample(registry, 'keyturn_rotation_failures_total')).toBeUndefined();

      // A broken keys table: every attempt of the next due step fails and is counted under its step.
      const step = STEP_ACTIVITY[nextTransition!.kind];
      const restore = await takeKeyTableOffline(db.pool);
      await env.sleep(nextTransition!.at - (await env.currentTimeMs()) + HOUR);
      const failures = await sample(registry, 'keyturn_rotation_failures_total', { key_set: keySetId, step });
      expect(failures).toBeGreaterThanOrEqual(6); // one activity's six attempts at least
      expect(
        await sample(registry, 'keyturn_activity_duration_seconds_count', { activity: step, outcome: 'failure' }),
      ).toBe(failures);
      await restore();
      await handle.terminate('test finished');
    });

    const completed = lines.find((l) => l.msg === 'activity completed' && l.activity === 'promoteNextKey');
    expect(completed).toMatchObject({
      keySetId,
      kid: expect.any(String),
      workflowId,
      runId: expect.any(String),
      attempt: 1,
    });
    const failed = lines.find((l) => l.msg === 'activity attempt failed');
    expect(failed).toMatchObject({ keySetId, workflowId, activity: expect.any(String), attempt: 1, level: 40 });
    expect(lines.filter((l) => l.msg === 'activity attempt failed').map((l) => l.attempt)).toEqual(
      expect.arrayContaining([2, 3]),
    );
    expect((failed!.err as { message: string }).message).toContain('signing_keys');
  });

  test('figures over every key set, and series of its own only for a key set an alert may be about, or for all when asked', async () => {
    const db = await createTestDatabase(); // its own: the figures over every key set count only this test's
    try {
      const kekRing = randomKekRing();
      const now = Date.now();
      const storeAt = (ago: number) => new KeyStore(db.pool, kekRing, { clock: () => now - ago });
      const policy = testPolicy('ES256'); // a key signs 1h, the next one 10m ahead; 10m of grace
      // Healthy: promoted a minute ago, its next key due in 49 minutes.
      await (await KeySetDriver.register(storeAt(MINUTE), 'healthy', policy)).rotate();
      // Promoted two hours ago and nothing since: its next key was due 70 minutes ago, its active key signs past its period.
      await (await KeySetDriver.register(storeAt(2 * HOUR), 'late', policy)).rotate();
      // Registered, no key yet.
      await KeySetDriver.register(storeAt(MINUTE), 'unkeyed', policy);
      // Healthy keys, but a step failed all its retries.
      await (await KeySetDriver.register(storeAt(MINUTE), 'failing', policy)).rotate();
      await new OpenIncidentStore(db.pool).record('failing', STEP_FAILURE_INCIDENT, 'generateNext', {
        key: STEP_FAILURE_INCIDENT,
        openedAt: now,
        notifiedAt: now,
        notifications: 1,
      });
      // Rotated twice 5 minutes ago, the next key after that revoked: active, grace and revoked keys, its grace key retiring soon.
      const rotated = await KeySetDriver.register(storeAt(5 * MINUTE), 'rotated', policy);
      await rotated.rotate();
      await rotated.rotate();
      await rotated.revoke(await rotated.addNext());
      // Decommissioned: its active key winds down.
      const old = await KeySetDriver.register(storeAt(3 * HOUR), 'old', policy);
      const oldKid = await old.rotate();
      await storeAt(3 * HOUR).windDown(manualChange('old'), [{ kid: oldKid, graceMs: 10 * MINUTE }]);

      const registry = createMetricsRegistry();
      await registerKeyStateMetrics(registry, new KeyStore(db.pool, kekRing), () => now);
      const byLabel = async (name: string, label: string, values: readonly string[]) =>
        Object.fromEntries(
          await Promise.all(values.map(async (value) => [value, await sample(registry, name, { [label]: value })])),
        );
      expect(await byLabel('keyturn_stored_keys', 'state', KEY_STATES)).toEqual({
        next: 0,
        active: 4,
        grace: 2,
        retired: 0,
        destroyed: 0,
        revoked: 1,
      });
      expect(await byLabel('keyturn_key_sets', 'phase', ['rotating', 'decommissioned'])).toEqual({
        rotating: 5,
        decommissioned: 1,
      });
      expect(await byLabel('keyturn_key_sets_overdue', 'transition', SCHEDULED_TRANSITION_KINDS)).toEqual({
        bootstrap: 0, // due now, not before: the workflow generates it at once
        generateNext: 1,
        checkPublication: 0,
        promote: 0,
        withdraw: 0,
        retire: 0,
        destroy: 0,
      });
      expect(await sample(registry, 'keyturn_oldest_active_key_age_seconds')).toBe(2 * 3600);
      expect(await sample(registry, 'keyturn_key_sets_needing_attention')).toBe(3);

      // The key sets the alert rules are about, with what each rule reads.
      const late = await listKeys(storeOf(db, kekRing).pool, 'late');
      expect(await sample(registry, 'keyturn_keys', { key_set: 'late', state: 'active' })).toBe(1);
      expect(await sample(registry, 'keyturn_active_key_age_seconds', { key_set: 'late' })).toBe(2 * 3600);
      expect(await sample(registry, 'keyturn_rotation_period_seconds', { key_set: 'late' })).toBe(3600);
      expect(await sample(registry, 'keyturn_last_rotation_timestamp_seconds', { key_set: 'late' })).toBe(
        late[0].activatedAt! / 1000,
      );
      expect(
        await sample(registry, 'keyturn_next_transition_timestamp_seconds', {
          key_set: 'late',
          transition: 'generateNext',
        }),
      ).toBe((now - 2 * HOUR + 50 * MINUTE) / 1000);
      expect(await sample(registry, 'keyturn_keys', { key_set: 'unkeyed', state: 'active' })).toBe(0);
      expect(
        await sample(registry, 'keyturn_next_transition_timestamp_seconds', {
          key_set: 'unkeyed',
          transition: 'bootstrap',
        }),
      ).toBe(now / 1000);
      expect(await sample(registry, 'keyturn_open_incidents', { key_set: 'failing', kind: 'step_failure' })).toBe(1);
      expect(await sample(registry, 'keyturn_open_incidents', { key_set: 'late', kind: 'step_failure' })).toBe(0);
      // The others have none.
      const text = await registry.metrics();
      for (const quiet of ['healthy', 'rotated', 'old']) expect(text).not.toContain(`key_set="${quiet}"`);

      // Every key set, when asked for (KEYTURN_METRICS_PER_KEY_SET): counters at 0 from the start too.
      const everyKeySet = createMetricsRegistry({ perKeySet: true });
      await registerKeyStateMetrics(everyKeySet, new KeyStore(db.pool, kekRing), () => now);
      const graceKey = (await listKeys(storeOf(db, kekRing).pool, 'rotated')).find((k) => k.state === 'grace')!;
      expect(await sample(everyKeySet, 'keyturn_keys', { key_set: 'healthy', state: 'active' })).toBe(1);
      expect(await sample(everyKeySet, 'keyturn_keys', { key_set: 'rotated', state: 'revoked' })).toBe(1);
      expect(
        await sample(everyKeySet, 'keyturn_next_transition_timestamp_seconds', {
          key_set: 'rotated',
          transition: 'retire',
        }),
      ).toBe(graceKey.graceEndsAt! / 1000);
      expect(await sample(everyKeySet, 'keyturn_keys', { key_set: 'old', state: 'grace' })).toBe(1);
      expect(
        await sample(everyKeySet, 'keyturn_next_transition_timestamp_seconds', { key_set: 'old' }),
      ).toBeUndefined();
      expect(await sample(everyKeySet, 'keyturn_rotations_total', { key_set: 'healthy', trigger: 'scheduled' })).toBe(
        0,
      );
      expect(
        await sample(everyKeySet, 'keyturn_rotation_failures_total', { key_set: 'healthy', step: 'promoteNextKey' }),
      ).toBe(0);
      expect(await sample(everyKeySet, 'keyturn_stored_keys', { state: 'active' })).toBe(4);
    } finally {
      await db.drop();
    }
  });

  test('a scrape has as many series with 200 healthy key sets as with 5; with every key set asked for, each adds its own', async () => {
    const db = await createTestDatabase();
    try {
      const kekRing = randomKekRing();
      const store = storeOf(db, kekRing);
      const addHealthy = async (from: number, to: number) => {
        for (let i = from; i < to; i += 10) {
          const batch = Array.from({ length: Math.min(10, to - i) }, (_, j) => `healthy-${i + j}`);
          await Promise.all(
            batch.map(async (id) => (await KeySetDriver.register(store, id, testPolicy('ES256'))).rotate()),
          );
        }
      };
      // One key set an alert is about, whatever the count of healthy ones.
      await KeySetDriver.register(store, 'unkeyed', testPolicy('ES256'));
      await addHealthy(0, 5);
      const aggregated = createMetricsRegistry();
      await registerKeyStateMetrics(aggregated, store);
      const everyKeySet = createMetricsRegistry({ perKeySet: true });
      await registerKeyStateMetrics(everyKeySet, store);
      const keyturnSeries = async (registry: Registry) =>
        (await registry.metrics()).split('\n').filter((line) => line.startsWith('keyturn_'));

      const withFive = await keyturnSeries(aggregated);
      const everyWithFive = await keyturnSeries(everyKeySet);
      await addHealthy(5, 200);
      const withTwoHundred = await keyturnSeries(aggregated);
      expect(withTwoHundred.length).toBe(withFive.length);
      expect(
        withTwoHundred.filter((line) => line.includes('key_set=')).every((line) => line.includes('key_set="unkeyed"')),
      ).toBe(true);
      expect(await sample(aggregated, 'keyturn_stored_keys', { state: 'active' })).toBe(200);

      const perKeySet = everyWithFive.filter((line) => line.includes('key_set="healthy-0"')).length;
      expect(perKeySet).toBeGreaterThanOrEqual(14);
      // A new key set's counters are created by the scrape that first reads it, and collected from the next one on.
      await everyKeySet.metrics();
      expect((await keyturnSeries(everyKeySet)).length).toBe(everyWithFive.length + 195 * perKeySet);
    } finally {
      await db.drop();
    }
  });

  test("a key set's failure series appears at its first failed attempt and leaves an hour after its last", () => {
    let now = 0;
    const registry = createMetricsRegistry();
    const metrics = keyturnMetrics(registry, () => now);
    const failures = (keySetId: string) =>
      sample(registry, 'keyturn_rotation_failures_total', { key_set: keySetId, step: 'promoteNextKey' });
    return (async () => {
      expect(await failures('web')).toBeUndefined();
      metrics.countFailedAttempt('web', 'promoteNextKey');
      metrics.countFailedAttempt('api', 'promoteNextKey');
      expect(await failures('web')).toBe(1);
      now = FAILURE_SERIES_LIFETIME_MS / 2;
      metrics.countFailedAttempt('web', 'promoteNextKey');
      now = FAILURE_SERIES_LIFETIME_MS + 1;
      expect(await failures('web')).toBe(2);
      expect(await failures('api')).toBeUndefined();
      now = 2 * FAILURE_SERIES_LIFETIME_MS;
      expect(await failures('web')).toBeUndefined();
      // Back from 1 (KeyturnRotationFailing counts a series new in its window from its first value).
      metrics.countFailedAttempt('web', 'promoteNextKey');
      expect(await failures('web')).toBe(1);
    })();
  });

  test('key gauges are read from PostgreSQL at scrape time and served over HTTP, and a database that is down fails no scrape', async () => {
    const { db } = suite;
    const kekRing = randomKekRing();
    const store = storeOf(db, kekRing);
    const driver = await KeySetDriver.register(store, uniqueNames('gauges').keySetId, testPolicy('ES256'));
    await driver.rotate();
    const registry = createMetricsRegistry();
    await registerKeyStateMetrics(registry, store);
    expect(await sample(registry, 'keyturn_database_up')).toBe(1);
    const nextKeys = (await sample(registry, 'keyturn_stored_keys', { state: 'next' }))!;

    // A new key shows at the next scrape, with no restart and nothing kept in memory.
    await driver.addNext();
    expect(await sample(registry, 'keyturn_stored_keys', { state: 'next' })).toBe(nextKeys + 1);

    // Served over HTTP by the worker's metrics server.
    const server = await startMetricsServer({
      port: await freePort(),
      host: '127.0.0.1',
      registry,
      logger: pino({ level: 'silent' }),
    });
    try {
      const response = await fetch(server.url);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toContain('text/plain');
      const text = await response.text();
      expect(text).toContain(`keyturn_stored_keys{state="next"} ${nextKeys + 1}`);
      expect(text).toContain('process_cpu_seconds_total');
      expect((await fetch(server.url.replace('/metrics', '/other'))).status).toBe(404);
    } finally {
      await server.close();
    }

    const unreachable = new Pool({
      connectionString: 'postgres://nobody@127.0.0.1:1/none',
      connectionTimeoutMillis: 500,
    });
    try {
      const downRegistry = createMetricsRegistry();
      await registerKeyStateMetrics(downRegistry, new KeyStore(unreachable, kekRing));
      expect(await sample(downRegistry, 'keyturn_database_up')).toBe(0);
      expect(await sample(downRegistry, 'keyturn_stored_keys')).toBeUndefined();
      expect(await sample(downRegistry, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    } finally {
      await unreachable.end();
    }
  });

  test("open incidents are counted by key set and kind, from the alerts that open and resolve them and the supervisor's table", async () => {
    const { db } = suite;
    const { keySetId } = uniqueNames('incidents');
    const keyStore = new KeyStore(db.pool, randomKekRing());
    const driver = await KeySetDriver.register(keyStore, keySetId, testPolicy('ES256'));
    const kid = await driver.rotate();
    const registry = createMetricsRegistry();
    await registerKeyStateMetrics(registry, keyStore);
    const openIncidents = async () =>
      Object.fromEntries(
        await Promise.all(
          INCIDENT_KINDS.map(async (kind) => [
            kind,
            await sample(registry, 'keyturn_open_incidents', { key_set: keySetId, kind }),
          ]),
        ),
      );
    // A healthy key set: no series of its own.
    expect(await openIncidents()).toEqual({
      step_failure: undefined,
      promotion_held: undefined,
      invariant_broken: undefined,
      workflow_stopped: undefined,
    });

    // The key set workflow's alerts, as its alert activity records them.
    const { assessAlert } = createAlertActivities({
      logger: pino({ level: 'silent' }),
      channels: [],
      reminderMs: HOUR,
      alertsTotal: keyturnMetrics(registry).alerts,
      incidents: new AlertIncidentStore(db.pool),
      openIncidents: new OpenIncidentStore(db.pool),
      temporalClient: undefined as never,
      taskQueue: 'keyturn',
    });
    const alert = { keySetId, step: 'promote', summary: 'promote failed', workflowId: `keyset/${keySetId}` };
    const failing = await assessAlert({
      alert: { ...alert, incident: STEP_FAILURE_INCIDENT, status: 'firing' },
      open: null,
      at: Date.now(),
    });
    await assessAlert({
      alert: { ...alert, incident: propagationIncident(kid), status: 'firing', step: 'propagation' },
      open: null,
      at: Date.now(),
    });
    // The supervisor's finding, in its own table.
    await new AlertIncidentStore(db.pool).recordRound({
      firing: [{ ...alert, incident: invariantIncident('NO_ACTIVE_KEY'), status: 'firing', step: 'supervisor' }],
      unjudged: () => false,
      at: Date.now(),
      reminderMs: HOUR,
    });
    expect(await openIncidents()).toEqual({
      step_failure: 1,
      promotion_held: 1,
      invariant_broken: 1,
      workflow_stopped: 0,
    });

    // A repeat changes nothing; a resolution closes its incident at the next scrape.
    await assessAlert({
      alert: { ...alert, incident: STEP_FAILURE_INCIDENT, status: 'firing' },
      open: failing.incident,
      at: Date.now() + 1,
    });
    expect((await openIncidents()).step_failure).toBe(1);
    await assessAlert({
      alert: { ...alert, incident: STEP_FAILURE_INCIDENT, status: 'resolved' },
      open: failing.incident,
      at: Date.now() + 2,
    });
    expect(await openIncidents()).toEqual({
      step_failure: 0,
      promotion_held: 1,
      invariant_broken: 1,
      workflow_stopped: 0,
    });
  });
});
