import type { Pool, PoolClient } from 'pg';
import type { PublicJwk } from '../crypto/generate';
import { jwkThumbprint } from '../crypto/kid';
import type { SigningAlgorithm } from '../domain/algorithms';
import type { StoredKeyRecord } from '../domain/invariants';
import { LIVE_STATES, type KeyState } from '../domain/lifecycle';

/** A pool or a client in a transaction: reads run on either. */
export type Queryable = Pool | PoolClient;

/** A key as stored, without its private part: what the invariants check, and where it is. */
export interface StoredKey extends StoredKeyRecord {
  keySetId: string;
  publicJwk: PublicJwk;
  kekId: string | null;
  destroyedAt: number | null;
  revokedAt: number | null;
}

/** The columns of a StoredKey (never the private part itself). A private part is sealed here, or held in a KMS or on a token. */
export const KEY_COLUMNS = `key_set_id, kid, alg, state, public_jwk,
  (private_key IS NOT NULL OR (custody_handle IS NOT NULL AND custody_released_at IS NULL)) AS has_private_key, kek_id,
  created_at, listed_at, promotable_at, activated_at, token_ttl_ms, demoted_at, grace_ends_at, retired_at, destroyed_at, revoked_at`;

/** The live states as an SQL list, for `state IN ${LIVE_STATES_SQL}`. */
export const LIVE_STATES_SQL = `(${LIVE_STATES.map((state) => `'${state}'`).join(', ')})`;

/** A key set's live keys, oldest first. */
export const LIVE_KEYS = `SELECT ${KEY_COLUMNS} FROM signing_keys WHERE key_set_id = $1 AND state IN ${LIVE_STATES_SQL} ORDER BY created_at, kid`;

export interface KeyRow {
  key_set_id: string;
  kid: string;
  alg: SigningAlgorithm;
  state: KeyState;
  public_jwk: PublicJwk;
  has_private_key: boolean;
  kek_id: string | null;
  created_at: Date;
  listed_at: Date | null;
  promotable_at: Date | null;
  activated_at: Date | null;
  token_ttl_ms: string | null;
  demoted_at: Date | null;
  grace_ends_at: Date | null;
  retired_at: Date | null;
  destroyed_at: Date | null;
  revoked_at: Date | null;
}

const ms = (d: Date | null): number | null => (d === null ? null : d.getTime());

export function toStoredKey(r: KeyRow): StoredKey {
  return {
    keySetId: r.key_set_id,
    kid: r.kid,
    alg: r.alg,
    state: r.state,
    publicJwk: r.public_jwk,
    thumbprint: jwkThumbprint(r.public_jwk) ?? null,
    hasPrivateKey: r.has_private_key,
    kekId: r.kek_id,
    createdAt: r.created_at.getTime(),
    listedAt: ms(r.listed_at),
    promotableAt: ms(r.promotable_at),
    activatedAt: ms(r.activated_at),
    tokenTtlMs: r.token_ttl_ms === null ? null : Number(r.token_ttl_ms),
    demotedAt: ms(r.demoted_at),
    graceEndsAt: ms(r.grace_ends_at),
    retiredAt: ms(r.retired_at),
    destroyedAt: ms(r.destroyed_at),
    revokedAt: ms(r.revoked_at),
  };
}

/** Every key of a key set, oldest first, without private parts. */
export async function listKeys(pool: Queryable, keySetId: string): Promise<StoredKey[]> {
  const { rows } = await pool.query<KeyRow>(
    `SELECT ${KEY_COLUMNS} FROM signing_keys WHERE key_set_id = $1 ORDER BY created_at, kid`,
    [keySetId],
  );
  return rows.map(toStoredKey);
}
