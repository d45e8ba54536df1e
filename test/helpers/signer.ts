import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { Pool } from 'pg';
import type { KekRing } from '../../src/crypto/kek';
import type { Rate } from '../../src/domain/rate';
import { startJwksServer, type RunningJwksServer } from '../../src/jwks/server';
import { createLogger } from '../../src/logger';
import { createMetricsRegistry } from '../../src/observability/metrics';
import { newClientSecret } from '../../src/signer/client-secret';
import { startSignerServer, type RunningSignerServer } from '../../src/signer/server';
import { addSignerClient, type NewSignerClient } from '../../src/store/signer-clients';

/** An answer of the signer, its body parsed when it is JSON. */
export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  body: Record<string, unknown>;
}

/**
 * One request over real HTTP(S) with node's client (keep-alive off: each answer stands alone). `tls`
 * adds the CA to trust, the server name and a client certificate.
 */
export function call(
  url: string,
  method: string,
  path: string,
  options: {
    secret?: string;
    body?: unknown;
    rawBody?: string;
    headers?: Record<string, string>;
    tls?: RequestOptions;
  } = {},
): Promise<Answer> {
  const body = options.rawBody ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  const headers: Record<string, string> = {
    ...(body !== undefined && { 'content-type': 'application/json' }),
    ...(options.secret !== undefined && { authorization: `Bearer ${options.secret}` }),
    ...options.headers,
  };
  const target = new URL(path, url);
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(target, { method, headers, agent: false, ...options.tls }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: Record<string, unknown> = {};
        try {
          parsed = JSON.parse(text) as Record<string, unknown>;
        } catch {
          // Not JSON: /metrics.
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: parsed });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Adds a client with a bearer secret, as `keyturn signer client add` does; returns the secret. */
export async function addClient(
  pool: Pool,
  client: Omit<NewSignerClient, 'actor' | 'pinnedClaims'> & { pinnedClaims?: Record<string, unknown> },
): Promise<string> {
  const { secret, hash } = newClientSecret();
  await addSignerClient(pool, { pinnedClaims: {}, actor: 'test', secretHash: hash, ...client });
  return secret;
}

/**
 * A JWKS server and a signer on one test database, silent, the signer's issuer being the JWKS server's
 * discovery URL (as in `keyturn dev`). `close()` stops both.
 */
export async function startSignerBesideJwks(
  pool: Pool,
  kekRing: KekRing,
  options: { defaultRate: Rate; pollIntervalMs?: number },
): Promise<{ jwks: RunningJwksServer; signer: RunningSignerServer; close(): Promise<void> }> {
  const logger = createLogger({ level: 'silent' });
  const { pollIntervalMs } = options;
  const jwks = await startJwksServer({
    port: 0,
    host: '127.0.0.1',
    pool,
    registry: createMetricsRegistry(),
    logger,
    pollIntervalMs,
  });
  const signer = await startSignerServer({
    port: 0,
    pool,
    kekRing,
    registry: createMetricsRegistry(),
    logger,
    defaultRate: options.defaultRate,
    pollIntervalMs,
    publicUrl: jwks.url,
  }).catch(async (error: unknown) => {
    await jwks.close();
    throw error;
  });
  return { jwks, signer, close: () => signer.close().finally(() => jwks.close()) };
}
