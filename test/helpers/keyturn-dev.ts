import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
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

export interface DevProcess {
  child: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
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
 * a process group leader, as a shell's job is.
 */
export async function startDev(
  dataDir: string,
  ports: DevPorts,
  options: { env?: NodeJS.ProcessEnv; detached?: boolean; timeoutMs?: number } = {},
): Promise<DevProcess> {
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
  const child = spawn(process.execPath, ['--import', 'tsx', ENTRY, ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  });
  const output: string[] = [];
  child.stdout!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  const deadline = Date.now() + (options.timeoutMs ?? 50_000);
  while (!output.join('').includes('keyturn is running')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      if (child.exitCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
      throw new Error(`keyturn dev did not come up (exit ${child.exitCode}):\n${output.join('').slice(-3000)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { child, output, exited };
}

/** Ctrl-C, as a terminal would send it to keyturn; resolves with its exit code. */
export async function stopDev(running: DevProcess): Promise<number | null> {
  if (running.child.exitCode === null) running.child.kill('SIGINT');
  return running.exited;
}
