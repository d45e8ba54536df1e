import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest, type RequestOptions } from 'node:https';
import type { Pool } from 'pg';
import type { Rate } from '../../src/domain/rate';
import { startJwksServer, type RunningJwksServer } from '../../src/jwks/server';
import { createLogger } from '../../src/logger';
import { createMetricsRegistry } from '../../src/observability/metrics';
import { newClientSecret } from '../../src/signer/client-secret';
import { startSignerServer, type RunningSignerServer } from '../../src/signer/server';
import { KeyStore } from '../../src/store/key-store';
import { addSignerClient, type NewSignerClient } from '../../src/store/signer-clients';
import { randomKekRing } from './key-set-worker';
import { createTestDatabase } from './postgres';

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

/** A test database with a JWKS server and a signer on it; {@link startSignerBesideJwks} starts one. */
export interface SignerBesideJwks {
  pool: Pool;
  /** The store of the key sets the signer signs for, under the signer's KEK ring. */
  store: KeyStore;
  jwks: RunningJwksServer;
  signer: RunningSignerServer;
  /** Stops both servers and drops the database. */
  close(): Promise<void>;
}

/**
 * A JWKS server and a signer on a test database of their own, silent, the signer's issuer being the
 * JWKS server's discovery URL (as in `keyturn dev`).
 */
export async function startSignerBesideJwks(options: {
  defaultRate: Rate;
  pollIntervalMs?: number;
}): Promise<SignerBesideJwks> {
  const db = await createTestDatabase();
  const kekRing = randomKekRing();
  const logger = createLogger({ level: 'silent' });
  const { pollIntervalMs } = options;
  const jwks = await startJwksServer({
    port: 0,
    host: '127.0.0.1',
    pool: db.pool,
    registry: createMetricsRegistry(),
    logger,
    pollIntervalMs,
  }).catch(async (error: unknown) => {
    await db.drop();
    throw error;
  });
  const signer = await startSignerServer({
    port: 0,
    pool: db.pool,
    kekRing,
    registry: createMetricsRegistry(),
    logger,
    defaultRate: options.defaultRate,
    pollIntervalMs,
    publicUrl: jwks.url,
  }).catch(async (error: unknown) => {
    await jwks.close().finally(() => db.drop());
    throw error;
  });
  return {
    pool: db.pool,
    store: new KeyStore(db.pool, kekRing),
    jwks,
    signer,
    close: () =>
      signer
        .close()
        .finally(() => jwks.close())
        .finally(() => db.drop()),
  };
}
