/**
 * Errors keyturn raises on purpose. Each carries a stable `code` that callers and tests match on
 * (the message is for people), plus the key set, kid or field it concerns.
 * Misuse of an API by a programmer throws a plain TypeError instead.
 */
export type KeyturnErrorCode =
  | 'ERR_POLICY_INVALID'
  | 'ERR_DURATION_INVALID'
  | 'ERR_KEYSET_NOT_FOUND'
  | 'ERR_KEYSET_DECOMMISSIONED'
  | 'ERR_KEYSET_ID_INVALID'
  | 'ERR_KID_UNKNOWN'
  | 'ERR_KEY_STATE_CONFLICT'
  | 'ERR_KEK_MISSING'
  | 'ERR_KEK_INVALID'
  | 'ERR_KEK_UNKNOWN'
  | 'ERR_KEY_DECRYPTION_FAILED'
  | 'ERR_CONFIG_INVALID'
  | 'ERR_SCHEMA_OUTDATED'
  | 'ERR_DATABASE_ROLES'
  | 'ERR_KEYSETS_FILE_INVALID'
  | 'ERR_SIGNER_CLIENT_INVALID'
  | 'ERR_SIGNER_CLIENT_UNKNOWN'
  | 'ERR_REASON_REQUIRED'
  | 'ERR_STEP_FAILED'
  | 'ERR_TEMPORAL_EXECUTABLE'
  | 'ERR_NO_ACTIVE_KEY'
  | 'ERR_KEY_RING_STALE'
  | 'ERR_KEY_RING_UNAVAILABLE'
  | 'ERR_KID_MISMATCH'
  | 'ERR_TOKEN_TTL_TOO_LONG'
  | 'ERR_TOKEN_ISSUER_MISMATCH'
  | 'ERR_TOKEN_ISSUER_UNKNOWN'
  | 'ERR_CUSTODY_ALGORITHM_UNSUPPORTED'
  | 'ERR_CUSTODY_UNAVAILABLE'
  | 'ERR_CUSTODY_KEY_MISSING';

/** What a KeyturnError concerns, as far as known. */
export interface KeyturnErrorDetails {
  keySetId?: string;
  kid?: string;
  field?: string;
  cause?: unknown;
}

/**
 * An error keyturn raises on purpose: match on `code`, not on the message.
 *
 * @example
 * ```ts
 * try {
 *   await keySets.revoke('payments', kid, 'leaked');
 * } catch (error) {
 *   if (error instanceof KeyturnError && error.code === 'ERR_KID_UNKNOWN') console.error(`no key ${error.kid}`);
 *   else throw error;
 * }
 * ```
 */
export class KeyturnError extends Error {
  readonly code: KeyturnErrorCode;
  readonly keySetId?: string;
  readonly kid?: string;
  readonly field?: string;

  constructor(code: KeyturnErrorCode, message: string, details: KeyturnErrorDetails = {}) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = code;
    this.keySetId = details.keySetId;
    this.kid = details.kid;
    this.field = details.field;
  }
}

/** One problem with one field of a policy. */
export interface PolicyViolation {
  field: string;
  message: string;
}

/** A policy that breaks one or more rules; `violations` lists every field at fault. */
export class PolicyError extends KeyturnError {
  readonly violations: PolicyViolation[];

  constructor(violations: PolicyViolation[], keySetId?: string) {
    const where = keySetId === undefined ? 'policy' : `policy of key set "${keySetId}"`;
    super('ERR_POLICY_INVALID', `invalid ${where}: ${violations.map((v) => `${v.field}: ${v.message}`).join('; ')}`, {
      keySetId,
      field: violations[0]?.field,
    });
    this.violations = violations;
  }
}
