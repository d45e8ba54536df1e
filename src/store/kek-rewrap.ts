import type { Pool } from 'pg';
import { openPrivateKey, sealPrivateKey } from '../crypto/envelope';
import type { KekRing } from '../crypto/kek';
import { appendAuditEvent } from './audit-log';
import { lockKeySet, notifyKeyChange } from './key-set-changes';
import type { Clock, KeyChange } from './key-store';
import { inTransaction } from './transaction';

// Rolling the KEK: each key set's private keys re-sealed under the current one (`keyturn kek rewrap`).

/** What re-sealing one key set's private keys under the current KEK did. */
export interface KekRewrap {
  keySetId: string;
  /** The KEK ids the re-sealed keys were under, in key order; empty when there was nothing to re-seal. */
  from: string[];
  /** The current KEK's id. */
  to: string;
  /** The keys re-sealed, oldest first. */
  kids: string[];
}

/** One KEK id as the stored keys know it: how many private keys it seals, and in which key sets. */
export interface KekUsage {
  kekId: string;
  privateKeys: number;
  keySetIds: string[];
}

/**
 * Re-seals under the current KEK every private key of the key set that another KEK seals (same
 * key set and kid as authenticated data) and records one `kek_rewrapped` event. Keys already
 * under the current KEK and erased ones are left alone, so a second run changes and records nothing.
 * A key under a KEK the ring lacks throws ERR_KEK_UNKNOWN, a damaged one ERR_KEY_DECRYPTION_FAILED,
 * and the key set is left as it was.
 */
export async function rewrapKeySet(
  pool: Pool,
  keks: KekRing,
  change: Omit<KeyChange, 'operationId'>,
  clock: Clock = Date.now,
): Promise<KekRewrap> {
  const { keySetId } = change;
  return inTransaction(pool, async (tx) => {
    // Every other change locks the key set first, so no key can be added, moved or erased meanwhile.
    await lockKeySet(tx, keySetId);
    const current = keks.current.id;
    const { rows } = await tx.query<{ kid: string; private_key: Buffer; kek_id: string }>(
      `SELECT kid, private_key, kek_id FROM signing_keys
        WHERE key_set_id = $1 AND private_key IS NOT NULL AND kek_id <> $2 ORDER BY created_at, kid`,
      [keySetId, current],
    );
    const rewrap: KekRewrap = {
      keySetId,
      from: [...new Set(rows.map((r) => r.kek_id))],
      to: current,
      kids: rows.map((r) => r.kid),
    };
    if (rows.length === 0) return rewrap;
    for (const row of rows) {
      const context = { keySetId, kid: row.kid };
      const privateJwk = openPrivateKey(row.private_key, row.kek_id, keks, context);
      const { kekId, sealed } = sealPrivateKey(privateJwk, keks, context);
      await tx.query('UPDATE signing_keys SET private_key = $3, kek_id = $4 WHERE key_set_id = $1 AND kid = $2', [
        keySetId,
        row.kid,
        sealed,
        kekId,
      ]);
    }
    const { from, to, kids } = rewrap;
    await appendAuditEvent(tx, { ...change, at: await clock(), event: 'kek_rewrapped', details: { from, to, kids } });
    // Neither the JWKS nor any signing key changed, but the event is a new version of the key set
    // (key-set-versions.ts): announced, the key rings and JWKS caches reload it now instead of
    // taking it for a lost notification at their next poll.
    await notifyKeyChange(tx, keySetId);
    return rewrap;
  });
}

/** Every KEK id that seals a stored private key, with how many it seals and in which key sets. */
export async function countPrivateKeysByKek(pool: Pool): Promise<KekUsage[]> {
  const { rows } = await pool.query<{ kek_id: string; private_keys: number; key_set_ids: string[] }>(
    `SELECT kek_id, count(*)::int AS private_keys, array_agg(DISTINCT key_set_id ORDER BY key_set_id) AS key_set_ids
       FROM signing_keys WHERE private_key IS NOT NULL GROUP BY kek_id ORDER BY kek_id`,
  );
  return rows.map((r) => ({ kekId: r.kek_id, privateKeys: r.private_keys, keySetIds: r.key_set_ids }));
}
