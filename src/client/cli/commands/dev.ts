import path from 'node:path';
import { Command } from 'commander';
import { loadConfig } from '../../../config';
import { startDevStack, type DevStack } from '../../../dev/dev-stack';
import { createLogger } from '../../../observability/logger';
import { displayDatabaseUrl } from '../../../runtime/database';
import { onShutdownRequest } from '../../../runtime/shutdown-signal';
import { DATA_DIR_OPTION, parsePort } from '../options';

interface DevOptions {
  dataDir?: string;
  temporalPort: number;
  uiPort?: number;
  pgPort?: number;
}

export const devCommand = new Command('dev')
  .description(
    'run keyturn on this machine until Ctrl-C: embedded PostgreSQL, a Temporal dev server with its Web UI, ' +
      'the worker and the `default` key set (DATABASE_URL and TEMPORAL_ADDRESS, when set, are used instead)',
  )
  .option(...DATA_DIR_OPTION)
  .option('--temporal-port <port>', 'port of the Temporal dev server', parsePort, 7233)
  .option('--ui-port <port>', 'port of the Temporal Web UI (default: the Temporal port + 1000)', parsePort)
  .option('--pg-port <port>', 'port of the embedded PostgreSQL (default: KEYTURN_PG_PORT or 5433)', parsePort)
  .action(async (options: DevOptions) => {
    const config = loadConfig(process.env, { dataDir: options.dataDir, pgPort: options.pgPort });
    const logger = createLogger({ level: config.logLevel });
    // Listening from the start: a Ctrl-C while things start still stops what has started.
    const shutdown = onShutdownRequest(logger);
    const abort = new AbortController();
    void shutdown.requested.then(() => abort.abort());
    let stack: DevStack | undefined;
    try {
      stack = await startDevStack({
        config,
        logger,
        temporalPort: options.temporalPort,
        uiPort: options.uiPort ?? options.temporalPort + 1000,
        signal: abort.signal,
      }).catch((error: unknown) => {
        // Stopped by Ctrl-C while starting: what had started is stopped again; that is no failure.
        if (abort.signal.aborted) return undefined;
        throw error;
      });
      if (!stack) return;
      const activeKid = await stack.keySets.waitForActiveKid(stack.keySetId, 30_000).catch((error: Error) => {
        logger.warn({ err: error }, 'the key set has no active key yet');
        return null;
      });
      console.log(banner(stack, activeKid));
      await Promise.race([stack.workerDone, shutdown.requested]);
    } finally {
      await stack?.stop();
      shutdown.dispose();
    }
  });

/** Where everything is, for the person who just ran `npm start`. */
function banner(stack: DevStack, activeKid: string | null): string {
  const ui = stack.webUiUrl;
  const workflowUrl = ui && `${ui}/namespaces/${stack.namespace}/workflows/${encodeURIComponent(stack.workflowId)}`;
  const database =
    stack.databaseSource === 'embedded'
      ? `${displayDatabaseUrl(stack.databaseUrl)}  (embedded, data in ${path.join(path.dirname(stack.instanceFile), 'postgres')})`
      : `${displayDatabaseUrl(stack.databaseUrl)}  (from DATABASE_URL)`;
  const rows: [string, string][] = [
    ['Temporal Web UI', ui ? `${ui}/namespaces/${stack.namespace}/workflows` : '(Temporal at TEMPORAL_ADDRESS: use its own UI)'],
    [`key set ${stack.keySetId}`, `${workflowUrl ?? stack.workflowId}  (active kid ${activeKid ?? 'pending'})`],
    ['Temporal address', `${stack.temporalAddress}  (namespace ${stack.namespace}, task queue ${stack.taskQueue})`],
    ['PostgreSQL', database],
    ['KEK', stack.kekFile ?? 'from KEYTURN_KEK'],
    ['instance file', stack.instanceFile],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  return ['', 'keyturn is running. Ctrl-C stops it.', ...rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`), ''].join('\n');
}
