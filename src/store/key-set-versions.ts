import type { Pool } from 'pg';

/**
 * Every registered key set with a version that changes whenever the key set does: the id of its
 * latest audit event. Every key change and every policy change writes one in the same transaction,
 * and a key set's changes are serialised by its row lock, so a new commit always means a new version.
 *
 * One cheap query for all key sets: the polling fallbacks (the JWKS cache's and the key rings'
 * checkAll) compare these instead of reloading every key set on every tick.
 */
export async function listKeySetVersions(pool: Pool): Promise<Map<string, string>> {
  // Through the view the JWKS server's role may read (006_published_keys.sql). Its max per key set
  // walks the (key_set_id, id) index backwards: one probe each, whatever the size of the audit trail.
  const { rows } = await pool.query<{ key_set_id: string; version: string | null }>(
    'SELECT key_set_id, version FROM published_key_sets',
  );
  return new Map(rows.map((row) => [row.key_set_id, row.version ?? '0']));
}

/** The version of one key set (see {@link listKeySetVersions}), or undefined if it is not registered. */
export async function keySetVersion(pool: Pool, keySetId: string): Promise<string | undefined> {
  const { rows } = await pool.query<{ version: string | null }>(
    'SELECT version FROM published_key_sets WHERE key_set_id = $1',
    [keySetId],
  );
  return rows.length === 0 ? undefined : (rows[0].version ?? '0');
}
