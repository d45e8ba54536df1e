import type { SigningAlgorithm } from '../domain/algorithms';
import type { KeyTimeline, KeyWindows, LiveKeyState } from '../domain/lifecycle';
import { KeyturnError } from '../domain/errors';
import { checkKeySetId } from '../domain/key-set-id';
import { policyTimings, validatePolicy, type KeySetPolicy, type PolicyCeilings } from '../domain/policy';
import type { ListingRule, PublicationGate } from './check-publication';
import type { Demotion, FirstKey, KeyChange, KeyStore, OperatorAction, Promotion } from '../store/key-store';

/** A change to one key, as the workflow asks for it. */
export interface KeyChangeInput extends KeyChange {
  kid: string;
}

/** What a (re)started workflow loads: the deployment's ceilings and, unless its policy broke them, the live keys. */
export interface LoadedKeySet {
  ceilings: PolicyCeilings;
  /** Absent when the policy to check was refused: nothing was written, and the workflow fails naming the field. */
  keys?: KeyTimeline[];
}

/** The request to register (or re-register) a key set, as the workflow sends it. */
export interface KeySetRegistration extends Omit<KeyChange, 'operationId'> {
  policy: KeySetPolicy;
  inService: boolean;
  /**
   * The workflow has not checked the policy it was started with yet: it is checked here first, against
   * the ceilings, and registered normalised (as the workflow then holds it) or not at all.
   */
  checkPolicy?: boolean;
  /** Who bootstraps a key set found with neither an active nor a next key (see KeyStore.registerKeySet). */
  bootstrap?: FirstKey['cause'];
}

/**
 * The activities that change keys. Each is one idempotent KeyStore transaction: the workflow's
 * operation id makes a retried attempt return the first attempt's result, with the times the first
 * attempt committed at. They take and return kids, states and times only, so no key material ever
 * enters workflow history.
 */
export function createKeyActivities(keyStore: KeyStore, ceilings: PolicyCeilings, gate: PublicationGate) {
  return {
    /**
     * A workflow's load in one activity and one transaction: the deployment's ceilings, the key set
     * and its policy recorded, and the live keys it resumes from; a new key set's first key generated
     * and active with them (`bootstrap`).
     */
    async registerKeySet(input: KeySetRegistration): Promise<LoadedKeySet> {
      const { policy: started, inService, checkPolicy, bootstrap, ...change } = input;
      let policy = started;
      if (checkPolicy) {
        try {
          checkKeySetId(change.keySetId, 'keySetId');
          policy = validatePolicy(started, { keySetId: change.keySetId, ceilings });
        } catch (error) {
          // The workflow checks the same policy against the same ceilings and fails, naming the field.
          if (error instanceof KeyturnError) return { ceilings };
          throw error;
        }
      }
      const firstKey = bootstrap && {
        algorithm: policy.algorithm,
        tokenTtlMs: policyTimings(policy).maxTokenTtlMs,
        cause: bootstrap,
      };
      return { ceilings, keys: await keyStore.registerKeySet(change, policy, { inService, firstKey }) };
    },
    /**
     * Generates and publishes the next key; with `listing`, also watches it appear at every JWKS URL
     * for a moment, and returns it listed (with its `promotableAt`) if it did.
     */
    async generateNextKey(
      input: KeyChange & { algorithm: SigningAlgorithm; listing?: ListingRule },
    ): Promise<KeyTimeline> {
      const { algorithm, listing, ...change } = input;
      const key = await keyStore.addNextKey(change, algorithm);
      if (listing === undefined) return key;
      return (await gate.watch(change, key.kid, listing)).listed ?? key;
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
    async recordOperatorAction(
      input: KeyChange & { action: OperatorAction; details?: Record<string, unknown> },
    ): Promise<void> {
      const { action, details, ...change } = input;
      await keyStore.recordOperatorAction(change, action, details);
    },
  };
}
