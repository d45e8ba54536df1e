import { createHash } from 'node:crypto';
import { KeyturnError } from '../domain/errors';

/** The members RFC 7638 §3.2 hashes for each key type keyturn signs with, in lexicographic order. */
const THUMBPRINT_MEMBERS: Record<string, readonly string[]> = {
  EC: ['crv', 'kty', 'x', 'y'],
  RSA: ['e', 'kty', 'n'],
  OKP: ['crv', 'kty', 'x'],
};

/**
 * The RFC 7638 SHA-256 thumbprint of a JWK (base64url): keyturn's kid for that key. Only the public
 * members the RFC names are hashed, so a private JWK gives the thumbprint of its public half.
 * Undefined for a key type keyturn does not sign with, or a JWK lacking one of those members.
 * Synchronous (unlike jose's calculateJwkThumbprint), so that checking a key costs no await.
 */
export function jwkThumbprint(jwk: object): string | undefined {
  const kty = String((jwk as { kty?: unknown }).kty);
  if (!Object.hasOwn(THUMBPRINT_MEMBERS, kty)) return undefined;
  const members = THUMBPRINT_MEMBERS[kty];
  const required: Record<string, string> = {};
  for (const member of members) {
    const value = (jwk as Record<string, unknown>)[member];
    if (typeof value !== 'string' || value === '') return undefined;
    required[member] = value;
  }
  // JSON.stringify keeps insertion (here lexicographic) order and adds no whitespace, as §3.3 requires.
  return createHash('sha256').update(JSON.stringify(required), 'utf8').digest('base64url');
}

/** Whether `kid` is the thumbprint of `jwk`: a key whose kid does not match is never published or used. */
export function kidMatches(jwk: object, kid: string): boolean {
  return jwkThumbprint(jwk) === kid;
}

/**
 * Throws ERR_KID_MISMATCH unless `kid` is the thumbprint of `jwk` (`what` names it: "its private key",
 * "its stored public key"): an active key changed outside keyturn never signs.
 */
export function assertKidOf(jwk: object, what: string, key: { keySetId: string; kid: string }): void {
  if (kidMatches(jwk, key.kid)) return;
  const { keySetId, kid } = key;
  throw new KeyturnError(
    'ERR_KID_MISMATCH',
    `the active key ${kid} of key set "${keySetId}" does not match its kid (the RFC 7638 thumbprint of ${what} differs), so the key ring ` +
      `will not sign with it: it was changed outside keyturn; revoke it (\`keyturn revoke ${keySetId} ${kid} --reason ...\`) and a new key replaces it`,
    { keySetId, kid },
  );
}
