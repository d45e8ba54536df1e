import type { SealedPrivateKey } from '../crypto/envelope';
import type { PublicJwk } from '../crypto/generate';
import type { SigningAlgorithm } from '../domain/algorithms';
import type { CustodyBackend } from '../domain/custody-settings';

/** The key set a custody key is made for: backends label their keys with it, so an operator can find them there. */
export interface KeyOwner {
  keySetId: string;
}

/** A key pair generated in custody: its public half (named by its thumbprint, as every kid) and the backend's handle to the private half. */
export interface CustodyKey {
  kid: string;
  alg: SigningAlgorithm;
  publicJwk: PublicJwk;
  /** Opaque to keyturn and not secret (a KMS key ARN, a PKCS#11 object's id): stored beside the key. */
  handle: string;
  /** `sealed` only: the private key sealed under the current KEK, for PostgreSQL to keep. */
  sealed?: SealedPrivateKey;
}

/** One stored custody key, as signing and destruction name it. */
export interface HeldKey extends KeyOwner {
  kid: string;
  alg: SigningAlgorithm;
  handle: string;
  /** `sealed` only: the sealed private key as stored. */
  sealed?: SealedPrivateKey;
}

/**
 * Signs a JWS signing input and answers the signature in JOSE's form (ECDSA as r‖s, RFC 7518 §3.4).
 * Synchronous where the private key is in keyturn's memory; a promise where a KMS or an HSM signs.
 * `signingInput` is the caller's to reuse once the function returns: an asynchronous one copies what it
 * needs (or its digest) before its first await.
 */
export type SignatureFunction = (signingInput: Buffer) => Buffer | Promise<Buffer>;

/** What a backend says of a key's private half, from the backend itself. */
export interface CustodyKeyProperties {
  /** Whether the private half could ever be read out of the backend. */
  extractable: boolean;
}

/**
 * Where a key set's private keys live and are used. keyturn asks a custody backend to generate a key
 * pair, to sign with it and to destroy it; nothing else in keyturn touches private material.
 */
export interface KeyCustody {
  readonly backend: CustodyBackend;
  /** The algorithms this backend can generate and sign with. */
  readonly algorithms: readonly SigningAlgorithm[];
  /** Whether a private key ever passes through keyturn's memory (only `sealed`). */
  readonly privateKeysPassThroughKeyturn: boolean;
  /** Generates a key pair for `alg` in custody, labelled with its owner and kid. */
  generate(alg: SigningAlgorithm, owner: KeyOwner): Promise<CustodyKey>;
  /** A signature function for the key, ready for many signatures (handles looked up once). */
  signer(key: HeldKey): Promise<SignatureFunction>;
  /** Destroys the key's private half (or schedules it, where the backend only schedules). Idempotent: a key already gone is fine. */
  destroy(key: HeldKey): Promise<void>;
  /** The backend's own account of the key's private half. */
  properties(key: HeldKey): Promise<CustodyKeyProperties>;
  /** Releases connections and sessions. */
  close(): Promise<void>;
}
