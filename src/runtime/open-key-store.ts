import type { Pool } from 'pg';
import type { KekRing } from '../crypto/kek';
import type { Config } from '../config';
import type { Logger } from '../observability/logger';
import { KeyStore } from '../store/key-store';
import { resolveDatabase, type ResolveDatabaseOptions, type ResolvedDatabase } from './database';
import { applyMigrations, createPool } from './database-pool';
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
 * What the worker and `keyturn dev` share: find (or start) the database, find (or create) the KEK,
 * bring the schema up to date, and hand back a KeyStore on it. Whatever was started is stopped
 * again if a later step fails.
 */
export async function openKeyStore(config: Config, logger: Logger, options: ResolveDatabaseOptions): Promise<OpenedKeyStore> {
  const database = await resolveDatabase(config, logger, options);
  let pool: Pool | undefined;
  try {
    const kek = await resolveKek(config, database, logger);
    pool = createPool(database, logger);
    await applyMigrations(pool, database, logger);
    const opened = pool;
    return {
      keyStore: new KeyStore(pool, kek.ring),
      kekRing: kek.ring,
      pool,
      database,
      kekFile: kek.kekFile,
      async close() {
        await opened.end();
        await database.stop();
      },
    };
  } catch (error) {
    await pool?.end().catch(() => undefined);
    await database.stop().catch(() => undefined);
    throw error;
  }
}
