import { createServer as createHttpServer, STATUS_CODES, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import type { Pool } from 'pg';
import type { Registry } from 'prom-client';
import type { KekRing } from '../crypto/kek';
import type { DeploymentIssuer } from '../domain/issuer';
import { DEFAULT_CEILINGS } from '../domain/policy';
import type { Rate } from '../domain/rate';
import type { CustodyRegistry } from '../custody/custody-registry';
import { KeyRing } from '../issuer/key-ring';
import { closeGracefully } from '../jwks/server';
import type { Logger } from '../logger';
import { listen } from '../runtime/listen';
import { ClientRegistry } from './client-registry';
import { DenialAudit } from './denial-audit';
import { createSignerMetrics } from './metrics';
import { problem, PROBLEM_TYPE } from './problems';
import { createSignerRequestHandler } from './routes';

/** `issuer`, `publicUrl` and `defaultKeySetId` give the `iss` of key sets whose policy names none (KEYTURN_ISSUER, KEYTURN_PUBLIC_URL). */
export interface SignerServerOptions extends DeploymentIssuer {
  /** 0 picks a free port (tests). */
  port: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** A role like KEYTURN_SIGNER_ROLE: reads the keys, the policies and the clients, appends denials; LISTEN. */
  pool: Pool;
  kekRing: KekRing;
  /** The custody backends of keys held in a KMS or on a token, shared with the caller; the key ring's own by default. */
  custody?: CustodyRegistry;
  registry: Registry;
  logger: Logger;
  /** Each client's token bucket unless it has its own (KEYTURN_SIGNER_RATE). */
  defaultRate: Rate;
  /** KEYTURN_MAX_TOKEN_TTL_CEILING. */
  maxTokenTtlCeilingMs?: number;
  /** PEM; with `clientCa`, every client must show a certificate it issued. */
  tls?: { cert: string | Buffer; key: string | Buffer; clientCa?: string | Buffer };
  /** Interval of the polling fallback behind LISTEN/NOTIFY, for keys and clients. */
  pollIntervalMs?: number;
  /** How long a request's head may take (default 10 s), and its body after that (default 10 s). */
  headersTimeoutMs?: number;
  bodyTimeoutMs?: number;
  /** How long denials are summed before they go to the audit trail (default 1 minute). */
  denialWindowMs?: number;
}

export interface RunningSignerServer {
  /** e.g. `https://127.0.0.1:8081`. */
  url: string;
  close(): Promise<void>;
}

/** Larger request bodies get 413. */
const MAX_BODY_BYTES = 64 * 1024;
/** Larger request heads get 431 (Node's own default). */
const MAX_HEADER_BYTES = 16 * 1024;
/** How long close() lets requests in flight finish. */
const SHUTDOWN_GRACE_MS = 5_000;

/**
 * Starts the signing service: a key ring (following rotations), the clients in memory (following
 * additions and revocations), and an HTTP or HTTPS listener. Refuses to start when the clients cannot
 * be read: a role without the grant will not fix itself.
 */
export async function startSignerServer(options: SignerServerOptions): Promise<RunningSignerServer> {
  const { pool, registry, logger } = options;
  const ceiling = options.maxTokenTtlCeilingMs ?? DEFAULT_CEILINGS.maxTokenTtlMs;
  const clients = await ClientRegistry.open({
    pool,
    logger,
    defaultRate: options.defaultRate,
    pollIntervalMs: options.pollIntervalMs,
  });
  let ring: KeyRing | undefined;
  const denials = new DenialAudit(pool, logger, options.denialWindowMs);
  try {
    ring = await KeyRing.open({
      pool,
      kekRing: options.kekRing,
      custody: options.custody,
      logger,
      pollIntervalMs: options.pollIntervalMs,
      maxTokenTtlCeilingMs: ceiling,
      registry,
      issuer: options.issuer,
      publicUrl: options.publicUrl,
      defaultKeySetId: options.defaultKeySetId,
    });
    const headersTimeout = options.headersTimeoutMs ?? 10_000;
    const bodyTimeout = options.bodyTimeoutMs ?? 10_000;
    const serverOptions = {
      maxHeaderSize: MAX_HEADER_BYTES,
      // Slow clients must not hold sockets: Node enforces the head's timeout (and a whole request's, past
      // the body's own) when it checks its connections, every second here.
      headersTimeout,
      requestTimeout: headersTimeout + bodyTimeout + 1_000,
      keepAliveTimeout: 5_000,
      connectionsCheckingInterval: 1_000,
    };
    const tls = options.tls;
    const server: Server = tls
      ? (createHttpsServer({
          ...serverOptions,
          cert: tls.cert,
          key: tls.key,
          ...(tls.clientCa !== undefined && { ca: tls.clientCa, requestCert: true, rejectUnauthorized: true }),
        }) as unknown as Server)
      : createHttpServer(serverOptions);
    server.on(
      'request',
      createSignerRequestHandler({
        ring,
        clients,
        pool,
        metrics: createSignerMetrics(registry),
        denials,
        registry,
        logger,
        maxTokenTtlCeilingMs: ceiling,
        maxBodyBytes: MAX_BODY_BYTES,
        bodyTimeoutMs: bodyTimeout,
      }),
    );
    // Requests Node cannot parse (oversized heads, bad syntax, a head too slow) never reach the handler.
    server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
      if (error.code === 'ECONNRESET' || !socket.writable) {
        socket.destroy();
        return;
      }
      const status =
        error.code === 'HPE_HEADER_OVERFLOW'
          ? 431
          : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' || error.code === 'ERR_HTTP_HEADERS_TIMEOUT'
            ? 408
            : 400;
      const reply = problem(
        status,
        status === 408 ? 'ERR_REQUEST_TIMEOUT' : 'ERR_REQUEST_INVALID',
        status === 408
          ? 'the request did not arrive in time'
          : status === 431
            ? `the request's head is larger than ${MAX_HEADER_BYTES / 1024} KiB`
            : 'the request could not be parsed',
      );
      const body = JSON.stringify(reply.problem);
      socket.end(
        `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: ${PROBLEM_TYPE}\r\n` +
          `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    });
    let url = await listen(server, options.port, options.host ?? '127.0.0.1');
    if (tls) url = url.replace(/^http:/, 'https:');
    server.on('error', (error) => logger.error({ err: error }, 'signer socket error'));
    logger.info({ url, tls: tls !== undefined, clientCertificates: tls?.clientCa !== undefined }, 'signer listening');
    const openRing = ring;
    return {
      url,
      close: () =>
        closeGracefully(server, SHUTDOWN_GRACE_MS).finally(async () => {
          await denials.close();
          await openRing.close();
          await clients.close();
        }),
    };
  } catch (error) {
    await denials.close();
    await ring?.close();
    await clients.close();
    throw error;
  }
}
