import { Command } from 'commander';
import { createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import { KeyturnError } from '../../../domain/errors';
import { KeyRing } from '../../../issuer/key-ring';
import { withKeyStore } from '../key-store';
import { DATA_DIR_OPTION } from '../options';

const signCommand = new Command('sign')
  .description("print a JWT signed with the key set's active key, as the key ring signs them")
  .argument('<id>', 'key set id')
  .option('--sub <subject>', 'the sub claim')
  .option('--ttl <duration>', "lifetime, e.g. 15m (default and maximum: the policy's maxTokenTtl, within KEYTURN_MAX_TOKEN_TTL_CEILING)")
  .option('--claims <json>', 'further claims as a JSON object')
  .option(...DATA_DIR_OPTION)
  .action(async (keySetId: string, options: { sub?: string; ttl?: string; claims?: string; dataDir?: string }) => {
    const claims = options.claims === undefined ? {} : parseClaims(options.claims);
    const token = await withKeyStore(options.dataDir, async (store, config) => {
      const ring = await KeyRing.open({
        pool: store.pool,
        kekRing: store.kekRing,
        keySetIds: [keySetId],
        maxTokenTtlCeilingMs: config.ceilings.maxTokenTtlMs,
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
    const verify = (keys: JWTVerifyGetKey) => jwtVerify(token, keys).catch((error: unknown) => Promise.reject(rejection(error)));
    const { payload, protectedHeader } =
      options.jwksUrl !== undefined
        ? await verify(createRemoteJWKSet(new URL(options.jwksUrl)))
        : await withKeyStore(options.dataDir, async (store) =>
            verify(createLocalJWKSet({ keys: await store.keyStore.listPublishedJwks(options.keyset!) })),
          );
    console.log(JSON.stringify({ header: protectedHeader, claims: payload }, null, 2));
  });

export const tokenCommand = new Command('token').description('sign and verify tokens').addCommand(signCommand).addCommand(verifyCommand);

function parseClaims(text: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new KeyturnError('ERR_CONFIG_INVALID', '--claims is not valid JSON', { field: 'claims' });
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new KeyturnError('ERR_CONFIG_INVALID', '--claims must be a JSON object, e.g. {"scope":"read"}', { field: 'claims' });
  }
  return value as Record<string, unknown>;
}

/** jose's reason, in one line: which check the token failed. */
function rejection(error: unknown): Error {
  if (error instanceof joseErrors.JOSEError) return new Error(`token rejected (${error.code}): ${error.message}`);
  return error instanceof Error ? error : new Error(String(error));
}
