import { createServer, type OutgoingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Pool } from 'pg';
import { Registry } from 'prom-client';
import { startJwksServer } from '../src/jwks/server';
import { createLogger } from '../src/logger';
import { serveTarget } from './target-process';

/**
 * The server under load, in a process of its own so that it does not share an event loop with the
 * load generator. `keyturn`: startJwksServer on BENCH_DATABASE_URL. `baseline`: a bare node:http
 * server that answers every request with the bytes and headers the parent sends it, or, to a
 * conditional GET whose If-None-Match is the ETag it was given, 304 with the headers keyturn's 304 had.
 * Run by bench/target-process.ts, which hears its URL and CPU time over IPC.
 */
export type TargetMessage =
  | { mode: 'keyturn'; databaseUrl: string }
  | {
      mode: 'baseline';
      body: string;
      headers: OutgoingHttpHeaders;
      etag: string;
      notModifiedHeaders: OutgoingHttpHeaders;
    };

async function start(message: TargetMessage): Promise<{ url: string; close(): Promise<void> }> {
  if (message.mode === 'keyturn') {
    const pool = new Pool({ connectionString: message.databaseUrl, max: 4 });
    const server = await startJwksServer({
      port: 0,
      host: '127.0.0.1',
      pool,
      registry: new Registry(),
      logger: createLogger({ level: 'silent' }),
    });
    return { url: server.url, close: () => server.close().finally(() => pool.end()) };
  }
  const body = Buffer.from(message.body, 'base64');
  const { headers, etag, notModifiedHeaders } = message;
  const server = createServer((req, res) => {
    req.resume();
    if (req.headers['if-none-match'] === etag) {
      res.writeHead(304, notModifiedHeaders);
      res.end();
      return;
    }
    res.writeHead(200, headers);
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

serveTarget(start);
