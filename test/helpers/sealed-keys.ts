import type { JWK } from 'jose';
import type { Pool } from 'pg';
import { openPrivateKey } from '../../src/crypto/envelope';
import type { PublicJwk } from '../../src/crypto/generate';
import type { KekRing } from '../../src/crypto/kek';
import type { SigningAlgorithm } from '../../src/domain/algorithms';
import { readActiveKey } from '../../src/store/signing-keys';

/**
 * The active sealed key with its private part opened, for tests and benchmarks to compare with (or to
 * forge with, as an attacker holding it would); undefined while the key set has no active key. keyturn
 * itself opens a sealed key only in its custody (src/custody/sealed.ts), into a KeyObject.
 */
export async function openActiveKey(
  pool: Pool,
  keks: KekRing,
  keySetId: string,
): Promise<{ kid: string; alg: SigningAlgorithm; publicJwk: PublicJwk; privateJwk: JWK } | undefined> {
  const active = await readActiveKey(pool, keySetId);
  if (active === undefined) return undefined;
  const { held, publicJwk } = active;
  if (held.sealed === undefined)
    throw new TypeError(`the active key of ${keySetId} is not sealed: it cannot be opened`);
  return {
    kid: held.kid,
    alg: held.alg,
    publicJwk,
    privateJwk: openPrivateKey(held.sealed.sealed, held.sealed.kekId, keks, held),
  };
}
