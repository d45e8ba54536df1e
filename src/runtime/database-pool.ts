import { Pool } from 'pg';
import { KeyturnError } from '../domain/errors';
import type { Logger } from '../logger';
import { migrate } from '../store/migrate';
import { displayDatabaseUrl, type ResolvedDatabase } from './database';

/** How many connections a pool may hold, and how long a new one may take. */
export interface PoolSizing {
  max: number;
  connectionTimeoutMillis: number;
}

/** The worker's and the JWKS server's pools: activities and requests run side by side. */
const SERVICE_POOL: PoolSizing = { max: 10, connectionTimeoutMillis: 10_000 };

/**
 * keyturn's one way to open PostgreSQL: a pg Pool on `database.url`. An idle client losing its server
 * (a restart, the embedded PostgreSQL stopping first on Ctrl-C) emits `error` on the pool; unhandled,
 * that would crash the process, so it is logged and the pool reconnects on next use.
 */
export function createPool(database: { url: string }, logger: Logger, sizing: PoolSizing = SERVICE_POOL): Pool {
  const pool = new Pool({ connectionString: database.url, ...sizing });
  pool.on('error', (error) => logger.warn({ err: error }, 'an idle PostgreSQL connection failed; it will be replaced'));
  return pool;
}

/** How long `endPool` waits for the pool's connections to close before going on regardless. */
const CONNECTIONS_CLOSE_MS = 5_000;

/**
 * Ends `pool` and waits until its connections have closed. pg's `end()` settles once the pool has
 * let go of its clients, before their connections are closed: a database stopped right after would
 * terminate them first, which the pool would log as a failed connection.
 */
export async function endPool(pool: Pool): Promise<void> {
  let open = pool.totalCount;
  const closed = new Promise<void>((resolve) => {
    if (open === 0) return resolve();
    // A connection that fails while connecting is never "removed": do not wait for it forever.
    const timer = setTimeout(resolve, CONNECTIONS_CLOSE_MS);
    pool.on('remove', () => {
      if (--open > 0) return;
      clearTimeout(timer);
      resolve();
    });
  });
  await pool.end();
  await closed;
}

/** Applies the pending migrations; an unreachable server becomes an error that says where we looked and why. */
export async function applyMigrations(pool: Pool, database: ResolvedDatabase, logger: Logger): Promise<number[]> {
  let applied: number[];
  try {
    applied = await migrate(pool);
  } catch (error) {
    const reason = error instanceof Error ? error.message || (error as NodeJS.ErrnoException).code : String(error);
    const where = `${displayDatabaseUrl(database.url)} (${sourceWords[database.source]})`;
    if (sqlState(error) === '42501') {
      // A role that may only read and write rows (KEYTURN_WORKER_ROLE) finding the schema behind.
      throw new KeyturnError(
        'ERR_SCHEMA_OUTDATED',
        `the database at ${where} lacks migrations this keyturn needs, and its role may not apply them (${reason}): ` +
          "run `keyturn migrate` with the schema owner's DATABASE_URL first, then start this again",
        { cause: error },
      );
    }
    throw new Error(`could not migrate the database at ${where}: ${reason}`, { cause: error });
  }
  logger.info(
    { applied },
    applied.length ? `applied migrations ${applied.join(', ')}` : 'database schema is up to date',
  );
  return applied;
}

/** The SQLSTATE of a pg error, also when a migration's failure wraps it. */
function sqlState(error: unknown): string | undefined {
  const { code, cause } = error as { code?: unknown; cause?: { code?: unknown } };
  const state = typeof code === 'string' ? code : cause?.code;
  return typeof state === 'string' ? state : undefined;
}

const sourceWords: Record<ResolvedDatabase['source'], string> = {
  DATABASE_URL: 'from DATABASE_URL: check it and that the server is running',
  instance: 'of the keyturn instance running on the data folder: is it still up?',
  embedded: 'the embedded PostgreSQL',
};
