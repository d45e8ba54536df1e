import { loadConfig } from '../../config';
import { deploymentIssuerOf } from '../../domain/issuer';
import { startJwksServer } from '../../jwks/server';
import { createLogger } from '../../logger';
import { createMetricsRegistry } from '../../observability/metrics';
import { resolveDatabase } from '../../runtime/database';
import { createPool, endPool } from '../../runtime/database-pool';
import { onShutdownRequest } from '../../runtime/shutdown-signal';
import { Teardown } from '../../runtime/teardown';

export async function serveAction(options: { dataDir?: string; port?: number; host?: string }): Promise<void> {
  const config = loadConfig(process.env, { dataDir: options.dataDir, jwksPort: options.port });
  const logger = createLogger({ level: config.logLevel });
  if (config.kek !== undefined) {
    // Whoever runs code in the most exposed process would find it there.
    logger.warn(
      'KEYTURN_KEK (or KEYTURN_KEK_FILE) is set, and `keyturn serve` never uses it: remove it from this process',
    );
  }
  const shutdown = onShutdownRequest(logger);
  const teardown = new Teardown(logger);
  try {
    const database = await resolveDatabase(config, logger, { joinRunningInstance: true });
    teardown.add('the database', () => database.stop());
    const pool = createPool(database, logger);
    teardown.add('the database pool', () => endPool(pool));
    const server = await startJwksServer({
      port: config.jwksPort,
      host: options.host,
      pool,
      registry: createMetricsRegistry({ perKeySet: config.metricsPerKeySet }),
      logger,
      // Listening on every interface, it names the loopback URL the signing paths derive issuers from
      // too (not the IPv6 one a dual-stack listener would show); on a given host, that host.
      publicUrl: options.host === undefined ? deploymentIssuerOf(config).publicUrl : config.publicUrl,
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
}
