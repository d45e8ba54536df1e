import type { Pool } from 'pg';

/**
 * Makes the key store fail as it would with a broken database: the keys table disappears (every
 * query on it errors) until the returned function puts it back.
 */
export async function takeKeyTableOffline(pool: Pool): Promise<() => Promise<void>> {
  await pool.query('ALTER TABLE signing_keys RENAME TO signing_keys_offline');
  return async () => {
    await pool.query('ALTER TABLE signing_keys_offline RENAME TO signing_keys');
  };
}
