import { Pool } from 'pg';
import { Registry } from 'prom-client';
import { startJwksServer, type RunningJwksServer } from '../../src/jwks/server';
import { createLogger } from '../../src/logger';
import { KeyStore } from '../../src/store/key-store';
import { KeySetDriver, testPolicy } from '../helpers/key-sets';
import { waitFor } from '../helpers/wait';
import { randomKekRing } from '../helpers/key-set-worker';
import { createTestDatabase, type TestDatabase, sidePool } from '../helpers/postgres';

// With many key sets, one key set's change must cost the JWKS server that key set's rebuild only:
// every query the server sends is recorded (its pool is pg's, with query() wrapped), so a change that
// made it reload others, or read every key set, would show.

const KEY_SETS = 200;

let db: TestDatabase;
let store: KeyStore;
let serverPool: Pool;
let server: RunningJwksServer;
/** Each query the JWKS server's pool ran: its SQL and its parameters. */
const queries: { text: string; values: unknown[] }[] = [];
const ids = Array.from({ length: KEY_SETS }, (_, i) => `reload-${i}`);

beforeAll(async () => {
  db = await createTestDatabase();
  store = new KeyStore(db.pool, randomKekRing());
  for (const id of ids) await (await KeySetDriver.register(store, id, testPolicy())).rotate();
  serverPool = sidePool(db.url, 4);
  const query = serverPool.query.bind(serverPool) as (text: string, values?: unknown[]) => Promise<unknown>;
  serverPool.query = ((text: string, values?: unknown[]) => {
    queries.push({ text, values: values ?? [] });
    return query(text, values);
  }) as typeof serverPool.query;
  // No poll during the test: what the server reads after the change, it reads because of its NOTIFY.
  server = await startJwksServer({
    port: 0,
    host: '127.0.0.1',
    pool: serverPool,
    registry: new Registry(),
    logger: createLogger({ level: 'silent' }),
    pollIntervalMs: 600_000,
  });
});

afterAll(async () => {
  await server?.close();
  await serverPool?.end();
  await db?.drop();
});

async function servedKids(keySetId: string): Promise<string[]> {
  const response = await fetch(`${server.url}/keysets/${keySetId}/jwks.json`);
  return ((await response.json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
}

test(`with ${KEY_SETS} key sets loaded, one key set's new key reloads that key set only`, async () => {
  // Loading read every key set: the recording works, and the start did what a start must.
  expect(new Set(queries.flatMap((q) => q.values)).size).toBeGreaterThanOrEqual(KEY_SETS);
  const changed = ids[KEY_SETS / 2];
  queries.length = 0;

  const kid = await new KeySetDriver(store, changed).addNext();
  await waitFor(
    async () => ((await servedKids(changed)).includes(kid) ? true : undefined),
    5_000,
    `${kid} in the JWKS of ${changed}`,
    10,
  );
  // Anything more the change would set off has had time to run.
  await new Promise((resolve) => setTimeout(resolve, 500));

  expect(queries.length).toBeGreaterThan(0);
  // Every query names the changed key set, and no query reads every key set (one without parameters).
  expect(queries.filter((q) => q.values.length === 0 || q.values.some((value) => value !== changed))).toEqual([]);
  // One rebuild: the key set's policy and its published keys; a second only if a change came during the first.
  expect(queries.length).toBeLessThanOrEqual(4);
  // The others are served as before, from memory.
  expect(await servedKids(ids[0])).toHaveLength(1);
});
