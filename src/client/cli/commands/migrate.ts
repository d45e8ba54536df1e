import { Command } from 'commander';
import { loadConfig } from '../../../config';
import { createLogger } from '../../../observability/logger';
import { displayDatabaseUrl, resolveDatabase } from '../../../runtime/database';
import { applyMigrations, createPool } from '../../../runtime/database-pool';
import { loadMigrations } from '../../../store/migrate';
import { DATA_DIR_OPTION } from '../options';

export interface MigrateResult {
  /** The database, password masked. */
  database: string;
  applied: number[];
  /** The newest migration keyturn ships; the schema is at this version afterwards. */
  latest: number | null;
}

/**
 * Brings a database's schema up to date: DATABASE_URL, else the database of the keyturn instance
 * running on the data folder, else the embedded one (started for the occasion and stopped again).
 */
export async function runMigrate(options: { dataDir?: string }): Promise<MigrateResult> {
  const config = loadConfig(process.env, { dataDir: options.dataDir });
  // Logs to stderr: stdout is the command's result.
  const logger = createLogger({ level: config.logLevel, toStderr: true });
  const database = await resolveDatabase(config, logger, { joinRunningInstance: true });
  try {
    const pool = createPool(database, logger);
    try {
      const applied = await applyMigrations(pool, database, logger);
      const latest = (await loadMigrations()).at(-1)?.version ?? null;
      return { database: displayDatabaseUrl(database.url), applied, latest };
    } finally {
      await pool.end();
    }
  } finally {
    await database.stop();
  }
}

export const migrateCommand = new Command('migrate')
  .description('apply the database migrations and print the versions applied')
  .option(...DATA_DIR_OPTION)
  .option('--json', 'print the result as JSON')
  .action(async (options: { dataDir?: string; json?: boolean }) => {
    const result = await runMigrate(options);
    if (options.json) {
      console.log(JSON.stringify(result));
    } else if (result.applied.length > 0) {
      console.log(`applied migrations ${result.applied.join(', ')} to ${result.database}`);
    } else {
      console.log(`nothing to apply: ${result.database} is at migration ${result.latest}`);
    }
  });
