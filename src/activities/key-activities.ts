import type { SigningAlgorithm } from '../domain/algorithms';
import type { KeyTimeline, KeyWindows, LiveKeyState } from '../domain/lifecycle';
import type { KeySetPolicy } from '../domain/policy';
import type { Demotion, KeyChange, KeyStore, OperatorAction, Promotion } from '../store/key-store';

/** A change to one key, as the workflow asks for it. */
export interface KeyChangeInput extends KeyChange {
  kid: string;
}

/**
 * The activities that change keys. Each is one idempotent KeyStore transaction: the workflow's
 * operation id makes a retried attempt return the first attempt's result, with the times the first
 * attempt committed at. They take and return kids, states and times only, so no key material ever
 * enters workflow history.
 */
export function createKeyActivities(keyStore: KeyStore) {
  return {
    /** Records the key set and its policy; returns the live keys a (re)started workflow resumes from. */
    async registerKeySet(input: Omit<KeyChange, 'operationId'> & { policy: KeySetPolicy; inService: boolean }): Promise<KeyTimeline[]> {
      const { policy, inService, ...change } = input;
      return keyStore.registerKeySet(change, policy, { inService });
    },
    async generateNextKey(input: KeyChange & { algorithm: SigningAlgorithm }): Promise<KeyTimeline> {
      const { algorithm, ...change } = input;
      return keyStore.addNextKey(change, algorithm);
    },
    async promoteNextKey(input: KeyChangeInput & { tokenTtlMs: number; demotedGraceMs: number }): Promise<Promotion> {
      const { kid, tokenTtlMs, demotedGraceMs, ...change } = input;
      return keyStore.promoteNextKey(change, kid, { tokenTtlMs, demotedGraceMs });
    },
    async withdrawKey({ kid, ...change }: KeyChangeInput): Promise<KeyTimeline> {
      return keyStore.withdrawKey(change, kid);
    },
    async retireKey({ kid, ...change }: KeyChangeInput): Promise<KeyTimeline> {
      return keyStore.retireKey(change, kid);
    },
    async destroyKey({ kid, ...change }: KeyChangeInput): Promise<void> {
      await keyStore.destroyKey(change, kid);
    },
    async revokeKey({ kid, ...change }: KeyChangeInput): Promise<{ previousState: LiveKeyState }> {
      return keyStore.revokeKey(change, kid);
    },
    /** Decommissioning: the given active and next keys into grace; returns them. */
    async windDown(input: KeyChange & { demotions: Demotion[] }): Promise<KeyTimeline[]> {
      const { demotions, ...change } = input;
      return keyStore.windDown(change, demotions);
    },
    async recommission(change: KeyChange): Promise<void> {
      await keyStore.recommission(change);
    },
    /** Records a new policy and the key windows it lengthens; returns the live keys. */
    async recordPolicy(input: KeyChange & { policy: KeySetPolicy; windows: KeyWindows[] }): Promise<KeyTimeline[]> {
      const { policy, windows, ...change } = input;
      return keyStore.recordPolicy(change, policy, windows);
    },
    async recordOperatorAction(input: KeyChange & { action: OperatorAction; details?: Record<string, unknown> }): Promise<void> {
      const { action, details, ...change } = input;
      await keyStore.recordOperatorAction(change, action, details);
    },
  };
}
