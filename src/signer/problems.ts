import type { OutgoingHttpHeaders } from 'node:http';
import { KeyturnError, type KeyturnErrorCode } from '../domain/errors';

/** Codes of refusals that are the signing service's own (the key ring's come as KeyturnError codes). */
export type SignerProblemCode =
  | 'ERR_NOT_FOUND'
  | 'ERR_METHOD_NOT_ALLOWED'
  | 'ERR_UNSUPPORTED_MEDIA_TYPE'
  | 'ERR_BODY_TOO_LARGE'
  | 'ERR_REQUEST_TIMEOUT'
  | 'ERR_REQUEST_INVALID'
  | 'ERR_CLAIMS_INVALID'
  | 'ERR_UNAUTHENTICATED'
  | 'ERR_FORBIDDEN'
  | 'ERR_CLAIM_PINNED'
  | 'ERR_RATE_LIMITED'
  | 'ERR_SIGNER_CLIENTS_STALE'
  | 'ERR_INTERNAL';

/** An RFC 9457 problem document, with keyturn's error code beside the standard members. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: SignerProblemCode | KeyturnErrorCode;
  keySetId?: string;
  field?: string;
}

/** A problem and the headers it goes out with (Allow, Retry-After, WWW-Authenticate). */
export interface ProblemReply {
  problem: Problem;
  headers?: OutgoingHttpHeaders;
}

export const PROBLEM_TYPE = 'application/problem+json';

const TITLES: Record<number, string> = {
  400: 'Bad request',
  401: 'Not authenticated',
  403: 'Not allowed',
  404: 'Not found',
  405: 'Method not allowed',
  408: 'Request timeout',
  413: 'Request body too large',
  415: 'Unsupported media type',
  429: 'Too many requests',
  431: 'Request header fields too large',
  500: 'Internal error',
  503: 'Service unavailable',
};

/** A problem whose `type` names its code: `urn:keyturn:problem:err-no-active-key`. */
export function problem(
  status: number,
  code: Problem['code'],
  detail: string,
  extra: { keySetId?: string; field?: string; headers?: OutgoingHttpHeaders } = {},
): ProblemReply {
  const { headers, ...members } = extra;
  return {
    problem: {
      type: `urn:keyturn:problem:${code.toLowerCase().replace(/_/g, '-')}`,
      title: TITLES[status] ?? 'Error',
      status,
      detail,
      code,
      ...members,
    },
    headers,
  };
}

/** How each key ring refusal is answered; a code not here is answered 500 without its message. */
const KEY_RING_STATUSES: Partial<Record<KeyturnErrorCode, { status: number; retry?: boolean }>> = {
  ERR_KEYSET_NOT_FOUND: { status: 404 },
  ERR_TOKEN_TTL_TOO_LONG: { status: 400 },
  ERR_TOKEN_ISSUER_MISMATCH: { status: 400 },
  ERR_TOKEN_ISSUER_UNKNOWN: { status: 503 },
  ERR_DURATION_INVALID: { status: 400 },
  ERR_NO_ACTIVE_KEY: { status: 503, retry: true },
  ERR_KEY_RING_STALE: { status: 503, retry: true },
  ERR_KEY_RING_UNAVAILABLE: { status: 503, retry: true },
  ERR_CUSTODY_UNAVAILABLE: { status: 503, retry: true },
  ERR_CUSTODY_KEY_MISSING: { status: 503, retry: true },
};

/** Refusals whose message names internals (a database error, a kid to revoke): said in general terms instead. */
const GENERAL_DETAIL: Partial<Record<KeyturnErrorCode, string>> = {
  ERR_TOKEN_ISSUER_UNKNOWN:
    "the signing service cannot tell the key set's issuer (iss): an operator must set the key set's policy issuer, KEYTURN_ISSUER or KEYTURN_PUBLIC_URL",
  ERR_KEY_RING_UNAVAILABLE:
    "the signing service cannot load the key set's active key from its database: try again shortly",
  ERR_CUSTODY_UNAVAILABLE: "the key set's key custody (a KMS or an HSM) did not sign: try again shortly",
  ERR_CUSTODY_KEY_MISSING: "the key set's active key is missing from its custody: an operator must revoke it",
  ERR_KEY_RING_STALE:
    "the signing service has not confirmed the key set's active key with its database recently enough to sign: try again shortly",
};

/**
 * The answer to an error thrown while signing: a KeyturnError the service knows is told as it is (its
 * message is written for the caller, names only the key set and field); anything else is a 500 that
 * says nothing of what went wrong inside (the log has it).
 */
export function problemOfError(error: unknown): ProblemReply {
  if (error instanceof KeyturnError) {
    const known = KEY_RING_STATUSES[error.code];
    if (known !== undefined) {
      return problem(known.status, error.code, GENERAL_DETAIL[error.code] ?? error.message, {
        keySetId: error.keySetId,
        field: error.field,
        headers: known.retry ? { 'retry-after': '1' } : undefined,
      });
    }
  }
  return problem(500, 'ERR_INTERNAL', 'the signing service failed to answer this request; its log says why');
}
