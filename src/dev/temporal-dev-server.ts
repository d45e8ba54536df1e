import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../logger';
import { installTemporalRuntime } from '../observability/temporal-runtime';
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

const STOP_TIMEOUT_MS = 10_000;
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
  // Its own process group: Ctrl-C in the terminal must not stop it before the worker that uses it.
  const child = spawn(executable.path, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = captureOutput(child, logger);
  // Last resort if keyturn exits without stop(): never leave a server holding the port.
  const stopOnExit = () => child.kill('SIGTERM');
  process.on('exit', stopOnExit);
  const stop = async () => {
    process.removeListener('exit', stopOnExit);
    output.quiet();
    await stopChild(child);
  };

  try {
    await waitUntilReady(child, address, namespace, READY_TIMEOUT_MS, output.recent);
  } catch (error) {
    await stop();
    throw error;
  }
  return { address, webUiUrl, stop };
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

/** Logs the server's JSON lines through pino and keeps the last ones for error messages. */
function captureOutput(child: ChildProcess, logger: Logger): { recent: string[]; quiet(): void } {
  const recent: string[] = [];
  const log = logger.child({ component: 'temporal-dev-server' });
  // Once stopping, its complaints about connections closing are expected: debug only.
  let stopping = false;
  const take = (chunk: Buffer) => {
    for (const line of chunk
      .toString()
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)) {
      const { level, msg, ...fields } = parseLogLine(line);
      recent.push(msg);
      log[stopping ? 'debug' : level]({ server: fields }, msg);
    }
    recent.splice(0, Math.max(0, recent.length - 10));
  };
  child.on('error', (error) => log.error({ err: error }, 'the Temporal dev server process failed'));
  child.stdout?.on('data', take);
  child.stderr?.on('data', take);
  return { recent, quiet: () => (stopping = true) };
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
async function waitUntilReady(
  child: ChildProcess,
  address: string,
  namespace: string,
  timeoutMs: number,
  recent: string[],
) {
  let spawnError: Error | undefined;
  child.once('error', (error) => (spawnError = error));
  const running = () => spawnError === undefined && child.exitCode === null && child.signalCode === null;
  try {
    await waitForFrontend(address, timeoutMs, namespace, running);
  } catch (error) {
    if (spawnError) throw new Error(`could not run the Temporal CLI: ${spawnError.message}`, { cause: spawnError });
    const output = recent.slice(-3).join(' | ') || 'none';
    if (!running()) {
      throw new Error(
        `the Temporal dev server exited (${child.exitCode ?? child.signalCode}) before accepting connections on ${address}; ` +
          `its last output: ${output}`,
      );
    }
    throw new Error(`the Temporal dev server is not ready: ${(error as Error).message}; its last output: ${output}`, {
      cause: error,
    });
  }
}

/** SIGTERM, then SIGKILL if the process has not exited after a while. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  // An unref'd timer: a quick exit must not leave the process waiting for it.
  const inTime = await Promise.race([exited.then(() => true), sleep(STOP_TIMEOUT_MS, false, { ref: false })]);
  if (!inTime) {
    child.kill('SIGKILL');
    await exited;
  }
}
