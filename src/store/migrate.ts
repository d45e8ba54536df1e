import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ClientBase, Pool, PoolClient } from 'pg';
import { chainUnchainedEvents } from './audit-log';

const MIGRATIONS_DIR = path.join(__dirname, 'migrations');
const MIGRATION_FILE = /^(\d+)_([a-z0-9_]+)\.sql$/;
// Any constant shared by every keyturn process: two workers starting together migrate one after the other.
const MIGRATION_LOCK = 7_263_541_001;

export interface Migration {
  version: number;
  name: string;
  sql: string;
  /**
   * Work that is better done in TypeScript than in SQL, run right after `sql` in the same
   * transaction (so inside the advisory lock too). It must change nothing when run again.
   */
  backfill?: (tx: ClientBase) => Promise<unknown>;
}

/** The TypeScript steps of the shipped migrations, by file name without `.sql`. */
const BACKFILLS: Partial<Record<string, (tx: ClientBase) => Promise<unknown>>> = {
  // Events written before the chain existed get their seq and hash, computed as new ones are.
  '003_audit_chain': chainUnchainedEvents,
};

/** The migrations shipped with keyturn, in order. */
export async function loadMigrations(): Promise<Migration[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => MIGRATION_FILE.test(f)).sort();
  return Promise.all(
    files.map(async (file) => {
      const [, version, name] = MIGRATION_FILE.exec(file)!;
      const backfill = BACKFILLS[`${version}_${name}`];
      return {
        version: Number(version),
        name,
        sql: await readFile(path.join(MIGRATIONS_DIR, file), 'utf8'),
        ...(backfill && { backfill }),
      };
    }),
  );
}

/**
 * Applies the migrations not yet recorded in `schema_migrations`, each in its own transaction.
 * Safe to run from several processes at once and as often as you like. Returns the versions applied.
 */
export async function migrate(pool: Pool, migrations?: Migration[]): Promise<number[]> {
  const shipped = migrations ?? (await loadMigrations());
  // Asked first, without the lock or any DDL: an up-to-date schema needs neither, so a role that may
  // only read and write rows (a worker run apart from `keyturn migrate`) starts as well.
  if ((await pendingMigrations(pool, shipped)).length === 0) return [];
  return withMigrationLock(pool, async (client) => {
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const newlyApplied: number[] = [];
    for (const migration of await pendingMigrations(client, shipped)) {
      await client.query('BEGIN');
      try {
        await client.query(migration.sql);
        await migration.backfill?.(client);
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
          migration.version,
          migration.name,
        ]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw new Error(`migration ${migration.version}_${migration.name} failed: ${(error as Error).message}`, {
          cause: error,
        });
      }
      newlyApplied.push(migration.version);
    }
    return newlyApplied;
  });
}

/**
 * Runs `work` on a connection that holds keyturn's migration lock, so that schema changes (and the
 * grants that follow them) from several processes run one after the other.
 */
export async function withMigrationLock<T>(pool: Pool, work: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    return await work(client);
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    client.release();
  }
}

/** The migrations of `shipped` that the database has not recorded. */
async function pendingMigrations(db: Pool | ClientBase, shipped: Migration[]): Promise<Migration[]> {
  const { rows: found } = await db.query<{ present: boolean }>(
    `SELECT to_regclass('schema_migrations') IS NOT NULL AS present`,
  );
  if (!found[0].present) return shipped;
  const { rows } = await db.query<{ version: number }>('SELECT version FROM schema_migrations');
  const applied = new Set(rows.map((r) => r.version));
  return shipped.filter((m) => !applied.has(m.version));
}
