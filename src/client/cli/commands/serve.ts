import { Command } from 'commander';
import { loadConfig } from '../../../config';
import { startJwksServer } from '../../../jwks/server';
import { createLogger } from '../../../observability/logger';
import { createMetricsRegistry } from '../../../observability/metrics';
import { openKeyStore } from '../../../runtime/open-key-store';
import { onShutdownRequest } from '../../../runtime/shutdown-signal';
import { Teardown } from '../../../runtime/teardown';
import { DATA_DIR_OPTION, parsePort } from '../options';

export const serveCommand = new Command('serve')
  .description(
    'serve the JWKS and discovery documents until SIGINT or SIGTERM: PORT (default 8080); DATABASE_URL with ' +
      'KEYTURN_KEK, or the database of the keyturn instance running on the data folder',
  )
  .option(...DATA_DIR_OPTION)
  .option('--port <port>', 'port to listen on (default: PORT or 8080)', parsePort)
  .option('--host <host>', 'interface to listen on (default: every interface)')
  .action(async (options: { dataDir?: string; port?: number; host?: string }) => {
    const config = loadConfig(process.env, { dataDir: options.dataDir, jwksPort: options.port });
    const logger = createLogger({ level: config.logLevel });
    const shutdown = onShutdownRequest(logger);
    const teardown = new Teardown(logger);
    try {
      const store = await openKeyStore(config, logger, { joinRunningInstance: true });
      teardown.add('the key store', () => store.close());
      const server = await startJwksServer({
        port: config.jwksPort,
        host: options.host,
        keyStore: store.keyStore,
        pool: store.pool,
        registry: createMetricsRegistry(),
        logger,
      });
      teardown.add('the JWKS server', () => server.close());
      logger.info({ url: server.url }, 'JWKS server running');
      await shutdown.requested;
    } finally {
      await teardown.run();
      shutdown.dispose();
    }
  });
