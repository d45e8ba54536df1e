import type { Pool } from 'pg';
import type { KeySetPolicy } from '../domain/policy';

// The key sets registered and their policies; KeyStore.registerKeySet writes them.

/** Every registered key set with its policy; decommissioned ones say so. */
export async function listKeySets(
  pool: Pool,
): Promise<{ id: string; policy: KeySetPolicy; decommissioned: boolean }[]> {
  const { rows } = await pool.query<{ id: string; policy: KeySetPolicy; decommissioned: boolean }>(
    'SELECT id, policy, decommissioned_at IS NOT NULL AS decommissioned FROM key_sets ORDER BY id',
  );
  return rows;
}

/** The key set's policy as last registered, or undefined for an unknown key set. */
export async function getPolicy(pool: Pool, keySetId: string): Promise<KeySetPolicy | undefined> {
  const { rows } = await pool.query<{ policy: KeySetPolicy }>('SELECT policy FROM key_sets WHERE id = $1', [keySetId]);
  return rows[0]?.policy;
}
