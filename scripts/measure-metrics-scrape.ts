/**
 * One-off measurement of a `/metrics` scrape with many key sets (issue 13): fills an embedded
 * PostgreSQL with N key sets' rows by SQL (as a long-running deployment holds them: an active key
 * each, a grace or next key for some, destroyed keys from past rotations, and a few key sets an
 * alert is about), then scrapes the worker's /metrics and the JWKS server's over HTTP and prints time,
 * bytes and series.
 *
 *   npx tsx scripts/measure-metrics-scrape.ts [--key-sets 10000] [--scrapes 5] [--from /path/to/checkout]
 *
 * `--from` measures another checkout's worker metrics (its src/) on the same rows, e.g. the code before
 * the aggregated series. Not a test: figures depend on the machine and its load.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { Pool } from 'pg';
import { Registry } from 'prom-client';
import { generateSigningKey } from '../src/crypto/generate';
import { startEmbeddedPostgres } from '../src/runtime/embedded-postgres';
import { DEFAULT_POLICY } from '../src/domain/policy';
import { startJwksServer } from '../src/jwks/server';
import { createLogger } from '../src/logger';
import { migrate } from '../src/store/migrate';
import { randomKekRing } from '../test/helpers/key-set-worker';
import { freePort } from '../test/helpers/ports';

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'key-sets': { type: 'string', default: '10000' },
      scrapes: { type: 'string', default: '5' },
      from: { type: 'string' },
    },
  });
  const keySets = Number(values['key-sets']);
  const scrapes = Number(values.scrapes);
  const root = path.resolve(values.from ?? path.join(__dirname, '..'));
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-scrape-'));
  const postgres = await startEmbeddedPostgres({ dataDir, port: await freePort(), persistent: false });
  const pool = new Pool({ connectionString: postgres.url, max: 10 });
  pool.on('error', () => undefined); // connections PostgreSQL ends as it stops
  try {
    await migrate(pool);
    const started = Date.now();
    await fill(pool, keySets);
    const { rows } = await pool.query<{ state: string; keys: string }>(
      'SELECT state, count(*) AS keys FROM signing_keys GROUP BY state ORDER BY state',
    );
    console.log(
      `${keySets} key sets filled in ${Date.now() - started} ms: ${rows.map((r) => `${r.keys} ${r.state}`).join(', ')}`,
    );

    // The worker's /metrics, from the checkout measured.
    const { registerKeyStateMetrics } = (await import(
      path.join(root, 'src/observability/key-state-metrics')
    )) as typeof import('../src/observability/key-state-metrics');
    const { createMetricsRegistry } = (await import(
      path.join(root, 'src/observability/metrics')
    )) as typeof import('../src/observability/metrics');
    const { KeyStore } = (await import(
      path.join(root, 'src/store/key-store')
    )) as typeof import('../src/store/key-store');
    const { startMetricsServer } = (await import(
      path.join(root, 'src/observability/metrics-server')
    )) as typeof import('../src/observability/metrics-server');
    const logger = createLogger({ level: 'silent' });
    for (const perKeySet of values.from === undefined ? [false, true] : [false]) {
      const registry = createMetricsRegistry({ perKeySet });
      await registerKeyStateMetrics(registry, new KeyStore(pool, randomKekRing()));
      const server = await startMetricsServer({ port: 0, host: '127.0.0.1', registry, logger });
      try {
        await report(
          `worker /metrics${values.from ? ` (${root})` : perKeySet ? ' (KEYTURN_METRICS_PER_KEY_SET=true)' : ''}`,
          server.url,
          scrapes,
        );
      } finally {
        await server.close();
      }
    }

    // The JWKS server's, after a request to each of a thousand key sets.
    if (values.from === undefined) {
      for (const perKeySet of [false, true]) {
        const registry = perKeySet ? createMetricsRegistry({ perKeySet }) : new Registry();
        const jwks = await startJwksServer({
          port: 0,
          host: '127.0.0.1',
          pool,
          registry,
          logger,
          defaultKeySetId: 'tenant-100',
        });
        try {
          while ((await fetch(`${jwks.url}/readyz`)).status !== 200)
            await new Promise((resolve) => setTimeout(resolve, 200));
          for (let i = 21; i < 1021; i++)
            await (await fetch(`${jwks.url}/keysets/tenant-${i}/jwks.json`)).arrayBuffer();
          await report(
            `JWKS server /metrics${perKeySet ? ' (KEYTURN_METRICS_PER_KEY_SET=true)' : ''}`,
            `${jwks.url}/metrics`,
            scrapes,
          );
        } finally {
          await jwks.close();
        }
      }
    }
  } finally {
    await pool.end();
    await postgres.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

/** Scrapes `url` once to warm up, then `scrapes` times; prints the median and slowest time, bytes and series. */
async function report(what: string, url: string, scrapes: number): Promise<void> {
  await (await fetch(url)).text();
  const times: number[] = [];
  let text = '';
  // CPU time of this process (server and scraper): steadier than wall time on a shared machine.
  const cpu = process.cpuUsage();
  for (let i = 0; i < scrapes; i++) {
    const started = process.hrtime.bigint();
    text = await (await fetch(url)).text();
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  const { user, system } = process.cpuUsage(cpu);
  times.sort((a, b) => a - b);
  const series = text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
  const keySetSeries = series.filter((line) => line.includes('key_set="')).length;
  console.log(
    `${what}: median ${times[Math.floor(times.length / 2)].toFixed(0)} ms, slowest ${times[times.length - 1].toFixed(0)} ms, ` +
      `${((user + system) / 1000 / scrapes).toFixed(0)} ms of CPU per scrape (load average ${os.loadavg()[0].toFixed(1)}), ` +
      `${Buffer.byteLength(text)} bytes, ${series.length} series (${series.filter((l) => l.startsWith('keyturn_')).length} keyturn_*, ${keySetSeries} with a key_set label)`,
  );
}

/**
 * Key sets `tenant-1` to `tenant-N` under the default policy (30d rotation, 5d ahead, 5d grace, 1d
 * retirement): 1–5 have no key yet, 6–15 an active key 40 days old (overdue), 16–20 an open
 * step-failure incident. The others are spread over their rotation period, each where the workflow
 * would have it: an active key promoted (i % 30) days and an hour ago, its predecessor in grace for
 * 5 days then retired for a day, a next key published from day 25 on, and three destroyed keys from
 * past rotations. Real public keys (a kid is their thumbprint, as the JWKS server checks), shared
 * between key sets: the metrics never read them.
 */
async function fill(pool: Pool, count: number): Promise<void> {
  const [active, previous, next] = await Promise.all([
    generateSigningKey('ES256'),
    generateSigningKey('ES256'),
    generateSigningKey('ES256'),
  ]);
  const now = 'to_timestamp($1::float8 / 1000)';
  const activatedAt = `${now} - CASE WHEN i BETWEEN 6 AND 15 THEN interval '40 days' ELSE (i % 30) * interval '1 day' + interval '1 hour' END`;
  const jwk = (key: typeof active) => JSON.stringify(key.publicJwk);
  await pool.query(
    `INSERT INTO key_sets (id, policy) SELECT 'tenant-' || i, $1::jsonb FROM generate_series(1, $2::int) i`,
    [JSON.stringify(DEFAULT_POLICY), count],
  );
  await pool.query(
    `INSERT INTO signing_keys (key_set_id, kid, alg, state, public_jwk, created_at, listed_at, promotable_at, activated_at, token_ttl_ms)
     SELECT 'tenant-' || i, $2, 'ES256', 'active', $3::jsonb, ${activatedAt} - interval '5 days', ${activatedAt} - interval '5 days',
            ${activatedAt} - interval '5 days' + interval '15 minutes', ${activatedAt}, 3600000
       FROM generate_series(6, $4::int) i`,
    [Date.now(), active.kid, jwk(active), count],
  );
  // The previous key: in grace for 5 days after the promotion, then retired for a day.
  await pool.query(
    `INSERT INTO signing_keys (key_set_id, kid, alg, state, public_jwk, created_at, activated_at, demoted_at, grace_ends_at, retired_at, token_ttl_ms)
     SELECT 'tenant-' || i, $2, 'ES256', CASE WHEN i % 30 < 5 THEN 'grace' ELSE 'retired' END, $3::jsonb,
            ${activatedAt} - interval '35 days', ${activatedAt} - interval '30 days', ${activatedAt}, ${activatedAt} + interval '5 days',
            CASE WHEN i % 30 < 5 THEN NULL ELSE ${activatedAt} + interval '5 days' END, 3600000
       FROM generate_series(21, $4::int) i WHERE i % 30 < 6`,
    [Date.now(), previous.kid, jwk(previous), count],
  );
  await pool.query(
    `INSERT INTO signing_keys (key_set_id, kid, alg, state, public_jwk, created_at, listed_at, promotable_at)
     SELECT 'tenant-' || i, $2, 'ES256', 'next', $3::jsonb, ${activatedAt} + interval '25 days', ${activatedAt} + interval '25 days',
            ${activatedAt} + interval '25 days' + interval '15 minutes'
       FROM generate_series(21, $4::int) i WHERE i % 30 >= 25`,
    [Date.now(), next.kid, jwk(next), count],
  );
  await pool.query(
    `INSERT INTO signing_keys (key_set_id, kid, alg, state, public_jwk, created_at, activated_at, demoted_at, retired_at, destroyed_at)
     SELECT 'tenant-' || i, 'destroyed-' || n, 'ES256', 'destroyed', $1::jsonb, now() - n * interval '30 days' - interval '40 days',
            now() - n * interval '30 days' - interval '35 days', now() - n * interval '30 days' - interval '5 days',
            now() - n * interval '30 days', now() - n * interval '30 days' + interval '1 day'
       FROM generate_series(16, $2::int) i, generate_series(1, 3) n`,
    [jwk(active), count],
  );
  await pool.query(
    `INSERT INTO key_set_incidents (key_set_id, incident, step, opened_at) SELECT 'tenant-' || i, 'step-failure', 'generateNext', now() FROM generate_series(16, 20) i`,
  );
  await pool.query('ANALYZE');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
