import { Pool } from 'pg';
import { createPool, endPool } from '../../src/runtime/database-pool';
import { capturingLogger } from '../helpers/logs';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';

let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase();
});

afterAll(() => database.drop());

/** The connections PostgreSQL still serves under `applicationName`. */
async function serverSideConnections(applicationName: string): Promise<number> {
  const { rows } = await database.pool.query<{ count: string }>(
    'SELECT count(*) FROM pg_stat_activity WHERE application_name = $1',
    [applicationName],
  );
  return Number(rows[0].count);
}

// A database stopped right after its pool must find no connection of it left: one it had to terminate
// would be logged as a failed connection on the way down (Ctrl-C on `keyturn dev`).
test('endPool settles only once every connection of the pool has closed', async () => {
  const applicationName = `end-pool-${process.pid}`;
  const url = new URL(database.url);
  url.searchParams.set('application_name', applicationName);
  const { logger, text } = capturingLogger();
  const pool = createPool({ url: url.toString() }, logger, { max: 3, connectionTimeoutMillis: 5_000 });
  const clients = await Promise.all([pool.connect(), pool.connect(), pool.connect()]);
  clients.forEach((client) => client.release());
  expect(await serverSideConnections(applicationName)).toBe(3);

  let removed = 0;
  pool.on('remove', () => removed++);
  await endPool(pool);

  // pg's own end() settles before these happen.
  expect(removed).toBe(3);
  expect(pool.totalCount).toBe(0);
  expect(text()).toBe('');
});

test('endPool on a pool that never connected settles at once', async () => {
  const pool = new Pool({ connectionString: database.url });
  await endPool(pool);
  expect(pool.ended).toBe(true);
});
