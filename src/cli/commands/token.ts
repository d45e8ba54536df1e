import { Command } from 'commander';
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { z } from 'zod';
import { KeyturnError } from '../../domain/errors';
import { KeyRing, ttlToMs } from '../../issuer/key-ring';
import { createLogger } from '../../logger';
import { listPublishedJwks } from '../../store/published-keys';
import { withKeyStore } from '../key-store';
import { keySetIdArgument, parseOptions } from '../operator';
import { DATA_DIR_OPTION } from '../options';

// Everything a command is given is checked before the database is opened (or an embedded one started).
const keySetSchema = z.object({ keySetId: keySetIdArgument });
const CLAIMS_HINT = `give an object, e.g. --claims '{"scope":"read"}'`;

const signCommand = new Command('sign')
  .description("print a JWT signed with the key set's active key, as the key ring signs them")
  .argument('<id>', 'key set id')
  .option('--sub <subject>', 'the sub claim')
  .option('--ttl <duration>', "lifetime, e.g. 15m (default and maximum: the policy's maxTokenTtl, within KEYTURN_MAX_TOKEN_TTL_CEILING)")
  .option('--claims <json>', 'further claims as a JSON object')
  .option(...DATA_DIR_OPTION)
  .action(async (id: string, options: { sub?: string; ttl?: string; claims?: string; dataDir?: string }) => {
    const { keySetId } = parseOptions(keySetSchema, { keySetId: id });
    const claims = options.claims === undefined ? {} : parseClaims(options.claims);
    if (options.ttl !== undefined) ttlToMs(options.ttl);
    const token = await withKeyStore(options.dataDir, async (store, config) => {
      const ring = await KeyRing.open({
        pool: store.pool,
        kekRing: store.kekRing,
        keySetIds: [keySetId],
        maxTokenTtlCeilingMs: config.ceilings.maxTokenTtlMs,
        logger: createLogger({ level: config.logLevel, toStderr: true }),
      });
      try {
        return await ring.sign(keySetId, { ...claims, ...(options.sub !== undefined && { sub: options.sub }) }, { ttl: options.ttl });
      } finally {
        await ring.close();
      }
    });
    console.log(token);
  });

const verifyCommand = new Command('verify')
  .description("verify a JWT against a key set's published keys (from PostgreSQL) or a JWKS URL, and print its claims")
  .argument('<jwt>', 'the token')
  .option('--keyset <id>', 'verify against this key set, read from the database')
  .option('--jwks-url <url>', 'verify against the JWKS at this URL')
  .option(...DATA_DIR_OPTION)
  .action(async (token: string, options: { keyset?: string; jwksUrl?: string; dataDir?: string }) => {
    if ((options.keyset === undefined) === (options.jwksUrl === undefined)) {
      throw new KeyturnError('ERR_CONFIG_INVALID', 'name exactly one of --keyset <id> and --jwks-url <url>', { field: 'keyset' });
    }
    const url = options.jwksUrl === undefined ? undefined : jwksUrl(options.jwksUrl);
    const keySetId = options.keyset === undefined ? undefined : parseOptions(keySetSchema, { keySetId: options.keyset }).keySetId;
    const verify = (keys: JWTVerifyGetKey) => jwtVerify(token, keys).catch((error: unknown) => Promise.reject(rejection(error)));
    const { payload, protectedHeader } =
      url !== undefined
        ? await verify(createRemoteJWKSet(url))
        : await withKeyStore(options.dataDir, async (store) => verify(createLocalJWKSet({ keys: await listPublishedJwks(store.pool, keySetId!) })));
    console.log(JSON.stringify({ header: protectedHeader, claims: payload }, null, 2));
  });

export const tokenCommand = new Command('token').description('sign and verify tokens').addCommand(signCommand).addCommand(verifyCommand);

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
  // The key ring refuses them too, but only once the database is open.
  const times = ['iat', 'exp'].filter((claim) => Object.hasOwn(value, claim));
  if (times.length > 0) {
    throw new KeyturnError('ERR_CONFIG_INVALID', `--claims must not set ${times.join(' or ')}: keyturn sets iat and exp; choose the lifetime with --ttl`, {
      field: 'claims',
    });
  }
  return value as Record<string, unknown>;
}

/** `--jwks-url` as a URL to fetch; the text is not quoted back, as a URL may hold credentials. */
function jwksUrl(text: string): URL {
  const url = URL.canParse(text) ? new URL(text) : undefined;
  if (url?.protocol !== 'http:' && url?.protocol !== 'https:') {
    throw new KeyturnError('ERR_CONFIG_INVALID', '--jwks-url must be an http(s) URL, e.g. https://keys.example.com/.well-known/jwks.json', {
      field: 'jwksUrl',
    });
  }
  return url;
}

/** jose's reason, in one line: which check the token failed. */
function rejection(error: unknown): Error {
  if (error instanceof joseErrors.JOSEError) return new Error(`token rejected (${error.code}): ${error.message}`);
  return error instanceof Error ? error : new Error(String(error));
}
