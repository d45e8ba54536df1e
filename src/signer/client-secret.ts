import { hash, randomBytes } from 'node:crypto';

/** What every bearer secret starts with, so that a leaked one is recognised (secret scanners, log reviews). */
const CLIENT_SECRET_PREFIX = 'kts_';

/** A new client's bearer secret (shown once) and the hash PostgreSQL keeps. */
export function newClientSecret(): { secret: string; hash: Buffer } {
  const secret = `${CLIENT_SECRET_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { secret, hash: hashClientSecret(secret) };
}

/**
 * SHA-256 of a bearer secret. A slow password hash (bcrypt, scrypt, Argon2) exists to make guessing a
 * low-entropy password from its hash expensive; these secrets are 32 random bytes, so no guess is
 * feasible either way, and one fast hash per request keeps authentication off the signing path's
 * critical cost. Whoever reads the table learns no secret that would let them sign.
 */
export function hashClientSecret(secret: string): Buffer {
  // crypto.hash: one call, no Hash object (it takes a string as UTF-8).
  return hash('sha256', secret, 'buffer');
}
