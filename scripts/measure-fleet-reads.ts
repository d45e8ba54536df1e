/**
 * One-off measurement (issue 13): the supervisor round, `verify` and `status` over N key sets, read
 * at once (visibility list calls + one SQL query), against the per-key-set walk of old, with the
 * Temporal calls each made. `npx tsx scripts/measure-fleet-reads.ts [N=1000] [fleet-only]`: starts a
 * dev stack (embedded PostgreSQL, Temporal dev server) in a temporary folder, seeds N key sets with an
 * active key through the store, starts their workflows and waits until visibility lists each with its
 * ActiveKid, then times each reading twice.
 */
import { chmodSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomBytes, randomUUID } from 'node:crypto';
import { Client, Connection, makeGrpcRetryInterceptor, defaultGrpcRetryOptions, type ConnectionOptions } from '@temporalio/client';
import { Counter, Gauge, Registry } from 'prom-client';
import { Pool } from 'pg';
import { loadConfig } from '../src/config';
import { startDevStack } from '../src/dev/dev-stack';
import { createLogger } from '../src/observability/logger';
import { Kek, KekRing } from '../src/crypto/kek';
import { KeyStore } from '../src/store/key-store';
import { readKeySetRecords } from '../src/store/fleet-reading';
import { DEFAULT_POLICY, policyTimings } from '../src/domain/policy';
import { KeySetClient } from '../src/client/keyset-client';
import { mapBounded } from '../src/client/map-bounded';
import { verifyFleet, verifyKeySets } from '../src/client/verify';
import { KeySetDatabase } from '../src/client/key-set-database';
import { collectStatuses } from '../src/client/cli/commands/status';
import { createSupervisionActivities } from '../src/activities/supervise';
import { freeLoopbackPort } from '../src/runtime/port-check';

type Interceptor = NonNullable<ConnectionOptions['interceptors']>[number];

const N = Number(process.argv[2] ?? 1000);
const calls = new Map<string, number>();
const counting: Interceptor = (options, next) => {
  const method = options.method_definition.path.split('/').pop()!;
  calls.set(method, (calls.get(method) ?? 0) + 1);
  return next(options) as ReturnType<Interceptor>;
};
const counted = () => { const c = Object.fromEntries(calls); calls.clear(); return c; };

(async () => {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'measure-')); chmodSync(dataDir, 0o755);
  const kek = randomBytes(32);
  const config = loadConfig({ KEYTURN_DATA_DIR: dataDir, KEYTURN_KEK: kek.toString('base64'), LOG_LEVEL: 'silent' });
  const stack = await startDevStack({ config, logger: createLogger({ level: 'silent' }), temporalPort: await freeLoopbackPort(), uiPort: await freeLoopbackPort() });
  const cfg = loadConfig({ KEYTURN_DATA_DIR: dataDir, DATABASE_URL: stack.databaseUrl, KEYTURN_KEK: kek.toString('base64'), LOG_LEVEL: 'silent' });
  const pool = new Pool({ connectionString: stack.databaseUrl, max: 8 });
  const store = new KeyStore(pool, new KekRing([new Kek(kek)]));
  const connection = await Connection.connect({ address: stack.temporalAddress, interceptors: [counting, makeGrpcRetryInterceptor(defaultGrpcRetryOptions())] });
  const client = new Client({ connection, namespace: stack.namespace });
  const keySets = new KeySetClient(client, stack.taskQueue);
  const ids = Array.from({ length: N }, (_, i) => `m-${String(i).padStart(5, '0')}`);
  let t = Date.now();
  const timings = policyTimings(DEFAULT_POLICY);
  const change = (keySetId: string) => ({ operationId: randomUUID(), keySetId, trigger: 'manual' as const, actor: 'measure', reason: 'seed' });
  await mapBounded(ids, 16, async (id) => {
    await store.registerKeySet(change(id), { ...DEFAULT_POLICY }, { inService: true });
    const { kid } = await store.addNextKey(change(id), 'ES256');
    await store.promoteNextKey(change(id), kid, { tokenTtlMs: timings.maxTokenTtlMs, demotedGraceMs: timings.gracePeriodMs });
  });
  console.log(`seeded ${N} key sets in PostgreSQL: ${Date.now() - t} ms`);
  t = Date.now();
  await mapBounded(ids, 32, (id) => keySets.start(id, DEFAULT_POLICY));
  console.log(`started ${N} workflows: ${Date.now() - t} ms`);
  for (;;) {
    const t1 = Date.now();
    try {
      const visible = await keySets.listRunningKeySets();
      const ready = ids.filter((id) => visible.get(id)?.activeKid).length;
      console.log(`  list: ${visible.size} running, ${ready} with ActiveKid, ${Date.now() - t1} ms`);
      if (ready === N) break;
    } catch (e) { console.log(`  list failed after ${Date.now() - t1} ms: ${(e as Error).message}`); }
    await new Promise((r) => setTimeout(r, 2000));
  }
  console.log(`all visible with ActiveKid: ${Date.now() - t} ms after the starts began`);
  counted();
  const database = (await KeySetDatabase.open(cfg))!;
  t = Date.now(); await keySets.listRunningKeySets();
  console.log(`of which the visibility listing: ${Date.now() - t} ms, calls ${JSON.stringify(counted())}`);
  t = Date.now(); await readKeySetRecords(pool);
  console.log(`of which the SQL query: ${Date.now() - t} ms`);
  for (let round = 1; round <= 2; round++) {
    t = Date.now(); const fleet = await verifyFleet(keySets, database, { keyAgeToleranceMs: cfg.alerts.overdueToleranceMs });
    console.log(`verify (fleet): ${Date.now() - t} ms, ${fleet.filter((r) => r.violations.length || r.problem).length} failing, calls ${JSON.stringify(counted())}`);
    t = Date.now(); const { entries } = await collectStatuses(keySets, cfg);
    console.log(`status (fleet): ${Date.now() - t} ms, ${entries.length} entries, calls ${JSON.stringify(counted())}`);
    const registry = new Registry();
    const supervision = createSupervisionActivities({ keyStore: store, temporalClient: client, taskQueue: stack.taskQueue, keyAgeToleranceMs: cfg.alerts.overdueToleranceMs,
      metrics: { supervisorRounds: new Counter({ name: 'r', help: 'r', labelNames: ['outcome'], registers: [registry] }), supervisorUncheckedKeySets: new Gauge({ name: 'u', help: 'u', registers: [registry] }) } });
    t = Date.now(); const report = await supervision.superviseKeySets({ at: Date.now() });
    console.log(`supervisor round (fleet): ${Date.now() - t} ms, ${report.keySets} key sets, ${report.violations.length} violations, ${report.restarted.length} restarted, ${report.failed.length} failed, calls ${JSON.stringify(counted())}`);
  }
  if (process.argv[3] !== 'fleet-only') {
    t = Date.now(); const walk = await verifyKeySets(keySets, database, ids, { keyAgeToleranceMs: cfg.alerts.overdueToleranceMs });
    console.log(`verify (per key set, 8 at a time): ${Date.now() - t} ms, ${walk.filter((r) => r.violations.length || r.problem).length} failing, calls ${JSON.stringify(counted())}`);
  }
  await database.close(); await pool.end(); await connection.close(); await stack.stop();
})().catch((e) => { console.error(e); process.exit(1); });
