import type { KekRing } from '../crypto/kek';
import { KeyturnError, type KeyturnErrorCode } from '../domain/errors';
import { rewrapKeySet, type KekRewrap, type KekUsage } from '../store/kek-rewrap';
import { listKeySets } from '../store/key-set-registry';
import type { KeyStore } from '../store/key-store';

/**
 * Rolling the KEK, as `keyturn kek` does it: which KEK seals how many stored private keys, and
 * every key set re-sealed under the current KEK. KEK ids and kids only, never a key.
 */

/** One KEK id: configured (current or older) or known only to the database. */
export interface KekStatusEntry {
  id: string;
  /** Seals new keys: the first one configured. */
  current: boolean;
  /** False for an id only the database knows: the private keys it seals cannot be opened. */
  configured: boolean;
  privateKeys: number;
  keySetIds: string[];
}

export interface KekStatus {
  /** The file the KEKs came from (the embedded setup's `<dataDir>/kek`); null when KEYTURN_KEK supplied them. */
  kekFile: string | null;
  /** The configured KEKs, current first, then the ids only the database knows. */
  keks: KekStatusEntry[];
}

/** What `rewrapKeySets` did to one key set; a failed one was left as it was. */
export type KekRewrapOutcome =
  | (KekRewrap & { outcome: 'rewrapped' | 'unchanged' })
  | { keySetId: string; outcome: 'failed'; error: { code: KeyturnErrorCode; message: string } };

/** Pairs the configured KEKs with what the stored keys are sealed under (`countPrivateKeysByKek`). */
export function kekStatus(ring: KekRing, usage: readonly KekUsage[], kekFile: string | null): KekStatus {
  const byId = new Map(usage.map((u) => [u.kekId, u]));
  const configured = ring.ids.map((id) => ({
    id,
    current: id === ring.current.id,
    configured: true,
    privateKeys: byId.get(id)?.privateKeys ?? 0,
    keySetIds: byId.get(id)?.keySetIds ?? [],
  }));
  const missing = usage
    .filter((u) => ring.get(u.kekId) === undefined)
    .map((u) => ({
      id: u.kekId,
      current: false,
      configured: false,
      privateKeys: u.privateKeys,
      keySetIds: u.keySetIds,
    }));
  return { kekFile, keks: [...configured, ...missing] };
}

/**
 * Re-seals every registered key set's private keys under the current KEK, one transaction each
 * (`rewrapKeySet`). A key set that cannot be rewrapped (a key under a KEK that is not
 * configured) is reported and keeps its keys as they were; the others go on.
 */
export async function rewrapKeySets(
  keyStore: KeyStore,
  who: { actor: string; reason: string },
): Promise<KekRewrapOutcome[]> {
  const outcomes: KekRewrapOutcome[] = [];
  for (const { id: keySetId } of await listKeySets(keyStore.pool)) {
    try {
      const rewrap = await rewrapKeySet(
        keyStore.pool,
        keyStore.kekRing,
        { keySetId, trigger: 'manual', ...who },
        keyStore.clock,
      );
      outcomes.push({ ...rewrap, outcome: rewrap.kids.length > 0 ? 'rewrapped' : 'unchanged' });
    } catch (error) {
      if (!(error instanceof KeyturnError)) throw error;
      outcomes.push({ keySetId, outcome: 'failed', error: { code: error.code, message: error.message } });
    }
  }
  return outcomes;
}
