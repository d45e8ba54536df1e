import { Pool } from 'pg';
import pino from 'pino';
import type { Registry } from 'prom-client';
import { loadConfig } from '../../src/config';
import type { ScheduledTransition } from '../../src/domain/lifecycle';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { startMetricsServer } from '../../src/observability/metrics-server';
import { registerKeyStateMetrics } from '../../src/observability/key-state-metrics';
import { createMetricsRegistry, keyturnMetrics } from '../../src/observability/metrics';
import { KeyStore } from '../../src/store/key-store';
import { AlertIncidentStore } from '../../src/store/alert-incidents';
import { OpenIncidentStore } from '../../src/store/open-incidents';
import { createAlertActivities } from '../../src/activities/alerts';
import { INCIDENT_KINDS, invariantIncident, propagationIncident, STEP_FAILURE_INCIDENT } from '../../src/domain/incidents';
import { createWorker } from '../../src/worker';
import { keySetWorkflow } from '../../src/workflows';
import { revokeKeyUpdate, rotateUpdate } from '../../src/workflows/messages';
import { KeySetDriver, testPolicy } from '../helpers/key-sets';
import { randomKekRing, settled, uniqueNames } from '../helpers/keyset-worker';
import { takeKeyTableOffline } from '../helpers/outage';
import { freePort } from '../helpers/ports';
import { useTimeSkippingSuite } from '../helpers/time-skipping-suite';

const DAY = 86_400_000;
const HOUR = 3_600_000;
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
async function sample(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
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

describe('metrics', () => {
  const suite = useTimeSkippingSuite();

  test('the worker counts rotations by trigger, failed steps and activity durations, and logs stable fields', async () => {
    const { env, db, bundle } = suite;
    const { keySetId, taskQueue, workflowId } = uniqueNames('metrics');
    const registry = createMetricsRegistry();
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const keyStore = new KeyStore(db.pool, randomKekRing(), { clock: () => env.currentTimeMs() });
    const config = loadConfig({ KEYTURN_TASK_QUEUE: taskQueue });
    const worker = await createWorker(config, { connection: env.nativeConnection, keyStore, logger, workflowBundle: bundle, registry });

    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(keySetWorkflow, { workflowId, taskQueue, args: [{ keySetId, policy: { ...DEFAULT_POLICY } }] });
      await settled(env, handle);
      // The first key replaces nothing: no rotation yet, but the series exist from the key set's first activity on.
      expect(await sample(registry, 'keyturn_rotations_total', { key_set: keySetId, trigger: 'scheduled' })).toBe(0);

      await env.sleep(30 * DAY + HOUR);
      await settled(env, handle);
      await handle.executeUpdate(rotateUpdate, { args: [{ reason: 'drill', immediately: true }] });
      const { kid } = await handle.executeUpdate(rotateUpdate, { args: [{ reason: 'second drill', immediately: true }] });
      await handle.executeUpdate(revokeKeyUpdate, { args: [{ kid, reason: 'leaked' }] });
      const { nextTransition } = await settled(env, handle);

      expect(await sample(registry, 'keyturn_rotations_total', { key_set: keySetId, trigger: 'scheduled' })).toBe(1);
      expect(await sample(registry, 'keyturn_rotations_total', { key_set: keySetId, trigger: 'manual' })).toBe(2);
      expect(await sample(registry, 'keyturn_rotations_total', { key_set: keySetId, trigger: 'revocation' })).toBe(1);
      expect(await sample(registry, 'keyturn_activity_duration_seconds_count', { activity: 'promoteNextKey', outcome: 'success' })).toBe(5);
      expect(await sample(registry, 'keyturn_rotation_failures_total', { key_set: keySetId })).toBe(0);

      // A broken keys table: every attempt of the next due step fails and is counted under its step.
      const step = STEP_ACTIVITY[nextTransition!.kind];
      const restore = await takeKeyTableOffline(db.pool);
      await env.sleep(nextTransition!.at - (await env.currentTimeMs()) + HOUR);
      const failures = await sample(registry, 'keyturn_rotation_failures_total', { key_set: keySetId, step });
      expect(failures).toBeGreaterThanOrEqual(6); // one activity's six attempts at least
      expect(await sample(registry, 'keyturn_activity_duration_seconds_count', { activity: step, outcome: 'failure' })).toBe(failures);
      await restore();
      await handle.terminate('test finished');
    });

    const completed = lines.find((l) => l.msg === 'activity completed' && l.activity === 'promoteNextKey');
    expect(completed).toMatchObject({ keySetId, kid: expect.any(String), workflowId, runId: expect.any(String), attempt: 1 });
    const failed = lines.find((l) => l.msg === 'activity attempt failed');
    expect(failed).toMatchObject({ keySetId, workflowId, activity: expect.any(String), attempt: 1, level: 40 });
    expect(lines.filter((l) => l.msg === 'activity attempt failed').map((l) => l.attempt)).toEqual(expect.arrayContaining([2, 3]));
    expect((failed!.err as { message: string }).message).toContain('signing_keys');
  });

  test('key gauges are read from PostgreSQL at scrape time, and a database that is down fails no scrape', async () => {
    const { db } = suite;
    const { keySetId } = uniqueNames('gauges');
    const kekRing = randomKekRing();
    const keyStore = new KeyStore(db.pool, kekRing);
    const driver = await KeySetDriver.register(keyStore, keySetId, { ...testPolicy('ES256'), rotationPeriod: '30d', prepublish: '5d' });
    await driver.rotate();
    await driver.rotate();
    const keys = await keyStore.listKeys(keySetId);
    const active = keys.find((k) => k.state === 'active')!;

    const registry = createMetricsRegistry();
    const now = active.activatedAt! + 2 * DAY;
    await registerKeyStateMetrics(registry, keyStore, () => now);
    expect(await sample(registry, 'keyturn_keys', { key_set: keySetId, state: 'active' })).toBe(1);
    expect(await sample(registry, 'keyturn_keys', { key_set: keySetId, state: 'grace' })).toBe(1);
    expect(await sample(registry, 'keyturn_keys', { key_set: keySetId, state: 'revoked' })).toBe(0);
    expect(await sample(registry, 'keyturn_active_key_age_seconds', { key_set: keySetId })).toBe(2 * 86_400);
    expect(await sample(registry, 'keyturn_rotation_period_seconds', { key_set: keySetId })).toBe(30 * 86_400);
    expect(await sample(registry, 'keyturn_last_rotation_timestamp_seconds', { key_set: keySetId })).toBe(active.activatedAt! / 1000);
    // The grace key retires (after the test policy's 10 minutes) long before the next key is due (25 days on).
    const demotedAt = keys.find((k) => k.state === 'grace')!.demotedAt!;
    expect(await sample(registry, 'keyturn_next_transition_timestamp_seconds', { key_set: keySetId, transition: 'retire' })).toBe(
      (demotedAt + 10 * 60_000) / 1000,
    );
    expect(await sample(registry, 'keyturn_database_up')).toBe(1);
    // Counters exist at 0 before their first event, so that Prometheus' increase() sees that event.
    expect(await sample(registry, 'keyturn_rotations_total', { key_set: keySetId, trigger: 'scheduled' })).toBe(0);
    expect(await sample(registry, 'keyturn_rotation_failures_total', { key_set: keySetId, step: 'promoteNextKey' })).toBe(0);

    // A new key shows at the next scrape, with no restart and nothing kept in memory.
    await driver.addNext();
    expect(await sample(registry, 'keyturn_keys', { key_set: keySetId, state: 'next' })).toBe(1);

    // Served over HTTP by the worker's metrics server.
    const server = await startMetricsServer({ port: await freePort(), host: '127.0.0.1', registry, logger: pino({ level: 'silent' }) });
    try {
      const response = await fetch(server.url);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toContain('text/plain');
      const text = await response.text();
      expect(text).toContain(`keyturn_keys{key_set="${keySetId}",state="next"} 1`);
      expect(text).toContain('process_cpu_seconds_total');
      expect((await fetch(server.url.replace('/metrics', '/other'))).status).toBe(404);
    } finally {
      await server.close();
    }

    const unreachable = new Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none', connectionTimeoutMillis: 500 });
    try {
      const downRegistry = createMetricsRegistry();
      await registerKeyStateMetrics(downRegistry, new KeyStore(unreachable, kekRing));
      expect(await sample(downRegistry, 'keyturn_database_up')).toBe(0);
      expect(await sample(downRegistry, 'keyturn_keys')).toBeUndefined();
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
        await Promise.all(INCIDENT_KINDS.map(async (kind) => [kind, await sample(registry, 'keyturn_open_incidents', { key_set: keySetId, kind })])),
      );
    expect(await openIncidents()).toEqual({ step_failure: 0, promotion_held: 0, invariant_broken: 0, workflow_stopped: 0 });

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
    const failing = await assessAlert({ alert: { ...alert, incident: STEP_FAILURE_INCIDENT, status: 'firing' }, open: null, at: Date.now() });
    await assessAlert({ alert: { ...alert, incident: propagationIncident(kid), status: 'firing', step: 'propagation' }, open: null, at: Date.now() });
    // The supervisor's finding, in its own table.
    await new AlertIncidentStore(db.pool).recordRound({
      firing: [{ ...alert, incident: invariantIncident('NO_ACTIVE_KEY'), status: 'firing', step: 'supervisor' }],
      unjudged: () => false,
      at: Date.now(),
      reminderMs: HOUR,
    });
    expect(await openIncidents()).toEqual({ step_failure: 1, promotion_held: 1, invariant_broken: 1, workflow_stopped: 0 });

    // A repeat changes nothing; a resolution closes its incident at the next scrape.
    await assessAlert({ alert: { ...alert, incident: STEP_FAILURE_INCIDENT, status: 'firing' }, open: failing.incident, at: Date.now() + 1 });
    expect((await openIncidents()).step_failure).toBe(1);
    await assessAlert({ alert: { ...alert, incident: STEP_FAILURE_INCIDENT, status: 'resolved' }, open: failing.incident, at: Date.now() + 2 });
    expect(await openIncidents()).toEqual({ step_failure: 0, promotion_held: 1, invariant_broken: 1, workflow_stopped: 0 });
  });
});
