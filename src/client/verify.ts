import type { KeySetStatus } from '../domain/keyset-state';
import { KeyturnError } from '../domain/errors';
import { checkInvariants, type Violation } from '../domain/invariants';
import type { StoredKey } from '../store/key-store';
import type { KeySetDatabase } from './key-set-database';
import type { KeySetClient } from './keyset-client';

/** What `verify` found for one key set. */
export interface KeySetVerification {
  keySetId: string;
  violations: Violation[];
  /** Why the key set could not be checked at all (its workflow is gone); counts as a failure. */
  problem: string | null;
}

export interface VerifyOptions {
  now?: () => number;
  /** Reads tried before a key set caught mid-transition is checked as it is (default 5, 300 ms apart). */
  attempts?: number;
  /** KEYTURN_OVERDUE_TOLERANCE, so that verify and the supervisor agree on when an active key is too old. */
  keyAgeToleranceMs?: number;
}

/**
 * Checks one key set's workflow state against its keys in PostgreSQL (`checkInvariants`). The
 * state is read before and after the keys, and read again while a step is in flight or the two
 * differ, so that a transition happening during the check is not reported as a mismatch.
 * An unknown key set throws ERR_KEYSET_NOT_FOUND.
 */
export async function verifyKeySet(
  keySets: KeySetClient,
  database: KeySetDatabase,
  keySetId: string,
  options: VerifyOptions = {},
): Promise<KeySetVerification> {
  const now = options.now ?? Date.now;
  const attempts = options.attempts ?? 5;
  let status: KeySetStatus;
  let stored: StoredKey[];
  for (let attempt = 1; ; attempt += 1) {
    const before = await keySets.getState(keySetId);
    stored = await database.keyStore.listKeys(keySetId);
    status = await keySets.getState(keySetId);
    const settled = status.inFlight === null && before.inFlight === null && JSON.stringify(before.keys) === JSON.stringify(status.keys);
    if (settled || attempt >= attempts) break;
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
  return { keySetId, violations: checkInvariants(status, stored, now(), { keyAgeMs: options.keyAgeToleranceMs }), problem: null };
}

/** `verifyKeySet` for each key set; one whose workflow is gone is reported, not thrown. */
export async function verifyKeySets(
  keySets: KeySetClient,
  database: KeySetDatabase,
  keySetIds: readonly string[],
  options: VerifyOptions = {},
): Promise<KeySetVerification[]> {
  const results: KeySetVerification[] = [];
  for (const keySetId of keySetIds) {
    try {
      results.push(await verifyKeySet(keySets, database, keySetId, options));
    } catch (error) {
      if (!(error instanceof KeyturnError && error.code === 'ERR_KEYSET_NOT_FOUND')) throw error;
      results.push({ keySetId, violations: [], problem: `key set "${keySetId}" is registered in PostgreSQL but has no workflow` });
    }
  }
  return results;
}
