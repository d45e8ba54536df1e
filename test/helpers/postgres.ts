import { randomBytes } from 'node:crypto';
import { Pool } from 'pg';
import { migrate } from '../../src/store/migrate';

export interface TestDatabase {
  pool: Pool;
  url: string;
  drop(): Promise<void>;
}

/** A fresh, migrated database in the run's PostgreSQL, so test files never see each other's keys. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const serverUrl = process.env.KEYTURN_TEST_DATABASE_URL;
  if (!serverUrl) throw new Error('KEYTURN_TEST_DATABASE_URL is not set: run the tests through jest (its global setup starts PostgreSQL)');
  const name = `keyturn_test_${randomBytes(6).toString('hex')}`;
  const admin = new Pool({ connectionString: serverUrl, max: 1 });
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const pool = new Pool({ connectionString: url.toString(), max: 5 });
  await migrate(pool);
  return {
    pool,
    url: url.toString(),
    async drop() {
      // DROP ... WITH (FORCE) ends connections the pool is still closing; that error is expected.
      pool.on('error', () => undefined);
      await pool.end();
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}
