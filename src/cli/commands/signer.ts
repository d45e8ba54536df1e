import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import type { Pool } from 'pg';
import { z } from 'zod';
import { loadConfig, type Config } from '../../config';
import { durationToMs, DURATION_HINT } from '../../domain/duration';
import { deploymentIssuerOf } from '../../domain/issuer';
import { withInstancePublicUrl } from '../../runtime/instance-file';
import { isKeySetId, keySetIdProblem } from '../../domain/key-set-id';
import { defaultBurst, RATE_HINT, rateToPerSecond } from '../../domain/rate';
import { createLogger } from '../../logger';
import { createMetricsRegistry } from '../../observability/metrics';
import { resolveDatabase } from '../../runtime/database';
import { applyMigrations, createPool, endPool } from '../../runtime/database-pool';
import { openKeyStore } from '../../runtime/open-key-store';
import { onShutdownRequest } from '../../runtime/shutdown-signal';
import { Teardown } from '../../runtime/teardown';
import { newClientSecret } from '../../signer/client-secret';
import { normaliseSubject } from '../../signer/client-registry';
import { startSignerServer } from '../../signer/server';
import { addSignerClient, listSignerClients, revokeSignerClient } from '../../store/signer-clients';
import { parseOptions, reasonOption, requestedBy } from '../operator';

/** `keyturn signer`: the signing service, until SIGINT or SIGTERM. */
export async function signerAction(options: { dataDir?: string; port?: number; host?: string }): Promise<void> {
  const config = loadConfig(process.env, { dataDir: options.dataDir });
  const logger = createLogger({ level: config.logLevel });
  const shutdown = onShutdownRequest(logger);
  const teardown = new Teardown(logger);
  try {
    const tls = config.signer.tls;
    const tlsFiles =
      tls === undefined
        ? undefined
        : {
            cert: await readFile(tls.certFile),
            key: await readFile(tls.keyFile),
            clientCa: tls.clientCaFile === undefined ? undefined : await readFile(tls.clientCaFile),
          };
    const store = await openKeyStore(config, logger, { joinRunningInstance: true });
    teardown.add('the database', () => store.close());
    const server = await startSignerServer({
      port: options.port ?? config.signer.port,
      host: options.host ?? config.signer.host,
      pool: store.pool,
      kekRing: store.kekRing,
      custody: store.keyStore.custody,
      registry: createMetricsRegistry({ perKeySet: config.metricsPerKeySet }),
      logger,
      defaultRate: config.signer.rate,
      maxTokenTtlCeilingMs: config.ceilings.maxTokenTtlMs,
      tls: tlsFiles,
      ...deploymentIssuerOf(await withInstancePublicUrl(config)),
    });
    teardown.add('the signer', () => server.close());
    logger.info({ url: server.url }, 'signer running');
    await shutdown.requested;
  } finally {
    await teardown.run();
    shutdown.dispose();
  }
}

const CLIENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const clientName = z.string().regex(CLIENT_NAME, {
  error: "a client name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit",
});

/** `--pin claim=value`: the value is JSON when it starts like an array, object or string, else the text itself. */
function parsePin(text: string): [string, unknown] | undefined {
  const at = text.indexOf('=');
  if (at < 1) return undefined;
  const claim = text.slice(0, at);
  const raw = text.slice(at + 1);
  if (!/^[[{"]/.test(raw)) return [claim, raw];
  try {
    return [claim, JSON.parse(raw)];
  } catch {
    return undefined;
  }
}

const addSchema = z
  .object({
    name: clientName,
    keySets: z
      .string({ error: '--key-sets is required: the key sets the client may sign for, e.g. --key-sets payments,web' })
      .transform((value) => [...new Set(value.split(',').map((id) => id.trim()))])
      .superRefine((ids, ctx) => {
        const bad = ids.find((id) => !isKeySetId(id));
        if (bad !== undefined) ctx.addIssue({ code: 'custom', message: `--key-sets: ${keySetIdProblem(bad)}` });
      }),
    expires: z
      .string()
      .transform((value, ctx) => {
        const ms = durationToMs(value);
        if (ms === undefined || ms === 0)
          ctx.addIssue({ code: 'custom', message: `--expires must be a duration from now: ${DURATION_HINT}` });
        return Date.now() + (ms ?? 0);
      })
      .optional(),
    pin: z
      .array(z.string())
      .default([])
      .transform((pins, ctx) => {
        const claims: Record<string, unknown> = {};
        for (const text of pins) {
          const pin = parsePin(text);
          if (pin === undefined) {
            ctx.addIssue({
              code: 'custom',
              message: `--pin must be claim=value (JSON for arrays and objects), e.g. --pin aud=api`,
            });
          } else if (['iat', 'exp'].includes(pin[0])) {
            ctx.addIssue({ code: 'custom', message: `--pin ${pin[0]}: keyturn sets iat and exp itself` });
          } else claims[pin[0]] = pin[1];
        }
        return claims;
      }),
    rate: z
      .string()
      .transform((value, ctx) => {
        const perSecond = rateToPerSecond(value);
        if (perSecond === undefined) ctx.addIssue({ code: 'custom', message: `--rate: ${RATE_HINT}` });
        return perSecond ?? 0;
      })
      .optional(),
    burst: z.coerce
      .number()
      .int()
      .min(1, { error: '--burst must be a whole number of requests, at least 1' })
      .optional(),
    certSubject: z
      .string()
      .transform(normaliseSubject)
      .refine((subject) => /^[A-Za-z][A-Za-z0-9.]*=/.test(subject), {
        error: "--cert-subject must be a certificate subject such as 'CN=billing' or 'CN=billing,O=Example'",
      })
      .optional(),
    dataDir: z.string().optional(),
    json: z.boolean().default(false),
  })
  .refine((options) => options.burst === undefined || options.rate !== undefined, {
    error: '--burst goes with --rate: give the client a rate of its own, e.g. --rate 50/s --burst 100',
    path: ['burst'],
  });

/** `keyturn signer client add`: prints the bearer secret once (none for a client known by its certificate). */
export async function clientAddAction(name: string, _options: unknown, command: Command): Promise<void> {
  const options = parseOptions(addSchema, { ...clientOptions(command), name });
  const secret = options.certSubject === undefined ? newClientSecret() : undefined;
  const rate =
    options.rate === undefined
      ? undefined
      : { perSecond: options.rate, burst: options.burst ?? defaultBurst(options.rate) };
  await withDatabase(options.dataDir, (pool) =>
    addSignerClient(pool, {
      name: options.name,
      keySetIds: options.keySets,
      pinnedClaims: options.pin,
      secretHash: secret?.hash,
      certSubject: options.certSubject,
      rate,
      expiresAt: options.expires,
      actor: requestedBy(),
    }),
  );
  const expires = options.expires === undefined ? null : new Date(options.expires).toISOString();
  if (options.json) {
    console.log(
      JSON.stringify({
        name: options.name,
        keySetIds: options.keySets,
        ...(secret && { secret: secret.secret }),
        ...(options.certSubject !== undefined && { certSubject: options.certSubject }),
        pinnedClaims: options.pin,
        expiresAt: expires,
      }),
    );
    return;
  }
  const lines = [
    `added signing client "${options.name}" for key set(s) ${options.keySets.join(', ')}` +
      (expires === null ? '' : `, until ${expires}`),
  ];
  if (secret) {
    lines.push(
      '',
      `  ${secret.secret}`,
      '',
      'This bearer secret is shown once and stored nowhere (PostgreSQL keeps its SHA-256): keep it in the',
      'client\'s secret store and send it as "Authorization: Bearer <secret>".',
    );
  } else {
    lines.push(`known by its client certificate, subject ${options.certSubject}`);
  }
  console.log(lines.join('\n'));
}

/** `keyturn signer client list`: every client, never a secret or its hash. */
export async function clientListAction(_options: unknown, command: Command): Promise<void> {
  const options = parseOptions(
    z.object({ dataDir: z.string().optional(), json: z.boolean().default(false) }),
    clientOptions(command),
  );
  const clients = await withDatabase(options.dataDir, (pool) => listSignerClients(pool));
  const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());
  const rows = clients.map((c) => ({
    name: c.name,
    keySetIds: c.keySetIds,
    authentication: c.certSubject === null ? 'bearer secret' : `client certificate ${c.certSubject}`,
    pinnedClaims: c.pinnedClaims,
    rate: c.rate,
    createdAt: iso(c.createdAt),
    createdBy: c.createdBy,
    expiresAt: iso(c.expiresAt),
    revokedAt: iso(c.revokedAt),
    revokedBy: c.revokedBy,
  }));
  if (options.json) {
    console.log(JSON.stringify(rows));
    return;
  }
  if (rows.length === 0) {
    console.log('no signing clients: add one with `keyturn signer client add <name> --key-sets <ids>`');
    return;
  }
  const now = Date.now();
  for (const c of clients) {
    const state =
      c.revokedAt !== null
        ? `revoked ${iso(c.revokedAt)} by ${c.revokedBy}`
        : c.expiresAt !== null && c.expiresAt <= now
          ? `expired ${iso(c.expiresAt)}`
          : c.expiresAt !== null
            ? `live until ${iso(c.expiresAt)}`
            : 'live';
    const pinned = Object.keys(c.pinnedClaims);
    console.log(
      `${c.name}  ${state}  key sets: ${c.keySetIds.join(', ')}` +
        (pinned.length > 0 ? `  pinned: ${pinned.join(', ')}` : '') +
        (c.certSubject !== null ? `  certificate: ${c.certSubject}` : '') +
        (c.rate !== null ? `  rate: ${c.rate.perSecond}/s burst ${c.rate.burst}` : ''),
    );
  }
}

/** `keyturn signer client revoke`: running signers refuse the client as soon as they hear of it. */
export async function clientRevokeAction(name: string, _options: unknown, command: Command): Promise<void> {
  const options = parseOptions(
    z.object({
      name: clientName,
      reason: reasonOption('revoking a signing client'),
      dataDir: z.string().optional(),
      json: z.boolean().default(false),
    }),
    { ...clientOptions(command), name },
  );
  const revoked = await withDatabase(options.dataDir, (pool) =>
    revokeSignerClient(pool, options.name, requestedBy(), options.reason),
  );
  if (options.json) {
    // `revoked` false: it was revoked before, and stays so.
    console.log(JSON.stringify({ name: options.name, revoked }));
    return;
  }
  console.log(
    revoked ? `revoked signing client "${options.name}"` : `signing client "${options.name}" was revoked already`,
  );
}

/**
 * A client command's options with those commander gave `keyturn signer` itself: `--data-dir` is an
 * option of both, and commander hands it to the parent wherever it stands on the line.
 */
function clientOptions(command: Command): Record<string, unknown> {
  // The schemas leave out what they do not name (`keyturn signer`'s --port and --host).
  return command.optsWithGlobals<Record<string, unknown>>();
}

/**
 * DATABASE_URL (as the worker's role, which may change the clients), else the database of the keyturn
 * instance running on the data folder, else the embedded one, started for the command. No KEK: the
 * clients are no key material.
 */
async function withDatabase<T>(dataDir: string | undefined, use: (pool: Pool) => Promise<T>): Promise<T> {
  const config: Config = loadConfig(process.env, { dataDir });
  const logger = createLogger({ level: 'silent' });
  const database = await resolveDatabase(config, logger, { joinRunningInstance: true });
  const pool = createPool(database, logger, { max: 2, connectionTimeoutMillis: 5_000 });
  try {
    await applyMigrations(pool, database, logger);
    return await use(pool);
  } finally {
    await endPool(pool);
    await database.stop();
  }
}
