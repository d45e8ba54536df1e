import type { Pool } from 'pg';
import type { PublicJwk } from '../crypto/generate';
import type { HeldKey } from '../custody/key-custody';
import type { CustodySettings } from '../domain/custody-settings';
import type { SigningAlgorithm } from '../domain/algorithms';

/**
 * The active key as its custody holds it (for a sealed key, still sealed), its stored public part and the
 * custody it was generated in; undefined while the key set has no active key.
 */
export async function readActiveKey(
  pool: Pool,
  keySetId: string,
): Promise<{ held: HeldKey; publicJwk: PublicJwk; custody: CustodySettings } | undefined> {
  const { rows } = await pool.query<{
    kid: string;
    alg: SigningAlgorithm;
    public_jwk: PublicJwk;
    private_key: Buffer | null;
    kek_id: string | null;
    custody: CustodySettings;
    custody_handle: string | null;
  }>(
    `SELECT kid, alg, public_jwk, private_key, kek_id, custody, custody_handle FROM signing_keys WHERE key_set_id = $1 AND state = 'active'`,
    [keySetId],
  );
  const row = rows[0];
  if (row === undefined) return undefined;
  const sealed =
    row.private_key === null || row.kek_id === null ? undefined : { sealed: row.private_key, kekId: row.kek_id };
  return {
    held: { keySetId, kid: row.kid, alg: row.alg, handle: row.custody_handle ?? row.kid, ...(sealed && { sealed }) },
    publicJwk: row.public_jwk,
    custody: row.custody,
  };
}
