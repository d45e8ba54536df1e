import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  decodeProtectedHeader,
  errors as joseErrors,
  jwtVerify,
  type JWTVerifyGetKey,
} from 'jose';
import { z } from 'zod';
import { utc } from '../../domain/describe';
import { KeyturnError } from '../../domain/errors';
import { deploymentIssuerOf } from '../../domain/issuer';
import { withInstancePublicUrl } from '../../runtime/instance-file';
import { KeyRing, ttlToMs } from '../../issuer/key-ring';
import { createLogger } from '../../logger';
import { listPublishedJwks } from '../../store/published-keys';
import { withKeyStore } from '../key-store';
import { keySetIdArgument, parseOptions } from '../operator';

// Everything a command is given is checked before the database is opened (or an embedded one started).
const keySetSchema = z.object({ keySetId: keySetIdArgument });
const CLAIMS_HINT = `give an object, e.g. --claims '{"scope":"read"}'`;

export async function tokenSignAction(
  id: string,
  options: { sub?: string; ttl?: string; claims?: string; dataDir?: string; json?: boolean },
): Promise<void> {
  const { keySetId } = parseOptions(keySetSchema, { keySetId: id });
  const claims = options.claims === undefined ? {} : parseClaims(options.claims);
  if (options.ttl !== undefined) ttlToMs(options.ttl);
  const token = await withKeyStore(options.dataDir, async (store, config) => {
    const ring = await KeyRing.open({
      pool: store.pool,
      kekRing: store.kekRing,
      custody: store.keyStore.custody,
      keySetIds: [keySetId],
      maxTokenTtlCeilingMs: config.ceilings.maxTokenTtlMs,
      // The key set's issuer, as the JWKS server's discovery document names it.
      ...deploymentIssuerOf(await withInstancePublicUrl(config)),
      logger: createLogger({ level: config.logLevel, toStderr: true }),
    });
    try {
      return await ring.sign(
        keySetId,
        { ...claims, ...(options.sub !== undefined && { sub: options.sub }) },
        { ttl: options.ttl },
      );
    } finally {
      await ring.close();
    }
  });
  if (!options.json) {
    console.log(token);
    return;
  }
  // Read back from the token the ring signed: what it says is what a verifier will see.
  const { kid, alg } = decodeProtectedHeader(token);
  const { iss, iat, exp } = decodeJwt(token);
  console.log(
    JSON.stringify({
      token,
      keySetId,
      kid,
      alg,
      iss,
      iat,
      exp,
      expiresAt: exp === undefined ? undefined : new Date(exp * 1000).toISOString(),
    }),
  );
}

export async function tokenVerifyAction(
  token: string,
  options: { keySet?: string; jwksUrl?: string; dataDir?: string; json?: boolean },
): Promise<void> {
  if ((options.keySet === undefined) === (options.jwksUrl === undefined)) {
    throw new KeyturnError('ERR_CONFIG_INVALID', 'name exactly one of --key-set <id> and --jwks-url <url>', {
      field: 'keySet',
    });
  }
  const url = options.jwksUrl === undefined ? undefined : jwksUrl(options.jwksUrl);
  const keySetId =
    options.keySet === undefined ? undefined : parseOptions(keySetSchema, { keySetId: options.keySet }).keySetId;
  const verify = (keys: JWTVerifyGetKey) =>
    jwtVerify(token, keys).catch((error: unknown) => Promise.reject(rejection(error)));
  const { payload, protectedHeader } =
    url !== undefined
      ? await verify(createRemoteJWKSet(url))
      : await withKeyStore(options.dataDir, async (store) =>
          verify(createLocalJWKSet({ keys: await listPublishedJwks(store.pool, keySetId!) })),
        );
  if (options.json) {
    console.log(JSON.stringify({ header: protectedHeader, claims: payload }));
    return;
  }
  const expires = payload.exp === undefined ? 'no exp claim' : `expires ${utc(payload.exp * 1000)}`;
  console.log(
    [
      `valid: signed by ${protectedHeader.kid ?? '(no kid)'} (${protectedHeader.alg}), ${expires}`,
      `header: ${JSON.stringify(protectedHeader)}`,
      `claims: ${JSON.stringify(payload, null, 2)}`,
    ].join('\n'),
  );
}

function parseClaims(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new KeyturnError('ERR_CONFIG_INVALID', `--claims is not valid JSON: ${CLAIMS_HINT}`, { field: 'claims' });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new KeyturnError('ERR_CONFIG_INVALID', `--claims must be a JSON object: ${CLAIMS_HINT}`, { field: 'claims' });
  }
  // The key ring refuses them too, but only once the database is open. (A claimed iss is the key
  // set's to judge: the ring refuses one that is not its issuer.)
  const times = ['iat', 'exp'].filter((claim) => Object.hasOwn(value, claim));
  if (times.length > 0) {
    throw new KeyturnError(
      'ERR_CONFIG_INVALID',
      `--claims must not set ${times.join(' or ')}: keyturn sets iat and exp; choose the lifetime with --ttl`,
      {
        field: 'claims',
      },
    );
  }
  return value as Record<string, unknown>;
}

/** `--jwks-url` as a URL to fetch; the text is not quoted back, as a URL may hold credentials. */
function jwksUrl(text: string): URL {
  const url = URL.canParse(text) ? new URL(text) : undefined;
  if (url?.protocol !== 'http:' && url?.protocol !== 'https:') {
    throw new KeyturnError(
      'ERR_CONFIG_INVALID',
      '--jwks-url must be an http(s) URL, e.g. https://keys.example.com/.well-known/jwks.json',
      {
        field: 'jwksUrl',
      },
    );
  }
  return url;
}

/** jose's reason, in one line: which check the token failed. */
function rejection(error: unknown): Error {
  if (error instanceof joseErrors.JOSEError) return new Error(`token rejected (${error.code}): ${error.message}`);
  return error instanceof Error ? error : new Error(String(error));
}
