import type { PoolClient } from 'pg';
import { KeyturnError } from '../domain/errors';

// What every change to a key set does in its transaction: lock the key set first, announce the change last.

/** Channel on which every committed key change is announced, with the key set id as payload. */
export const KEY_CHANGES_CHANNEL = 'keyturn_key_changes';

/** Locks the key set's row, which serialises every change to the key set; ERR_KEYSET_NOT_FOUND if it is not registered. */
export async function lockKeySet(tx: PoolClient, keySetId: string): Promise<void> {
  const keySet = await tx.query('SELECT 1 FROM key_sets WHERE id = $1 FOR UPDATE', [keySetId]);
  if (!keySet.rowCount)
    throw new KeyturnError('ERR_KEYSET_NOT_FOUND', `key set "${keySetId}" is not registered`, { keySetId });
}

/** Tells every key ring and JWKS cache that the key set changed, once the transaction commits. */
export async function notifyKeyChange(tx: PoolClient, keySetId: string): Promise<void> {
  await tx.query('SELECT pg_notify($1, $2)', [KEY_CHANGES_CHANNEL, keySetId]);
}
