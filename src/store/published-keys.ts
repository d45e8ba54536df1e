import type { Pool } from 'pg';
import type { PublicJwk } from '../crypto/generate';
import { isSigningAlgorithm, type SigningAlgorithm } from '../domain/algorithms';
import { KeyturnError } from '../domain/errors';

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

/**
 * What to do when the views cannot be read for want of the schema or of a grant, as an error that
 * says so; undefined for any other failure (a database that is down is waited out, not reported).
 */
export function unreadableViewsError(error: unknown): KeyturnError | undefined {
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (code === '42P01') {
    return new KeyturnError(
      'ERR_SCHEMA_OUTDATED',
      `the database has no view of the published keys (${String(message)}): its schema predates this keyturn; ` +
        "run `keyturn migrate` with the schema owner's DATABASE_URL",
      { cause: error },
    );
  }
  if (code === '42501') {
    return new KeyturnError(
      'ERR_DATABASE_ROLES',
      `the database role of DATABASE_URL may not read the published keys (${String(message)}): run \`keyturn migrate\` ` +
        "with the schema owner's DATABASE_URL and KEYTURN_JWKS_ROLE set to this role; it grants the role SELECT on those views",
      { cause: error },
    );
  }
  return undefined;
}
