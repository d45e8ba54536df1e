import type { JWK } from 'jose';
import type { Pool } from 'pg';
import { openPrivateKey } from '../crypto/envelope';
import type { PublicJwk } from '../crypto/generate';
import type { KekRing } from '../crypto/kek';
import type { SigningAlgorithm } from '../domain/algorithms';

/**
 * The active key with its private part opened, for signing, and its stored public part (both must
 * match the kid); undefined while the key set has no active key. The caller holds the private JWK
 * in memory only and must never log or return it.
 */
export async function openActiveKey(
  pool: Pool,
  keks: KekRing,
  keySetId: string,
): Promise<{ kid: string; alg: SigningAlgorithm; publicJwk: PublicJwk; privateJwk: JWK } | undefined> {
  const { rows } = await pool.query<{
    kid: string;
    alg: SigningAlgorithm;
    public_jwk: PublicJwk;
    private_key: Buffer;
    kek_id: string;
  }>(`SELECT kid, alg, public_jwk, private_key, kek_id FROM signing_keys WHERE key_set_id = $1 AND state = 'active'`, [
    keySetId,
  ]);
  const row = rows[0];
  if (row === undefined) return undefined;
  return {
    kid: row.kid,
    alg: row.alg,
    publicJwk: row.public_jwk,
    privateJwk: openPrivateKey(row.private_key, row.kek_id, keks, { keySetId, kid: row.kid }),
  };
}
