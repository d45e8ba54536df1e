import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import type { JWK } from 'jose';
import { KeyturnError } from '../domain/errors';
import type { KekRing } from './kek';

/** Layout: 1 version byte | 12-byte IV | 16-byte GCM tag | ciphertext. Bump on any layout or AAD change. */
const LAYOUT_VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + IV_BYTES + TAG_BYTES;
const CIPHER = 'aes-256-gcm';

/** The key a sealed private JWK belongs to; bound to the ciphertext so it cannot be moved to another key. */
export interface SealContext {
  keySetId: string;
  kid: string;
}

/** A sealed private JWK and the id of the KEK that opens it; store both. */
export interface SealedPrivateKey {
  kekId: string;
  sealed: Buffer;
}

/** Encrypts a private JWK with the ring's current KEK (AES-256-GCM, fresh random IV). */
export function sealPrivateKey(privateJwk: JWK, ring: KekRing, context: SealContext): SealedPrivateKey {
  const kek = ring.current;
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv(CIPHER, kek.key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(additionalData(context));
  const plaintext = Buffer.from(JSON.stringify(privateJwk), 'utf8');
  try {
    const ciphertext = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return { kekId: kek.id, sealed: Buffer.concat([Buffer.of(LAYOUT_VERSION), iv, cipher.getAuthTag(), ciphertext]) };
  } finally {
    plaintext.fill(0);
  }
}

/**
 * Decrypts a private JWK sealed by {@link sealPrivateKey} for the same key set and kid.
 * Throws ERR_KEK_UNKNOWN when the ring lacks KEK `kekId`, and ERR_KEY_DECRYPTION_FAILED when the
 * blob was altered, is malformed, or was sealed for another key.
 */
export function openPrivateKey(sealed: Buffer, kekId: string, ring: KekRing, context: SealContext): JWK {
  const { keySetId, kid } = context;
  const kek = ring.get(kekId);
  if (kek === undefined) {
    throw new KeyturnError(
      'ERR_KEK_UNKNOWN',
      `private key "${kid}" of key set "${keySetId}" is sealed with KEK ${kekId}, which is not configured ` +
        `(configured: ${ring.ids.join(', ')}); add that KEK to KEYTURN_KEK after the current one`,
      { keySetId, kid },
    );
  }
  const failed = (reason: string, cause?: unknown) =>
    new KeyturnError(
      'ERR_KEY_DECRYPTION_FAILED',
      `cannot decrypt private key "${kid}" of key set "${keySetId}" with KEK ${kekId}: ${reason}`,
      { keySetId, kid, cause },
    );
  if (sealed.length <= HEADER_BYTES || sealed[0] !== LAYOUT_VERSION) {
    throw failed('the sealed key is truncated or has an unknown layout');
  }
  const decipher = createDecipheriv(CIPHER, kek.key, sealed.subarray(1, 1 + IV_BYTES), { authTagLength: TAG_BYTES });
  decipher.setAAD(additionalData(context));
  decipher.setAuthTag(sealed.subarray(1 + IV_BYTES, HEADER_BYTES));
  // GCM hands out plaintext before the tag is checked; nothing reads it until final() succeeds.
  const plaintext = decipher.update(sealed.subarray(HEADER_BYTES));
  try {
    try {
      decipher.final();
    } catch (cause) {
      throw failed('the sealed key was altered or belongs to another key', cause);
    }
    return parseJwk(plaintext, () => failed('the plaintext is not a JWK'));
  } finally {
    plaintext.fill(0);
  }
}

/** JSON of the pair, so no two (keySetId, kid) pairs encode alike. */
function additionalData({ keySetId, kid }: SealContext): Buffer {
  return Buffer.from(JSON.stringify([keySetId, kid]), 'utf8');
}

/** The parse error is dropped, not kept as cause: V8 quotes the offending JSON, i.e. key material. */
function parseJwk(plaintext: Buffer, failure: () => KeyturnError): JWK {
  let value: unknown;
  try {
    value = JSON.parse(plaintext.toString('utf8'));
  } catch {
    throw failure();
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || !('kty' in value)) throw failure();
  return value as JWK;
}
