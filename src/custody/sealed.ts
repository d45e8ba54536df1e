import { constants, createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { openPrivateKey, sealPrivateKey } from '../crypto/envelope';
import { generateSigningKey } from '../crypto/generate';
import type { KekRing } from '../crypto/kek';
import { assertKidOf } from '../crypto/kid';
import type { SigningAlgorithm } from '../domain/algorithms';
import { CUSTODY_ALGORITHMS } from '../domain/custody-settings';
import { KeyturnError } from '../domain/errors';
import type { CustodyKey, HeldKey, KeyCustody, KeyOwner, SignatureFunction } from './key-custody';

/**
 * Node's crypto for each algorithm, bound to a key with its options made once. ECDSA signatures go out
 * in IEEE P1363 form (r‖s), as JWS requires, not Node's DER default; PS256 uses a salt as long as its
 * hash, as RFC 7518 §3.5 requires.
 */
const SIGNATURES: Record<SigningAlgorithm, (key: KeyObject) => (input: Buffer) => Buffer> = {
  ES256: (key) => {
    const options = { key, dsaEncoding: 'ieee-p1363' } as const;
    return (input) => sign('sha256', input, options);
  },
  RS256: (key) => {
    const options = { key, padding: constants.RSA_PKCS1_PADDING };
    return (input) => sign('sha256', input, options);
  },
  PS256: (key) => {
    const options = { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 };
    return (input) => sign('sha256', input, options);
  },
  // Ed25519 hashes internally: no digest is named.
  EdDSA: (key) => (input) => sign(null, input, key),
};

/**
 * The default custody: keyturn generates the key pair and PostgreSQL keeps its private
 * half sealed under the current KEK (AES-256-GCM, bound to key set and kid). The handle is the kid:
 * the sealed key is found by it. Signing opens the key once into a KeyObject, whose bytes no print or
 * JSON shows.
 */
export class SealedCustody implements KeyCustody {
  readonly backend = 'sealed';
  readonly algorithms = CUSTODY_ALGORITHMS.sealed;
  readonly privateKeysPassThroughKeyturn = true;

  constructor(private readonly kekRing: KekRing) {}

  async generate(alg: SigningAlgorithm, owner: KeyOwner): Promise<CustodyKey> {
    const key = await generateSigningKey(alg);
    const sealed = sealPrivateKey(key.privateJwk, this.kekRing, { keySetId: owner.keySetId, kid: key.kid });
    return { kid: key.kid, alg, publicJwk: key.publicJwk, handle: key.kid, sealed };
  }

  async signer(key: HeldKey): Promise<SignatureFunction> {
    const { sealed, kekId } = this.#sealedOf(key);
    const privateJwk = openPrivateKey(sealed, kekId, this.kekRing, key);
    assertKidOf(privateJwk, 'its private key', key);
    return SIGNATURES[key.alg](createPrivateKey({ key: privateJwk, format: 'jwk' }));
  }

  /** The row's private part is erased by the same statement that moves the key to a final state: nothing is left here. */
  async destroy(): Promise<void> {}

  async properties(key: HeldKey): Promise<{ extractable: boolean }> {
    this.#sealedOf(key);
    return { extractable: true };
  }

  async close(): Promise<void> {}

  #sealedOf(key: HeldKey) {
    if (key.sealed === undefined) {
      throw new KeyturnError(
        'ERR_CUSTODY_KEY_MISSING',
        `key ${key.kid} of key set "${key.keySetId}" has no sealed private key stored: it was destroyed or revoked`,
        { keySetId: key.keySetId, kid: key.kid },
      );
    }
    return key.sealed;
  }
}
