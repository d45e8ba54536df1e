import path from 'node:path';
import { ManagedProcess } from '../../src/runtime/managed-process';
import { freePort } from './ports';

const ENTRY = path.join(__dirname, 'keyturn-from-source.ts');

/** The ports `keyturn dev` is given, each free when picked. */
export interface DevPorts {
  pg: number;
  temporal: number;
  ui: number;
  jwks: number;
  sdkMetrics: number;
  signer: number;
}

export async function freeDevPorts(): Promise<DevPorts> {
  return {
    pg: await freePort(),
    temporal: await freePort(),
    ui: await freePort(),
    jwks: await freePort(),
    sdkMetrics: await freePort(),
    signer: await freePort(),
  };
}

/**
 * `keyturn dev` from the sources, in a process of its own, on the test's folder and ports; resolves
 * once it prints that it is running (and stops it with SIGKILL if it does not within `timeoutMs`).
 * Nothing of the runner's own configuration may redirect it; `env` adds settings. `detached` makes it
 * a process group leader, as a shell's job is; `logFile` keeps all of its output, not only the end.
 */
export async function startDev(
  dataDir: string,
  ports: DevPorts,
  options: { env?: NodeJS.ProcessEnv; detached?: boolean; timeoutMs?: number; logFile?: string } = {},
): Promise<ManagedProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env, KEYTURN_SDK_METRICS_PORT: String(ports.sdkMetrics), ...options.env };
  for (const name of [
    'DATABASE_URL',
    'TEMPORAL_ADDRESS',
    'TEMPORAL_NAMESPACE',
    'KEYTURN_KEK',
    'KEYTURN_DATA_DIR',
    'KEYTURN_PG_PORT',
  ])
    delete env[name];
  const args = ['dev', '--data-dir', dataDir, '--temporal-port', String(ports.temporal), '--ui-port', String(ports.ui)];
  args.push('--pg-port', String(ports.pg), '--port', String(ports.jwks), '--signer-port', String(ports.signer));
  const dev = new ManagedProcess({
    name: 'keyturn dev',
    command: process.execPath,
    args: ['--import', 'tsx', ENTRY, ...args],
    env,
    ownProcessGroup: options.detached ?? false,
    logFile: options.logFile,
  });
  dev.start();
  try {
    await dev.waitForOutput(/keyturn is running/, options.timeoutMs ?? 50_000);
  } catch (error) {
    await dev.kill();
    throw error;
  }
  return dev;
}

/** Ctrl-C, as a terminal would send it to keyturn; resolves with its exit code. */
export async function stopDev(dev: ManagedProcess): Promise<number | null> {
  if (dev.running) process.kill(dev.pid!, 'SIGINT');
  await dev.exited();
  return dev.exitCode;
}
