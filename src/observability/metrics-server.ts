import { createServer } from 'node:http';
import type { Registry } from 'prom-client';
import { listen } from '../runtime/listen';
import type { Logger } from '../logger';

export interface RunningMetricsServer {
  /** e.g. `http://127.0.0.1:9464/metrics` */
  url: string;
  close(): Promise<void>;
}

/**
 * The worker's `/metrics` for Prometheus (the JWKS server serves its own). Nothing else is
 * answered: the port is meant for the scraper only.
 */
export async function startMetricsServer(options: {
  port: number;
  host?: string;
  registry: Registry;
  logger: Logger;
}): Promise<RunningMetricsServer> {
  const { registry, logger } = options;
  const server = createServer((req, res) => {
    req.resume();
    const path = (req.url ?? '').split('?')[0];
    if (path !== '/metrics' || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) =>
        res
          .writeHead(200, { 'content-type': registry.contentType, 'cache-control': 'no-store' })
          .end(req.method === 'HEAD' ? undefined : text),
      (error: unknown) => {
        logger.error({ err: error }, 'cannot collect metrics');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('cannot collect metrics\n');
      },
    );
  });
  const url = `${await listen(server, options.port, options.host)}/metrics`;
  logger.info({ url }, 'metrics served');
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
