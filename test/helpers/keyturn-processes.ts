import path from 'node:path';
import type { ManagedProcess } from '../../src/runtime/managed-process';
import { freePort } from './ports';
import type { ProcessGroup } from './processes';

const ENTRY = path.join(__dirname, 'keyturn-from-source.ts');
const REPO = path.join(__dirname, '..', '..');

/** Where a deployment's keyturn processes find PostgreSQL, the KEK and Temporal. */
export interface Deployment {
  databaseUrl: string;
  /** KEYTURN_KEK, base64. */
  kek: string;
  temporalAddress: string;
  taskQueue: string;
}

/** Variables of the runner's own that must not redirect a keyturn process the test starts. */
const INHERITED_KEYTURN_SETTINGS = /^(KEYTURN_|TEMPORAL_|DATABASE_URL$|PORT$|LOG_LEVEL$|NODE_OPTIONS$)/;

/** The environment of a keyturn process of `deployment`, with `extra` on top. */
export function keyturnEnv(deployment: Deployment, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !INHERITED_KEYTURN_SETTINGS.test(name)),
  );
  return {
    ...env,
    DATABASE_URL: deployment.databaseUrl,
    KEYTURN_KEK: deployment.kek,
    TEMPORAL_ADDRESS: deployment.temporalAddress,
    KEYTURN_TASK_QUEUE: deployment.taskQueue,
    LOG_LEVEL: 'info',
    ...extra,
  };
}

/** `keyturn <args>` from the sources, as a process of its own. */
export function startKeyturn(
  processes: ProcessGroup,
  name: string,
  args: string[],
  env: NodeJS.ProcessEnv,
): ManagedProcess {
  return processes.start(name, process.execPath, ['--import', 'tsx', ENTRY, ...args], { env, cwd: REPO });
}

/**
 * `keyturn worker` on free metrics ports, once it polls its task queue (it bundles the workflow
 * sources first, which takes a while on a busy machine). `env` adds to the deployment's, e.g. NODE_OPTIONS.
 */
export async function startWorker(
  processes: ProcessGroup,
  deployment: Deployment & { jwksUrl: string },
  env: NodeJS.ProcessEnv = {},
): Promise<ManagedProcess> {
  const worker = startKeyturn(
    processes,
    `keyturn worker (${deployment.taskQueue})`,
    ['worker'],
    keyturnEnv(deployment, {
      KEYTURN_JWKS_URL: deployment.jwksUrl,
      KEYTURN_METRICS_PORT: String(await freePort()),
      KEYTURN_SDK_METRICS_PORT: String(await freePort()),
      ...env,
    }),
  );
  await worker.waitForOutput(/"msg":"worker running"/, 120_000);
  return worker;
}

/** `keyturn serve` on a free loopback port, once it answers; its base URL is `url`. */
export async function startJwksServer(
  processes: ProcessGroup,
  deployment: Deployment,
): Promise<{ server: ManagedProcess; url: string }> {
  const port = await freePort();
  const server = startKeyturn(
    processes,
    'keyturn serve',
    ['serve', '--host', '127.0.0.1'],
    keyturnEnv(deployment, { PORT: String(port) }),
  );
  await server.waitForOutput(/"msg":"JWKS server running"/, 120_000);
  return { server, url: `http://127.0.0.1:${port}` };
}

/** Runs a keyturn command to its end; its exit code and everything it printed. */
export async function runKeyturnProcess(
  processes: ProcessGroup,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = 60_000,
): Promise<{ code: number | null; output: string }> {
  const command = startKeyturn(processes, `keyturn ${args[0]}`, args, env);
  const ended = await Promise.race([
    command.exited().then(() => true),
    new Promise<false>((resolve) => setTimeout(resolve, timeoutMs, false).unref()),
  ]);
  if (!ended) {
    await command.kill();
    throw new Error(
      `keyturn ${args.join(' ')} did not end within ${timeoutMs / 1000} s: ${command.output().slice(-2_000)}`,
    );
  }
  return { code: command.exitCode, output: command.output() };
}
