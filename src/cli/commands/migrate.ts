import { loadConfig } from '../../config';
import { createLogger } from '../../logger';
import { displayDatabaseUrl, resolveDatabase } from '../../runtime/database';
import { applyMigrations, createPool } from '../../runtime/database-pool';
import { grantRoles, type DatabaseRoles } from '../../store/database-roles';
import { loadMigrations } from '../../store/migrate';

interface MigrateResult {
  /** The database, password masked. */
  database: string;
  applied: number[];
  /** The newest migration keyturn ships; the schema is at this version afterwards. */
  latest: number | null;
  /** The roles granted what their processes need. */
  roles: DatabaseRoles;
  /** Those of them this run created, without LOGIN. */
  createdRoles: string[];
}

/**
 * Brings a database's schema up to date and grants the JWKS server's, the worker's and the signer's
 * roles what they need (KEYTURN_JWKS_ROLE, KEYTURN_WORKER_ROLE, KEYTURN_SIGNER_ROLE): DATABASE_URL,
 * else the database of the keyturn instance running on the data folder, else the embedded one
 * (started for the occasion and stopped again). Run it as the schema's owner; where that role may not
 * create roles, the error says which SQL a DBA must run.
 */
async function runMigrate(options: { dataDir?: string }): Promise<MigrateResult> {
  const config = loadConfig(process.env, { dataDir: options.dataDir });
  // Logs to stderr: stdout is the command's result.
  const logger = createLogger({ level: config.logLevel, toStderr: true });
  const database = await resolveDatabase(config, logger, { joinRunningInstance: true });
  try {
    const pool = createPool(database, logger);
    try {
      const applied = await applyMigrations(pool, database, logger);
      const createdRoles = await grantRoles(pool, config.databaseRoles);
      const latest = (await loadMigrations()).at(-1)?.version ?? null;
      return { database: displayDatabaseUrl(database.url), applied, latest, roles: config.databaseRoles, createdRoles };
    } finally {
      await pool.end();
    }
  } finally {
    await database.stop();
  }
}

export async function migrateAction(options: { dataDir?: string; json?: boolean }): Promise<void> {
  const result = await runMigrate(options);
  if (options.json) {
    console.log(JSON.stringify(result));
  } else {
    const schema =
      result.applied.length > 0
        ? `applied migrations ${result.applied.join(', ')} to ${result.database}`
        : `nothing to apply: ${result.database} is at migration ${result.latest}`;
    const { jwks, worker, signer } = result.roles;
    const created =
      result.createdRoles.length > 0
        ? `; created ${result.createdRoles.join(', ')} without LOGIN: ALTER ROLE … LOGIN PASSWORD '…' to log in as one, or GRANT it to a role that logs in`
        : '';
    console.log(
      `${schema}; roles: ${jwks} reads the published keys only, ${worker} reads and writes rows, ` +
        `${signer} signs and reads the signing clients${created}`,
    );
  }
}
