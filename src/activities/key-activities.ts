import type { SigningAlgorithm } from '../domain/algorithms';
import type { KeyTimeline, LiveKeyState } from '../domain/lifecycle';
import type { KeySetPolicy } from '../domain/policy';
import type { KeyChange, KeyStore, Promotion } from '../store/key-store';

/** A change to one key, as the workflow asks for it. */
export interface KeyChangeInput extends KeyChange {
  kid: string;
}

/**
 * The activities that change keys. Each is one idempotent KeyStore transaction: the workflow's
 * operation id makes a retried attempt return the first attempt's result. They take and return
 * kids, states and times only, so no key material ever enters workflow history.
 */
export function createKeyActivities(keyStore: KeyStore) {
  return {
    /** Records the key set and its policy; returns the live keys a (re)started workflow resumes from. */
    async registerKeySet(input: Omit<KeyChange, 'operationId'> & { policy: KeySetPolicy }): Promise<KeyTimeline[]> {
      const { policy, ...change } = input;
      return keyStore.registerKeySet(change, policy);
    },
    async generateNextKey(input: KeyChange & { algorithm: SigningAlgorithm }): Promise<KeyTimeline> {
      const { algorithm, ...change } = input;
      return keyStore.addNextKey(change, algorithm);
    },
    async promoteNextKey({ kid, ...change }: KeyChangeInput): Promise<Promotion> {
      return keyStore.promoteNextKey(change, kid);
    },
    async retireKey({ kid, ...change }: KeyChangeInput): Promise<void> {
      await keyStore.retireKey(change, kid);
    },
    async destroyKey({ kid, ...change }: KeyChangeInput): Promise<void> {
      await keyStore.destroyKey(change, kid);
    },
    /** Decommissioning: active and next keys into grace; returns their kids. */
    async windDown(change: KeyChange): Promise<string[]> {
      return keyStore.windDown(change);
    },
    async revokeKey({ kid, ...change }: KeyChangeInput): Promise<{ previousState: LiveKeyState }> {
      return keyStore.revokeKey(change, kid);
    },
  };
}
