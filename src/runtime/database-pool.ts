import { Pool } from 'pg';
import type { Logger } from '../observability/logger';
import { migrate } from '../store/migrate';
import { displayDatabaseUrl, type ResolvedDatabase } from './database';

/**
 * A pg Pool on the resolved database. An idle client losing its server (a restart, the embedded
 * PostgreSQL stopping first on Ctrl-C) emits `error` on the pool; unhandled, that would crash the
 * process, so it is logged and the pool reconnects on next use.
 */
export function createPool(database: ResolvedDatabase, logger: Logger): Pool {
  const pool = new Pool({ connectionString: database.url, max: 10, connectionTimeoutMillis: 10_000 });
  pool.on('error', (error) => logger.warn({ err: error }, 'an idle PostgreSQL connection failed; it will be replaced'));
  return pool;
}

/** Applies the pending migrations; an unreachable server becomes an error that says where we looked and why. */
export async function applyMigrations(pool: Pool, database: ResolvedDatabase, logger: Logger): Promise<number[]> {
  let applied: number[];
  try {
    applied = await migrate(pool);
  } catch (error) {
    const reason = error instanceof Error ? error.message || (error as NodeJS.ErrnoException).code : String(error);
    const where = `${displayDatabaseUrl(database.url)} (${sourceWords[database.source]})`;
    throw new Error(`could not migrate the database at ${where}: ${reason}`, { cause: error });
  }
  logger.info({ applied }, applied.length ? `applied migrations ${applied.join(', ')}` : 'database schema is up to date');
  return applied;
}

const sourceWords: Record<ResolvedDatabase['source'], string> = {
  DATABASE_URL: 'from DATABASE_URL: check it and that the server is running',
  instance: 'of the keyturn instance running on the data folder: is it still up?',
  embedded: 'the embedded PostgreSQL',
};
