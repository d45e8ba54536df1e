import type { Pool } from 'pg';
import type { PublicJwk } from '../crypto/generate';
import { isSigningAlgorithm, type SigningAlgorithm } from '../domain/algorithms';

// What the JWKS server reads, all through the views of migration 006 (006_published_keys.sql): a
// role granted those views only (KEYTURN_JWKS_ROLE) serves the JWKS and discovery documents.

/** The part of a key set's policy its JWKS and discovery documents are built from. */
export interface PublishedKeySet {
  keySetId: string;
  algorithm: SigningAlgorithm;
  /** A duration such as `15m`: verifiers may cache the JWKS this long. */
  jwksMaxAge: string;
  /** The policy's token issuer; undefined when it names none. */
  issuer: string | undefined;
}

/** The key set as its JWKS needs it, or undefined for an unknown key set. */
export async function getPublishedKeySet(pool: Pool, keySetId: string): Promise<PublishedKeySet | undefined> {
  const { rows } = await pool.query<{ algorithm: string | null; jwks_max_age: string | null; issuer: string | null }>(
    'SELECT algorithm, jwks_max_age, issuer FROM published_key_sets WHERE key_set_id = $1',
    [keySetId],
  );
  const row = rows[0];
  if (row === undefined) return undefined;
  if (!isSigningAlgorithm(row.algorithm) || row.jwks_max_age === null) {
    throw new TypeError(`the stored policy of key set "${keySetId}" lacks a supported algorithm or a jwksMaxAge`);
  }
  return { keySetId, algorithm: row.algorithm, jwksMaxAge: row.jwks_max_age, issuer: row.issuer || undefined };
}

/** The public JWKs verifiers should trust: the next, active and grace keys, oldest first. */
export async function listPublishedJwks(pool: Pool, keySetId: string): Promise<PublicJwk[]> {
  const { rows } = await pool.query<{ public_jwk: PublicJwk }>(
    'SELECT public_jwk FROM published_keys WHERE key_set_id = $1 ORDER BY created_at, kid',
    [keySetId],
  );
  return rows.map((r) => r.public_jwk);
}
