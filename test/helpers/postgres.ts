import { randomBytes } from 'node:crypto';
import { escapeIdentifier, Pool } from 'pg';
import type { DatabaseRoles } from '../../src/store/database-roles';
import { migrate } from '../../src/store/migrate';

export interface TestDatabase {
  pool: Pool;
  url: string;
  /**
   * Cuts every client off the database, as an outage would for them: new connections are refused
   * (ALLOW_CONNECTIONS false) and open ones end, LISTEN connections included. Resolves with the
   * function that lets clients connect again.
   */
  cutOff(): Promise<() => Promise<void>>;
  drop(): Promise<void>;
}

/**
 * A pool of a test's own beside its database's (the JWKS server's, a process's view): its idle
 * connections may be ended under it, by the database's drop at the end or by a fault the test makes,
 * which is expected and must not crash the test file as an unhandled 'error' event.
 */
export function sidePool(connectionString: string, max: number): Pool {
  const pool = new Pool({ connectionString, max });
  pool.on('error', () => undefined);
  return pool;
}

/** A fresh, migrated database in the run's PostgreSQL, so test files never see each other's keys. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const serverUrl = process.env.KEYTURN_TEST_DATABASE_URL;
  if (!serverUrl)
    throw new Error(
      'KEYTURN_TEST_DATABASE_URL is not set: run the tests through jest (its global setup starts PostgreSQL)',
    );
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
    async cutOff() {
      pool.on('error', () => undefined); // its idle connections are ended too
      await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name]);
      return async () => {
        await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
      };
    },
    async drop() {
      // DROP ... WITH (FORCE) ends connections the pool is still closing; that error is expected.
      pool.on('error', () => undefined);
      await pool.end();
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}

/** A role of the run's PostgreSQL that logs in with a password, made by its superuser as a DBA would. */
export interface TestRole {
  name: string;
  /** `databaseUrl` with this role's name and password in place of the superuser's. */
  urlFor(databaseUrl: string): string;
}

/** Role names no other test file uses (roles belong to the whole server, not to one database). */
export function uniqueRoles(): DatabaseRoles {
  const suffix = randomBytes(4).toString('hex');
  return { jwks: `keyturn_jwks_${suffix}`, worker: `keyturn_worker_${suffix}`, signer: `keyturn_signer_${suffix}` };
}

/** Creates `name` with LOGIN, a password and `attributes` (e.g. `NOCREATEROLE`). */
export async function createLoginRole(name: string, attributes = ''): Promise<TestRole> {
  const password = randomBytes(12).toString('hex');
  await asSuperuser((admin) =>
    admin.query(`CREATE ROLE ${escapeIdentifier(name)} LOGIN PASSWORD '${password}' ${attributes}`),
  );
  return {
    name,
    urlFor(databaseUrl) {
      const url = new URL(databaseUrl);
      url.username = name;
      url.password = password;
      return url.toString();
    },
  };
}

/** Drops roles once the databases that granted them anything are dropped; missing ones are skipped. */
export async function dropRoles(names: string[]): Promise<void> {
  await asSuperuser(async (admin) => {
    for (const name of names) await admin.query(`DROP ROLE IF EXISTS ${escapeIdentifier(name)}`);
  });
}

async function asSuperuser<T>(work: (admin: Pool) => Promise<T>): Promise<T> {
  const admin = new Pool({ connectionString: process.env.KEYTURN_TEST_DATABASE_URL, max: 1 });
  try {
    return await work(admin);
  } finally {
    await admin.end();
  }
}

/** Closes the database connections of keyturn's LISTEN clients named `applicationName`, as a network failure would. */
export async function terminateListeners(pool: Pool, applicationName: string): Promise<number> {
  const { rows } = await pool.query<{ terminated: boolean }>(
    `SELECT pg_terminate_backend(pid) AS terminated FROM pg_stat_activity
      WHERE application_name = $1 AND datname = current_database()`,
    [applicationName],
  );
  return rows.filter((r) => r.terminated).length;
}
