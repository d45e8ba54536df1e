import { createServer, STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Pool } from 'pg';
import type { Registry } from 'prom-client';
import { checkKeySetId } from '../domain/key-set-id';
import { reportKeyViewAges } from '../observability/key-view-age';
import { createLogger, type Logger } from '../logger';
import { createMetricsRegistry } from '../observability/metrics';
import { createPool, endPool } from '../runtime/database-pool';
import { listen } from '../runtime/listen';
import { connectionConfigOf, subscribeToKeyChanges } from '../store/key-events';
import { unreadableViewsError } from '../store/published-keys';
import { JwksCache } from './jwks-cache';
import { createJwksMetrics, KEY_SET_LABEL } from './metrics';
import { createJwksRequestHandler, type JwksFreshness } from './routes';

export interface JwksServerOptions {
  /** 0 picks a free port (tests). */
  port: number;
  /** Interface to listen on; Node's default (every interface) when left out. */
  host?: string;
  /**
   * The database, as a pool (kept open on close) or a URL (a pool of the server's own, ended on close):
   * exactly one. Its role needs SELECT on the views of published keys only, and LISTEN (like KEYTURN_JWKS_ROLE).
   */
  pool?: Pool;
  databaseUrl?: string;
  /** Where the request metrics go; `/metrics` serves this registry. Default: a registry of the server's own. */
  registry?: Registry;
  /** Default: info and above, as JSON lines on stderr (a program's stdout stays its own). */
  logger?: Logger;
  /** The key set of `/.well-known/*` (config: KEYTURN_DEFAULT_KEYSET); default `default`. */
  defaultKeySetId?: string;
  /** Issuer for key sets whose policy names none (config: KEYTURN_ISSUER); default the discovery document's base URL. */
  issuer?: string;
  /** The URL verifiers reach this server at (behind a proxy, say); default the URL it listens on. */
  publicUrl?: string;
  /** Interval of the polling fallback behind LISTEN/NOTIFY. */
  pollIntervalMs?: number;
  /** Larger request heads get 431; default 16 KiB, Node's own default. */
  maxHeaderSize?: number;
  /** How long close() lets requests in flight finish before cutting connections. */
  shutdownGraceMs?: number;
}

export interface RunningJwksServer {
  /** Where the server listens, e.g. `http://127.0.0.1:8080`. */
  url: string;
  /** Stops accepting, lets requests in flight finish (within the grace time), then stops listening for key changes. */
  close(): Promise<void>;
}

const DEFAULT_MAX_HEADER_SIZE = 16 * 1024;
const DEFAULT_SHUTDOWN_GRACE_MS = 5_000;

/**
 * Starts the JWKS server: subscribes to key changes, loads every key set's JWKS (a database that is
 * down at start only delays readiness: the poll keeps trying; one without the views of published
 * keys, or a role without their grant, fails the start), then listens.
 */
export async function startJwksServer(options: JwksServerOptions): Promise<RunningJwksServer> {
  if ((options.pool === undefined) === (options.databaseUrl === undefined)) {
    throw new TypeError('startJwksServer needs either a pool or a databaseUrl');
  }
  const registry = options.registry ?? createMetricsRegistry();
  const logger = options.logger ?? createLogger({ name: 'keyturn-jwks-server', toStderr: true });
  const ownPool = options.databaseUrl === undefined ? undefined : createPool({ url: options.databaseUrl }, logger);
  const pool = options.pool ?? ownPool!;
  try {
    const server = await serveFrom(pool, registry, logger, options);
    return ownPool === undefined
      ? server
      : { url: server.url, close: () => server.close().finally(() => endPool(ownPool)) };
  } catch (error) {
    if (ownPool !== undefined) await endPool(ownPool);
    throw error;
  }
}

/** The server on `pool`, which it leaves open. */
async function serveFrom(
  pool: Pool,
  registry: Registry,
  logger: Logger,
  options: JwksServerOptions,
): Promise<RunningJwksServer> {
  const defaultKeySetId = checkKeySetId(options.defaultKeySetId ?? 'default', 'defaultKeySetId');
  const metrics = createJwksMetrics(registry);
  const cache = new JwksCache({ pool, logger, metrics });
  const events = await subscribeToKeyChanges({
    connection: connectionConfigOf(pool),
    onChange: (keySetId) => cache.refresh(keySetId),
    checkAll: () => cache.checkAll(),
    logger,
    pollIntervalMs: options.pollIntervalMs,
    applicationName: 'keyturn-jwks-server',
  });
  try {
    await cache.checkAll();
  } catch (error) {
    // A missing view or grant will not fix itself the way a database outage does.
    const misconfigured = unreadableViewsError(error);
    if (misconfigured !== undefined) {
      await events.close();
      throw misconfigured;
    }
    logger.warn({ err: error }, 'cannot load the key sets yet; not ready until the database answers');
  }

  // Ages count from the last confirmation, and are 0 while the server has listened for changes since.
  const freshness = (): JwksFreshness => {
    const now = Date.now();
    const age = (confirmedAt: number) => now - events.knownAt(confirmedAt, now);
    return {
      databaseAgeMs: cache.checkedAt === undefined ? Infinity : age(cache.checkedAt),
      keySets: cache.confirmations().map(({ keySetId, confirmedAt, outdatedSince, jwksMaxAgeMs }) => ({
        keySetId,
        ageMs: Math.max(age(confirmedAt), outdatedSince === undefined ? 0 : now - outdatedSince),
        limitMs: jwksMaxAgeMs,
      })),
    };
  };
  const publicUrl = options.publicUrl?.replace(/\/+$/, '');
  let url = '';
  const server = createServer({
    maxHeaderSize: options.maxHeaderSize ?? DEFAULT_MAX_HEADER_SIZE,
    // Slow clients (slowloris) must not hold sockets open: heads within 10 s, whole requests within 15 s,
    // and an idle keep-alive connection closes after 5 s. Node enforces the first two only when it checks
    // its connections, every 30 s by default: every second here, so that they hold as stated.
    headersTimeout: 10_000,
    requestTimeout: 15_000,
    keepAliveTimeout: 5_000,
    connectionsCheckingInterval: 1_000,
  });
  server.on(
    'request',
    createJwksRequestHandler({
      cache,
      metrics,
      registry,
      logger,
      defaultKeySetId,
      issuer: options.issuer,
      publicUrl: () => publicUrl ?? url,
      freshness,
    }),
  );
  // Requests Node cannot parse (oversized heads, bad syntax, timeouts) never reach the handler.
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    if (error.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    logger.debug({ code: error.code, status }, 'refused a malformed request');
    socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    metrics.observe('other', KEY_SET_LABEL.none, status, 0);
  });

  try {
    url = await listen(server, options.port, options.host);
  } catch (error) {
    await events.close();
    throw error;
  }
  // Past listen(), 'error' means a failed accept (EMFILE and the like): worth a log, not a crash.
  server.on('error', (error) => logger.error({ err: error }, 'JWKS server socket error'));
  const stopReporting = reportKeyViewAges(registry, 'jwks', () => freshness().keySets);
  logger.info({ url, defaultKeySetId }, 'JWKS server listening');
  return {
    url,
    close: () =>
      closeGracefully(server, options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS).finally(() => {
        stopReporting();
        return events.close();
      }),
  };
}

/** Idle keep-alive connections close at once; busy ones get `graceMs` to finish their request. */
export function closeGracefully(server: Server, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const cutOff = setTimeout(() => server.closeAllConnections(), graceMs);
    server.close(() => {
      clearTimeout(cutOff);
      resolve();
    });
    server.closeIdleConnections();
  });
}
