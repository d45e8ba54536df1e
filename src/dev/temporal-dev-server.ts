import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../logger';
import { installTemporalRuntime } from '../observability/temporal-runtime';
import { ManagedProcess } from '../runtime/managed-process';
import { assertPortFree } from '../runtime/port-check';
import { resolveTemporalCli } from './temporal-executables';
import { SEARCH_ATTRIBUTES, waitForFrontend } from './temporal-frontend';

export interface DevServerOptions {
  /** The server's SQLite file goes to `<dataDir>/temporal.db`, so workflows survive a restart. */
  dataDir: string;
  port: number;
  uiPort: number;
  namespace?: string;
  logger: Logger;
}

export interface RunningDevServer {
  /** `ip:port` of the frontend, for TEMPORAL_ADDRESS. */
  address: string;
  webUiUrl: string;
  /** SIGTERM, then SIGKILL if it has not exited after a while. */
  stop(): Promise<void>;
}

/** How long to wait for the server to accept connections. */
const READY_TIMEOUT_MS = 60_000;

/**
 * Starts `temporal server start-dev` with keyturn's data file, ports and search attributes, and
 * resolves once it answers on its port. The CLI comes from resolveTemporalCli (an explicit path,
 * keyturn's cache, or a build that takes minutes and says so); where only the SDK's own download
 * is available, the SDK starts the same server.
 */
export async function startTemporalDevServer(options: DevServerOptions): Promise<RunningDevServer> {
  const { dataDir, port, uiPort, logger } = options;
  const ip = '127.0.0.1';
  const namespace = options.namespace ?? 'default';
  await assertDevServerPortsFree(ip, port, uiPort);
  await mkdir(dataDir, { recursive: true });

  const { executable } = await resolveTemporalCli({ log: (line) => logger.info(line.replace(/^keyturn: /, '')) });
  const address = `${ip}:${port}`;
  const webUiUrl = `http://${ip}:${uiPort}`;
  const searchAttributeArgs = Object.entries(SEARCH_ATTRIBUTES).flatMap(([name, type]) => [
    '--search-attribute',
    `${name}=${type}`,
  ]);
  const dbFilename = path.join(dataDir, 'temporal.db');

  if (executable.type === 'cached-download') {
    const { TestWorkflowEnvironment } = await import('@temporalio/testing');
    // The SDK's server lives in the native runtime: install ours first so its logs reach pino.
    installTemporalRuntime(logger);
    const env = await TestWorkflowEnvironment.createLocal({
      server: { executable, ip, port, uiPort, ui: true, dbFilename, namespace, extraArgs: searchAttributeArgs },
    });
    return { address, webUiUrl, stop: () => env.teardown() };
  }

  const args = [
    'server',
    'start-dev',
    '--db-filename',
    dbFilename,
    '--ip',
    ip,
    '--port',
    String(port),
    '--ui-port',
    String(uiPort),
    '--namespace',
    namespace,
    '--log-level',
    'warn',
    '--log-format',
    'json',
    ...searchAttributeArgs,
  ];
  logger.info(
    { executable: executable.path, address, webUiUrl, dbFilename },
    'starting the Temporal dev server (no TEMPORAL_ADDRESS set)',
  );
  const log = logger.child({ component: 'temporal-dev-server' });
  // Its own process group (ManagedProcess's default): Ctrl-C in the terminal must not stop it before
  // the worker that uses it.
  const server = new ManagedProcess({
    name: 'the Temporal dev server',
    command: executable.path,
    args,
    onOutputLine: (line, stopping) => {
      const { level, msg, ...fields } = parseLogLine(line);
      // Once stopping, its complaints about connections closing are expected: debug only.
      log[stopping ? 'debug' : level]({ server: fields }, msg);
    },
  });
  server.start();
  try {
    await waitUntilReady(server, address, namespace);
  } catch (error) {
    await server.stop();
    throw error;
  }
  return { address, webUiUrl, stop: () => server.stop() };
}

/** Fails, naming the port and the flag that changes it, when the server's port or its UI's is taken. */
export async function assertDevServerPortsFree(ip: string, port: number, uiPort: number): Promise<void> {
  await assertPortFree(
    ip,
    port,
    'the Temporal dev server',
    'stop whatever holds it, or choose another port with --temporal-port',
  );
  await assertPortFree(
    ip,
    uiPort,
    "the Temporal dev server's Web UI",
    'stop whatever holds it, or choose another port with --ui-port',
  );
}

/** One line of `--log-format json` output; anything else (the start banner) is kept as debug text. */
function parseLogLine(line: string): {
  level: 'debug' | 'info' | 'warn' | 'error';
  msg: string;
  [field: string]: unknown;
} {
  try {
    const { level, msg, ...fields } = JSON.parse(line) as Record<string, unknown>;
    const known = ['debug', 'info', 'warn', 'error'] as const;
    const mapped = known.find((name) => name === String(level).toLowerCase()) ?? 'warn';
    return { ...fields, level: mapped, msg: String(msg ?? line) };
  } catch {
    return { level: 'debug', msg: line };
  }
}

/**
 * Polls until the frontend answers for the namespace and the search attributes are registered
 * (the workflow may set them from its first task).
 */
async function waitUntilReady(server: ManagedProcess, address: string, namespace: string): Promise<void> {
  try {
    await waitForFrontend(address, READY_TIMEOUT_MS, namespace, () => server.running);
  } catch (error) {
    if (server.couldNotStart)
      throw new Error(`could not run the Temporal CLI: ${server.outputTail(1)}`, { cause: error });
    const output = server.outputTail(3);
    if (!server.running) {
      throw new Error(
        `the Temporal dev server exited (${server.describeExit()}) before accepting connections on ${address}; ` +
          `its last output: ${output}`,
      );
    }
    throw new Error(`the Temporal dev server is not ready: ${(error as Error).message}; its last output: ${output}`, {
      cause: error,
    });
  }
}
