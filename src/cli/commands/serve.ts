import { Command } from 'commander';
import { loadConfig } from '../../config';
import { startJwksServer } from '../../jwks/server';
import { createLogger } from '../../logger';
import { createMetricsRegistry } from '../../observability/metrics';
import { resolveDatabase } from '../../runtime/database';
import { createPool } from '../../runtime/database-pool';
import { onShutdownRequest } from '../../runtime/shutdown-signal';
import { Teardown } from '../../runtime/teardown';
import { DATA_DIR_OPTION, parsePort } from '../options';

export const serveCommand = new Command('serve')
  .description(
    'serve the JWKS and discovery documents until SIGINT or SIGTERM: PORT (default 8080); DATABASE_URL as a role ' +
      'that reads the published keys only (KEYTURN_JWKS_ROLE, set up by `keyturn migrate`), or the database of the ' +
      'keyturn instance running on the data folder. Needs no KEK and changes nothing in the database',
  )
  .option(...DATA_DIR_OPTION)
  .option('--port <port>', 'port to listen on (default: PORT or 8080)', parsePort)
  .option('--host <host>', 'interface to listen on (default: every interface)')
  .action(async (options: { dataDir?: string; port?: number; host?: string }) => {
    const config = loadConfig(process.env, { dataDir: options.dataDir, jwksPort: options.port });
    const logger = createLogger({ level: config.logLevel });
    if (config.kek !== undefined) {
      // Whoever runs code in the most exposed process would find it there.
      logger.warn('KEYTURN_KEK (or KEYTURN_KEK_FILE) is set, and `keyturn serve` never uses it: remove it from this process');
    }
    const shutdown = onShutdownRequest(logger);
    const teardown = new Teardown(logger);
    try {
      const database = await resolveDatabase(config, logger, { joinRunningInstance: true });
      teardown.add('the database', () => database.stop());
      const pool = createPool(database, logger);
      teardown.add('the database pool', () => pool.end());
      const server = await startJwksServer({
        port: config.jwksPort,
        host: options.host,
        pool,
        registry: createMetricsRegistry({ perKeySet: config.metricsPerKeySet }),
        logger,
        publicUrl: config.publicUrl,
        defaultKeySetId: config.defaultKeySetId,
        issuer: config.issuer,
      });
      teardown.add('the JWKS server', () => server.close());
      logger.info({ url: server.url }, 'JWKS server running');
      await shutdown.requested;
    } finally {
      await teardown.run();
      shutdown.dispose();
    }
  });
