import { randomBytes, randomUUID } from 'node:crypto';
import type { SigningAlgorithm } from '../../src/domain/algorithms';
import { policyTimings, validatePolicy, type KeySetPolicy } from '../../src/domain/policy';
import type { KeyChange, KeyStore } from '../../src/store/key-store';
import { getPolicy } from '../../src/store/key-set-registry';

/** A policy whose numbers are easy to check: tokens live 5 minutes at most, verifiers cache the JWKS 2 minutes. */
export function testPolicy(algorithm: SigningAlgorithm = 'ES256'): KeySetPolicy {
  return validatePolicy({
    algorithm,
    rotationPeriod: '1h',
    prepublish: '10m',
    gracePeriod: '10m',
    retirement: '1h',
    maxTokenTtl: '5m',
    jwksMaxAge: '2m',
  });
}

/**
 * A policy whose whole lifecycle fits in seconds, for tests in real time: a key signs 6 s, is
 * published 3 s ahead, verifies 3 s after its demotion; tokens live 2 s, verifiers cache the JWKS 2 s.
 */
export function secondsPolicy(): KeySetPolicy {
  return validatePolicy({
    algorithm: 'ES256',
    rotationPeriod: '6s',
    prepublish: '3s',
    jwksMaxAge: '2s',
    gracePeriod: '3s',
    maxTokenTtl: '2s',
    clockSkew: '1s',
    retirement: '2s',
  });
}

export function uniqueKeySetId(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** A key change as an operator would make it by hand. */
export function manualChange(keySetId: string, reason = 'test'): KeyChange {
  return { operationId: randomUUID(), keySetId, trigger: 'manual', actor: 'test', reason };
}

/** Drives one key set through KeyStore, as the workflow's activities would. */
export class KeySetDriver {
  constructor(
    readonly store: KeyStore,
    readonly keySetId: string,
  ) {}

  /** Registers the key set (or changes its policy); it has no key until addNext or rotate. */
  static async register(store: KeyStore, keySetId: string, policy: KeySetPolicy): Promise<KeySetDriver> {
    await store.registerKeySet({ keySetId, trigger: 'manual', actor: 'test', reason: 'register' }, policy, {
      inService: true,
    });
    return new KeySetDriver(store, keySetId);
  }

  async addNext(): Promise<string> {
    const policy = await getPolicy(this.store.pool, this.keySetId);
    return (await this.store.addNextKey(manualChange(this.keySetId, 'generate'), policy!.algorithm)).kid;
  }

  /** Promotes `kid` under the key set's policy, as the workflow would. */
  async promote(kid: string): Promise<void> {
    const timings = policyTimings((await getPolicy(this.store.pool, this.keySetId))!);
    await this.store.promoteNextKey(manualChange(this.keySetId, 'promote'), kid, {
      tokenTtlMs: timings.maxTokenTtlMs,
      demotedGraceMs: timings.gracePeriodMs,
    });
  }

  /** Generates a key and promotes it at once; returns its kid. */
  async rotate(): Promise<string> {
    const kid = await this.addNext();
    await this.promote(kid);
    return kid;
  }

  async retire(kid: string): Promise<void> {
    await this.store.retireKey(manualChange(this.keySetId, 'retire'), kid);
  }

  async destroy(kid: string): Promise<void> {
    await this.store.destroyKey(manualChange(this.keySetId, 'destroy'), kid);
  }

  async revoke(kid: string): Promise<void> {
    await this.store.revokeKey({ ...manualChange(this.keySetId, 'compromised'), trigger: 'revocation' }, kid);
  }
}
