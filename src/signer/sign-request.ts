import { KeyturnError } from '../domain/errors';
import { ttlToMs } from '../issuer/key-ring';
import type { SignerClient } from './client-registry';
import { problem, type ProblemReply } from './problems';

/** A request body once checked: the claims with the client's pinned claims in, and the ttl as asked. */
export interface SignRequest {
  claims: Record<string, unknown>;
  ttl: string | number | undefined;
}

const BODY_HINT = 'send {"claims": {...}, "ttl": "15m"} (ttl optional)';

/**
 * Checks a request body and applies the client's pinned claims: a claim the client may not choose is
 * added when missing, and a request that sets it to anything else is refused (403) rather than
 * silently overridden, so a caller never believes it got a token it did not. The claims' values are
 * never quoted back.
 */
export function readSignRequest(body: Buffer, client: SignerClient): SignRequest | ProblemReply {
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    return problem(400, 'ERR_REQUEST_INVALID', `the request body is not valid JSON: ${BODY_HINT}`);
  }
  if (!isObject(value))
    return problem(400, 'ERR_REQUEST_INVALID', `the request body must be a JSON object: ${BODY_HINT}`);
  const unknown = Object.keys(value).filter((member) => member !== 'claims' && member !== 'ttl');
  if (unknown.length > 0) {
    return problem(400, 'ERR_REQUEST_INVALID', `unknown member "${unknown[0]}" in the request body: ${BODY_HINT}`, {
      field: unknown[0],
    });
  }
  const { claims, ttl } = value;
  if (!isObject(claims)) {
    return problem(400, 'ERR_CLAIMS_INVALID', `claims must be a JSON object: ${BODY_HINT}`, { field: 'claims' });
  }
  const times = ['iat', 'exp'].filter((claim) => Object.hasOwn(claims, claim));
  if (times.length > 0) {
    return problem(
      400,
      'ERR_CLAIMS_INVALID',
      `claims must not set ${times.join(' or ')}: keyturn sets iat and exp; choose the lifetime with ttl`,
      { field: times[0] },
    );
  }
  if (ttl !== undefined) {
    const refusal = checkTtl(ttl);
    if (refusal !== undefined) return refusal;
  }
  for (const { claim, value: pinned, json } of client.pinned) {
    if (!Object.hasOwn(claims, claim)) claims[claim] = pinned;
    else if (JSON.stringify(claims[claim]) !== json) {
      return problem(
        403,
        'ERR_CLAIM_PINNED',
        `client "${client.name}" may not set the claim "${claim}": it is pinned; leave it out and keyturn sets it`,
        { field: claim },
      );
    }
  }
  return { claims, ttl: ttl as string | number | undefined };
}

function checkTtl(ttl: unknown): ProblemReply | undefined {
  if (typeof ttl !== 'string' && typeof ttl !== 'number') {
    return problem(400, 'ERR_DURATION_INVALID', 'ttl must be a duration such as "15m" or a number of seconds', {
      field: 'ttl',
    });
  }
  try {
    ttlToMs(ttl);
    return undefined;
  } catch (error) {
    const detail =
      error instanceof KeyturnError || error instanceof TypeError
        ? error.message
        : 'ttl must be a duration such as "15m" or a number of seconds';
    return problem(400, 'ERR_DURATION_INVALID', detail, { field: 'ttl' });
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
