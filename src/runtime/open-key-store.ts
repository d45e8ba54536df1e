import type { Pool } from 'pg';
import type { KekRing } from '../crypto/kek';
import type { Config } from '../config';
import { logAuditEvents } from '../observability/audit-log-lines';
import type { Logger } from '../logger';
import { KeyturnError } from '../domain/errors';
import { grantRoles, type DatabaseRoles } from '../store/database-roles';
import { CustodyRegistry, type CustodyRegistryOptions } from '../custody/custody-registry';
import { KeyStore } from '../store/key-store';
import { resolveDatabase, type ResolveDatabaseOptions, type ResolvedDatabase } from './database';
import { applyMigrations, createPool, endPool } from './database-pool';
import { resolveKek } from './kek-source';

export interface OpenedKeyStore {
  keyStore: KeyStore;
  /** The KEKs the key store opens private keys with (the key ring needs them too). */
  kekRing: KekRing;
  pool: Pool;
  database: ResolvedDatabase;
  /** Where the KEK came from; null when KEYTURN_KEK supplied it. */
  kekFile: string | null;
  /** Ends the pool, then stops the embedded database if this call started it. */
  close(): Promise<void>;
}

/**
 * What the worker, `keyturn dev` and the commands that open private keys share: find (or start) the
 * database, find (or create) the KEK, bring the schema up to date (a role that may not change it finds
 * nothing to do once `keyturn migrate` has run), and hand back a KeyStore on it. Until close(), each
 * audit event committed is logged too. Whatever was started is stopped again if a later step fails.
 */
export async function openKeyStore(
  config: Config,
  logger: Logger,
  options: ResolveDatabaseOptions & {
    /** How to reach AWS KMS and PKCS#11 tokens, where the environment's defaults do not. */
    custodyFactories?: CustodyRegistryOptions['factories'];
  },
): Promise<OpenedKeyStore> {
  const database = await resolveDatabase(config, logger, options);
  let pool: Pool | undefined;
  const stopAuditLines = logAuditEvents(logger);
  try {
    const kek = await resolveKek(config, database, logger);
    pool = createPool(database, logger);
    if ((await applyMigrations(pool, database, logger)).length > 0)
      await grantRolesOrWarn(pool, config.databaseRoles, logger);
    const opened = pool;
    const keyStore = new KeyStore(pool, kek.ring, {
      custody: new CustodyRegistry({ kekRing: kek.ring, factories: options.custodyFactories }),
      onOrphanedKey: ({ error, ...orphan }) =>
        logger.warn(
          { ...orphan, err: error },
          `a key generated for key set ${orphan.keySetId} (kid ${orphan.kid}) was not stored and could not be destroyed in its custody: ` +
            `delete ${orphan.handle} there by hand (its KMS tags or token label name its key set)`,
        ),
    });
    return {
      keyStore,
      kekRing: kek.ring,
      pool,
      database,
      kekFile: kek.kekFile,
      async close() {
        stopAuditLines();
        await keyStore.custody.close();
        await endPool(opened);
        await database.stop();
      },
    };
  } catch (error) {
    stopAuditLines();
    if (pool) await endPool(pool).catch(() => undefined);
    await database.stop().catch(() => undefined);
    throw error;
  }
}

/**
 * The roles' grants follow the schema they are on. Setting the roles up is `keyturn migrate`'s job,
 * so here one the owner may not create is worth a warning with the SQL, not a reason to stop.
 */
async function grantRolesOrWarn(pool: Pool, roles: DatabaseRoles, logger: Logger): Promise<void> {
  try {
    await grantRoles(pool, roles);
  } catch (error) {
    if (!(error instanceof KeyturnError && error.code === 'ERR_DATABASE_ROLES')) throw error;
    logger.warn(error.message);
  }
}
