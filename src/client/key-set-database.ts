import { randomBytes } from 'node:crypto';
import type { Pool } from 'pg';
import type { Config } from '../config';
import { Kek, KekRing } from '../crypto/kek';
import { createLogger } from '../logger';
import { displayDatabaseUrl } from '../runtime/database';
import { createPool } from '../runtime/database-pool';
import { readLiveInstance } from '../runtime/instance-file';
import { readAuditTrail, verifyAuditTrail, type AuditChainVerification, type AuditRecord } from '../store/audit-log';
import { KeyStore } from '../store/key-store';

/**
 * Read-only access to keyturn's PostgreSQL for operator commands (`verify`, `status` without an
 * id, `audit`): the key sets registered, their keys and audit trails, never a private part, so no
 * KEK is needed.
 */
export class KeySetDatabase {
  readonly keyStore: KeyStore;

  private constructor(
    private readonly pool: Pool,
    /** Where the database came from, with its password masked, for error messages. */
    readonly description: string,
  ) {
    // KeyStore wants a KEK ring for the keys it opens; listing keys opens none, so a throwaway one does.
    this.keyStore = new KeyStore(pool, new KekRing([new Kek(randomBytes(32))]));
  }

  /**
   * DATABASE_URL, else the database of the keyturn instance running on the data folder; undefined
   * when neither is there (no embedded PostgreSQL is started for a read). The connection is checked
   * at once, with a short timeout.
   */
  static async open(config: Config): Promise<KeySetDatabase | undefined> {
    let url = config.databaseUrl;
    let origin = 'from DATABASE_URL';
    if (url === undefined) {
      const instance = await readLiveInstance(config.dataDir);
      if (!instance?.databaseUrl) return undefined;
      url = instance.databaseUrl;
      origin = `of the keyturn instance running on ${config.dataDir}`;
    }
    return KeySetDatabase.connect(url, origin);
  }

  /** The database at `url`, checked at once; `origin` says where the URL came from, in errors. */
  static async connect(url: string, origin = 'given'): Promise<KeySetDatabase> {
    const description = `${displayDatabaseUrl(url)} (${origin})`;
    // A short command's reads, one after another, and an answer soon or an error that says where.
    const pool = createPool({ url }, createLogger({ level: 'silent' }), { max: 2, connectionTimeoutMillis: 5_000 });
    try {
      await pool.query('SELECT 1');
    } catch (error) {
      await pool.end().catch(() => undefined);
      const reason = error instanceof Error ? error.message || (error as NodeJS.ErrnoException).code : String(error);
      throw new Error(`cannot reach PostgreSQL at ${description}: ${reason}`, { cause: error });
    }
    return new KeySetDatabase(pool, description);
  }

  /** A key set's audit trail, oldest first, from `since` (epoch ms) on; ERR_KEYSET_NOT_FOUND for an unregistered one. */
  async auditTrail(keySetId: string, since?: number): Promise<AuditRecord[]> {
    return readAuditTrail(this.pool, keySetId, since);
  }

  /** The hash chain check of one key set's audit trail, or of every key set's (decommissioned ones too). */
  async verifyAuditTrail(keySetId?: string): Promise<AuditChainVerification[]> {
    return verifyAuditTrail(this.pool, keySetId);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
