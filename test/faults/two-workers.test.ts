import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import type { Pool } from 'pg';
import { sidePool } from '../helpers/postgres';
import { KeySetClient } from '../../src/client/key-set-client';
import { parseKekRing } from '../../src/crypto/kek';
import { policyTimings, validatePolicy } from '../../src/domain/policy';
import { KeyRing } from '../../src/issuer/key-ring';
import { createLogger } from '../../src/logger';
import { ExternalPostgres } from '../helpers/external-postgres';
import { keySetProblems } from '../helpers/key-set-problems';
import { secondsPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { waitFor } from '../helpers/wait';
import {
  keyturnEnv,
  runKeyturnProcess,
  startJwksServer,
  startWorker,
  type Deployment,
} from '../helpers/keyturn-processes';
import type { ManagedProcess } from '../../src/runtime/managed-process';
import { ProcessGroup } from '../helpers/processes';
import { TemporalServer } from '../helpers/temporal-server';
import { TokenTraffic } from '../helpers/token-traffic';

// Two `keyturn worker` processes on one task queue, as a deployment scales out: a few dozen key sets
// on seconds-long policies are shared between them, one worker is SIGKILLed mid-run, and the other
// carries every key set on. Tokens are signed throughout and checked by a caching verifier per key set.

/**
 * Seconds-long, a key signing 12 s: twice secondsPolicy's period, so that one worker alone keeps two
 * dozen key sets rotating on a busy 2-core machine (each rotation is five key changes).
 */
const POLICY = validatePolicy({ ...secondsPolicy(), rotationPeriod: '12s', prepublish: '6s' });
const KEY_SETS = 24;
const QUEUE = 'keyturn';
/** Promotions each key set must make after the kill: it kept rotating, not just finished what was in flight. */
const PROMOTIONS_AFTER_KILL = 2;
/** Until every key set has rotated once with both workers up: two periods, and room for a busy machine. */
const MID_RUN_TIMEOUT_MS = 120_000;
/** A killed worker's key changes are retried once their 10 s start-to-close timeout ends; two rotations follow. */
const RECOVERY_TIMEOUT_MS = 120_000;

const logger = createLogger({ level: 'silent' });
const infrastructure = new ProcessGroup();
const keyturn = new ProcessGroup();
let postgres: ExternalPostgres;
let temporal: TemporalServer;
let deployment: Deployment & { jwksUrl: string };
let pool: Pool;
let connection: Connection;
let keySets: KeySetClient;
let ring: KeyRing;
let workers: ManagedProcess[];

beforeAll(async () => {
  [postgres, temporal] = await Promise.all([
    ExternalPostgres.start(infrastructure),
    TemporalServer.start(infrastructure),
  ]);
  const base: Deployment = {
    databaseUrl: postgres.url,
    kek: randomBytes(32).toString('base64'),
    temporalAddress: temporal.address,
    taskQueue: QUEUE,
  };
  const migrated = await runKeyturnProcess(keyturn, ['migrate'], keyturnEnv(base));
  if (migrated.code !== 0) throw new Error(`keyturn migrate failed: ${migrated.output}`);
  deployment = { ...base, jwksUrl: (await startJwksServer(keyturn, base)).url };
  // One after the other: each bundles the workflow sources at start, which two at once would make slower still.
  workers = [await startWorker(keyturn, deployment), await startWorker(keyturn, deployment)];
  pool = sidePool(postgres.url, 4);
  connection = await Connection.connect({ address: temporal.address });
  keySets = new KeySetClient(new Client({ connection }), QUEUE);
  // Its tokens' iss: any URL will do, the verifier here checks keys and lifetimes.
  ring = await KeyRing.open({
    databaseUrl: postgres.url,
    kekRing: parseKekRing(deployment.kek),
    logger,
    publicUrl: 'https://keys.example.com',
  });
}, 300_000);

afterAll(async () => {
  await ring?.close();
  await pool?.end();
  await connection?.close();
  await keyturn.stopAll();
  await infrastructure.stopAll();
  await postgres?.remove();
  await temporal?.remove();
}, 120_000);

/** The key sets whose changes a worker committed, by the audit event lines it logged (the end of its output). */
function keySetsChangedBy(worker: ManagedProcess, ids: readonly string[]): string[] {
  const auditLines = worker
    .output()
    .split('\n')
    .filter((line) => line.includes('"msg":"audit event"'));
  return ids.filter((id) => auditLines.some((line) => line.includes(`"keySetId":"${id}"`)));
}

async function promotionsSince(keySetId: string, since: number): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM audit_events WHERE key_set_id = $1 AND event = 'promoted' AND occurred_at > $2`,
    [keySetId, new Date(since)],
  );
  return Number(rows[0].n);
}

test('two workers share the key sets, and when one is SIGKILLed mid-run the other keeps every key set rotating', async () => {
  const ids = Array.from({ length: KEY_SETS }, (_, i) => uniqueKeySetId(`two-workers-${i}`));
  const traffic = new TokenTraffic(ring, deployment.jwksUrl, ids, 500);
  const [doomed, survivor] = workers;
  let problems: Map<string, string[]>;
  try {
    // Started across one rotation period, so that some key change is always due: the kill lands among them.
    const spacingMs = policyTimings(POLICY).rotationPeriodMs / KEY_SETS;
    await Promise.all(ids.map(async (id, i) => (await sleep(i * spacingMs), await keySets.start(id, POLICY))));
    // Mid-run: every key set bootstrapped and into its first rotation, each worker having changed keys of some.
    await waitFor(
      async () => (await Promise.all(ids.map((id) => promotionsSince(id, 0)))).every((n) => n >= 2) || undefined,
      MID_RUN_TIMEOUT_MS,
      'every key set to promote twice',
      250,
    );
    expect(keySetsChangedBy(doomed, ids).length).toBeGreaterThan(0);
    expect(keySetsChangedBy(survivor, ids).length).toBeGreaterThan(0);

    await doomed.kill();
    const killedAt = Date.now();
    const promotedSinceKill = () =>
      Promise.all(ids.map(async (id) => [id, await promotionsSince(id, killedAt)] as const));
    await waitFor(
      async () => (await promotedSinceKill()).every(([, n]) => n >= PROMOTIONS_AFTER_KILL) || undefined,
      RECOVERY_TIMEOUT_MS,
      `every key set to promote ${PROMOTIONS_AFTER_KILL} keys after the worker was killed`,
      500,
    ).catch(async (error: Error) => {
      const behind = (await promotedSinceKill()).filter(([, n]) => n < PROMOTIONS_AFTER_KILL);
      throw new Error(
        `${error.message}; promotions since the kill of those behind: ${behind.map(([id, n]) => `${id} ${n}`).join(', ')}`,
      );
    });
  } finally {
    // Checked as they stand: paused, each step in flight finished, every token signed verified to its end.
    await Promise.allSettled(ids.map((id) => keySets.pause(id, 'checked by the two-workers test')));
    for (const id of ids) {
      await waitFor(
        async () => (await keySets.getState(id)).inFlight === null || undefined,
        60_000,
        `${id} to finish its step`,
        100,
      ).catch(() => undefined);
    }
    await traffic.stop();
    problems = new Map(
      await Promise.all(ids.map(async (id) => [id, await keySetProblems(pool, id, POLICY, traffic)] as const)),
    );
  }
  expect(traffic.counts.issued).toBeGreaterThan(0);
  expect([...problems].filter(([, found]) => found.length > 0)).toEqual([]);

  const { code, output } = await runKeyturnProcess(
    keyturn,
    ['verify', '--json'],
    keyturnEnv(deployment, { LOG_LEVEL: 'warn' }),
    120_000,
  );
  const json = /^\{"ok".*$/m.exec(output);
  if (!json) throw new Error(`keyturn verify printed no JSON (exit ${code}): ${output}`);
  const { keySets: verified } = JSON.parse(json[0]) as { keySets: { id: string; ok: boolean }[] };
  expect(ids.filter((id) => !verified.some((k) => k.id === id && k.ok))).toEqual([]);
  expect(code).toBe(0);
  // The survivor alone ran the key changes after the kill.
  expect(survivor.running).toBe(true);
}, 420_000);
