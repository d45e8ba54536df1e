import { Client, Connection } from '@temporalio/client';
import { Counter, Gauge, Registry } from 'prom-client';
import { createSupervisionActivities } from '../../src/activities/supervise';
import { collectStatuses } from '../../src/cli/commands/status';
import { statusJson, type StatusJson } from '../../src/cli/output';
import { readFleet } from '../../src/client/fleet-check';
import { mapBounded } from '../../src/client/map-bounded';
import { KeySetDatabase } from '../../src/client/key-set-database';
import { KeySetClient } from '../../src/client/key-set-client';
import { settledReading, verifyFleet, verifyKeySets } from '../../src/client/verify';
import { loadConfig, type Config } from '../../src/config';
import { generateSigningKey } from '../../src/crypto/generate';
import { Kek, KekRing } from '../../src/crypto/kek';
import { checkInvariants } from '../../src/domain/invariants';
import type { KeySetStatus } from '../../src/domain/key-set-state';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { readKeySetRecords } from '../../src/store/fleet-reading';
import { KeyStore } from '../../src/store/key-store';
import { startTestDevStack, type TestDevStack } from '../helpers/dev-stack';
import { KeySetDriver } from '../helpers/key-sets';
import { waitFor } from '../helpers/wait';

// The supervisor, `verify` and `status` read every key set at once (one SQL query, visibility list
// calls) and look at a key set one by one only where the two leave a doubt. Here, on the dev server
// (SQLite visibility), a few hundred key sets, some broken on purpose, are read both ways and the
// answers compared key set by key set: the fleet reading must find exactly what the per-key-set
// walk finds, no more (a lagging visibility is no violation) and no less.

const COUNT = 200;
const ids = Array.from({ length: COUNT }, (_, i) => `fleet-${String(i).padStart(3, '0')}`);
const [terminated, rewrittenTime, rewrittenJwk, rewrittenActivation, rotating, paused] = [
  ids.slice(0, 3),
  ids.slice(10, 12),
  ids.slice(20, 22),
  ids.slice(30, 32),
  ids.slice(40, 43),
  ids.slice(50, 52),
];
const unstarted = 'fleet-unstarted';

let running: TestDevStack;
let connection: Connection;
let client: Client;
let keySets: KeySetClient;
let database: KeySetDatabase;
let config: Config;
let store: KeyStore;

beforeAll(async () => {
  running = await startTestDevStack('fleet');
  const { stack, db, kek } = running;
  config = loadConfig({
    KEYTURN_DATA_DIR: running.dataDir,
    DATABASE_URL: db.url,
    KEYTURN_KEK: kek,
    LOG_LEVEL: 'silent',
  });
  connection = await Connection.connect({ address: stack.temporalAddress });
  client = new Client({ connection, namespace: stack.namespace });
  // Both ways must answer alike, not fast: a loaded machine's worker may take longer than 10 s to answer a query.
  keySets = new KeySetClient(client, stack.taskQueue, { answerTimeoutMs: 60_000 });
  database = (await KeySetDatabase.open(config))!;
  store = new KeyStore(db.pool, new KekRing([new Kek(Buffer.from(kek, 'base64'))]));

  // Keys first, through the store as the bootstrap would write them, so that each workflow starts
  // with an active key to resume from instead of bootstrapping: the key sets are ready in seconds.
  await mapBounded([...ids, unstarted], 16, async (id) =>
    (await KeySetDriver.register(store, id, { ...DEFAULT_POLICY })).rotate(),
  );
  await mapBounded(ids, 32, (id) => stack.keySets.start(id, DEFAULT_POLICY));
  await waitFor(
    async () => {
      const visible = await keySets.listRunningKeySets();
      return ids.every((id) => visible.get(id)?.activeKid) || undefined;
    },
    200_000,
    `visibility listing all ${COUNT} key sets with their active kid`,
    500,
  );
}, 300_000);

afterAll(async () => {
  await database?.close();
  await connection?.close();
  await running?.stop();
});

test('a key row changed outside keyturn is told apart by its fingerprint until it is put back', async () => {
  const [id] = rewrittenTime;
  const rewritten = async () => (await readKeySetRecords(running.db.pool)).find((r) => r.id === id)!.rewritten;
  expect(await rewritten()).toEqual([]);
  await running.db.pool.query(`UPDATE signing_keys SET demoted_at = now() WHERE key_set_id = $1 AND state = 'active'`, [
    id,
  ]);
  const [kid] = await rewritten();
  expect(kid).toBeDefined();
  await running.db.pool.query(`UPDATE signing_keys SET demoted_at = NULL WHERE key_set_id = $1 AND kid = $2`, [
    id,
    kid,
  ]);
  expect(await rewritten()).toEqual([]);
});

test('with some key sets broken, the fleet answers of verify, status and the supervisor equal the per-key-set answers', async () => {
  const { db } = running;
  for (const id of terminated) await client.workflow.getHandle(`keyset/${id}`).terminate('fleet test: a workflow gone');
  for (const id of rewrittenTime)
    await db.pool.query(`UPDATE signing_keys SET demoted_at = now() WHERE key_set_id = $1 AND state = 'active'`, [id]);
  for (const id of rewrittenJwk) {
    const other = await generateSigningKey('ES256');
    await db.pool.query(`UPDATE signing_keys SET public_jwk = $2 WHERE key_set_id = $1 AND state = 'active'`, [
      id,
      JSON.stringify(other.publicJwk),
    ]);
  }
  // Signing for 40 days under a 30-day rotation period: PostgreSQL alone sees the active key is too old.
  for (const id of rewrittenActivation) {
    await db.pool.query(
      `UPDATE signing_keys SET activated_at = activated_at - interval '40 days' WHERE key_set_id = $1 AND state = 'active'`,
      [id],
    );
  }
  await Promise.all(rotating.map((id) => keySets.rotate(id, { reason: 'fleet drill' })));
  await Promise.all(paused.map((id) => keySets.pause(id, 'fleet maintenance')));
  await waitFor(
    async () =>
      (await Promise.all(paused.map((id) => keySets.getState(id)))).every((s) => s.paused) ? true : undefined,
    15_000,
    'the pauses',
    200,
  );
  await waitFor(
    async () => {
      const visible = await keySets.listRunningKeySets();
      return terminated.every((id) => !visible.has(id)) || undefined;
    },
    15_000,
    'visibility to drop the terminated workflows',
    200,
  );
  const now = Date.now();
  const everyId = [...ids, unstarted].sort();
  // Only the broken ones are looked at one by one: the rotating and the paused agree with visibility.
  const reading = await readFleet(keySets, db.pool, now, { keyAgeMs: config.alerts.overdueToleranceMs });
  expect([...reading.doubts.keys()].sort()).toEqual(
    [...terminated, ...rewrittenTime, ...rewrittenJwk, ...rewrittenActivation, unstarted].sort(),
  );

  // verify
  const perKeySet = await verifyKeySets(keySets, database, everyId, { now: () => now });
  const fleet = await verifyFleet(keySets, database, { now: () => now });
  expect(fleet).toEqual(perKeySet);
  const failing = perKeySet.filter((r) => r.problem !== null || r.violations.length > 0).map((r) => r.keySetId);
  expect(failing).toEqual(
    expect.arrayContaining([...rewrittenTime, ...rewrittenJwk, ...rewrittenActivation, unstarted]),
  );
  expect(fleet.find((r) => r.keySetId === rewrittenTime[0])!.violations).toEqual([
    expect.objectContaining({ code: 'TIME_MISMATCH' }),
  ]);
  expect(fleet.find((r) => r.keySetId === rewrittenJwk[0])!.violations.map((v) => v.code)).toContain('KID_MISMATCH');
  expect(fleet.find((r) => r.keySetId === rewrittenActivation[0])!.violations.map((v) => v.code)).toEqual(
    expect.arrayContaining(['TIME_MISMATCH', 'ACTIVE_KEY_TOO_OLD']),
  );
  for (const id of [...rotating, ...paused]) expect(failing).not.toContain(id);

  // status: what every key set's workflow answers, as far as `status` shows it
  const { entries } = await collectStatuses(keySets, config);
  expect(entries.map((e) => ('error' in e ? e.id : e.keySetId))).toEqual(everyId);
  const answers = await mapBounded(everyId, 8, async (id) => {
    try {
      return shown(await keySets.getState(id));
    } catch (error) {
      return { id, error: (error as Error).message };
    }
  });
  expect(entries.map((e) => ('error' in e ? e : shown(e)))).toEqual(answers);
  const rotatingEntry = entries.find((e) => 'keySetId' in e && e.keySetId === rotating[0]) as KeySetStatus;
  expect(rotatingEntry.keys.map((k) => k.state)).toEqual(['active', 'next']);
  expect(rotatingEntry.rotation).toMatchObject({ reason: 'fleet drill' });

  // the supervisor: what the walk of old would have restarted and found
  const at = Date.now();
  const walk = await mapBounded(everyId, 8, async (id) => {
    if (!(await keySets.isRunning(id))) return { id, restart: true, violations: [] };
    const { status, stored } = await settledReading(keySets, store.pool, id);
    return {
      id,
      restart: false,
      violations: checkInvariants(status, stored, at, { keyAgeMs: config.alerts.overdueToleranceMs }),
    };
  });
  const expected = {
    keySets: everyId.length,
    restarted: walk.filter((w) => w.restart).map((w) => w.id),
    violations: walk.flatMap((w) => w.violations),
    failed: [],
  };
  expect(expected.restarted).toEqual([...terminated, unstarted].sort());
  const registry = new Registry();
  const supervision = createSupervisionActivities({
    keyStore: store,
    temporalClient: client,
    taskQueue: running.stack.taskQueue,
    keyAgeToleranceMs: config.alerts.overdueToleranceMs,
    metrics: {
      supervisorRounds: new Counter({ name: 'rounds', help: 'rounds', labelNames: ['outcome'], registers: [registry] }),
      supervisorUncheckedKeySets: new Gauge({ name: 'unchecked', help: 'unchecked', registers: [registry] }),
    },
  });
  expect(await supervision.superviseKeySets({ at })).toEqual(expected);
  // Restarted, they are running again, and the next round settles them from visibility.
  await Promise.all(expected.restarted.map((id) => keySets.waitForActiveKid(id)));
  expect(await keySets.isRunning(terminated[0])).toBe(true);
}, 300_000);

/**
 * What `status` shows of a key set, minus what only the workflow knows to the millisecond: when a
 * pause or a rotation was asked for is the audit event's commit time in a reading from PostgreSQL.
 */
function shown(
  status: KeySetStatus,
): Omit<StatusJson, 'paused' | 'rotation'> & { paused: string | null; rotation: string | null } {
  const json = statusJson(status);
  return {
    ...json,
    paused: json.paused?.reason ?? null,
    rotation: json.rotation ? `${json.rotation.reason} ${json.rotation.immediately}` : null,
  };
}
