import type { KeySetStatus } from '../domain/key-set-state';
import { KeyturnError } from '../domain/errors';
import { checkInvariants, type Violation } from '../domain/invariants';
import type { Pool } from 'pg';
import { listKeys, type StoredKey } from '../store/stored-keys';
import type { KeySetDatabase } from './key-set-database';
import { readFleet } from './fleet-check';
import { mapBounded } from './map-bounded';
import type { KeySetClient } from './key-set-client';

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
 * Checks one key set's workflow state against its keys in PostgreSQL (`checkInvariants`), on a
 * settled reading (see {@link settledReading}). An unknown key set throws ERR_KEYSET_NOT_FOUND.
 */
export async function verifyKeySet(
  keySets: KeySetClient,
  database: KeySetDatabase,
  keySetId: string,
  options: VerifyOptions = {},
): Promise<KeySetVerification> {
  const now = options.now ?? Date.now;
  const { status, stored } = await settledReading(keySets, database.keyStore.pool, keySetId, options.attempts);
  return {
    keySetId,
    violations: checkInvariants(status, stored, now(), { keyAgeMs: options.keyAgeToleranceMs }),
    problem: null,
  };
}

/**
 * The key set's workflow state and its keys in PostgreSQL, read so that a transition happening
 * meanwhile is not taken for a mismatch: the state is read before and after the keys, and everything
 * is read again (up to `attempts` times, 300 ms apart) while a step is in flight or the two differ.
 */
export async function settledReading(
  keySets: KeySetClient,
  pool: Pool,
  keySetId: string,
  attempts = 5,
): Promise<{ status: KeySetStatus; stored: StoredKey[] }> {
  for (let attempt = 1; ; attempt += 1) {
    const before = await keySets.getState(keySetId);
    const stored = await listKeys(pool, keySetId);
    const status = await keySets.getState(keySetId);
    const settled =
      status.inFlight === null &&
      before.inFlight === null &&
      JSON.stringify(before.keys) === JSON.stringify(status.keys);
    if (settled || attempt >= attempts) return { status, stored };
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

/**
 * `verifyKeySet` for each key set, a few at a time; one whose workflow is gone is reported, not
 * thrown. In the order of `keySetIds`.
 */
export async function verifyKeySets(
  keySets: KeySetClient,
  database: KeySetDatabase,
  keySetIds: readonly string[],
  options: VerifyOptions = {},
): Promise<KeySetVerification[]> {
  return mapBounded(keySetIds, 8, async (keySetId) => {
    try {
      return await verifyKeySet(keySets, database, keySetId, options);
    } catch (error) {
      if (!(error instanceof KeyturnError && error.code === 'ERR_KEYSET_NOT_FOUND')) throw error;
      return {
        keySetId,
        violations: [],
        problem: `key set "${keySetId}" is registered in PostgreSQL but has no workflow`,
      };
    }
  });
}

/**
 * Every key set in service (as `verifyKeySets` over all of them would), read at once through
 * `readFleet`: only those visibility and PostgreSQL leave in doubt are verified one by one.
 */
export async function verifyFleet(
  keySets: KeySetClient,
  database: KeySetDatabase,
  options: VerifyOptions = {},
): Promise<KeySetVerification[]> {
  const now = options.now ?? Date.now;
  const fleet = await readFleet(keySets, database.keyStore.pool, now(), { keyAgeMs: options.keyAgeToleranceMs });
  const looked = await verifyKeySets(keySets, database, [...fleet.doubts.keys()], options);
  const byId = new Map(looked.map((result) => [result.keySetId, result]));
  return fleet.records.map((record) => byId.get(record.id) ?? { keySetId: record.id, violations: [], problem: null });
}
