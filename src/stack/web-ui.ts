import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'yaml';
import type { ProcessSpec } from '../runtime/managed-process';

export interface WebUiOptions {
  /** The UI server built from github.com/temporalio/ui-server (the one the Temporal CLI embeds). */
  executable: string;
  dir: string;
  port: number;
  temporalAddress: string;
  logFile: string;
}

/**
 * Writes the Web UI server's configuration and says how to start it: on loopback, in front of the
 * frontends' balancer, read-only as docker-compose.yml's (whoever reaches it could otherwise
 * terminate, cancel, signal or reset keyturn's workflows).
 */
export async function webUiProcess(options: WebUiOptions): Promise<ProcessSpec> {
  const origin = `http://127.0.0.1:${options.port}`;
  await mkdir(options.dir, { recursive: true });
  await writeFile(
    path.join(options.dir, 'stack.yaml'),
    stringify({
      temporalGrpcAddress: options.temporalAddress,
      host: '127.0.0.1',
      port: options.port,
      publicPath: '',
      enableUi: true,
      defaultNamespace: 'default',
      disableWriteActions: true,
      notifyOnNewVersion: false,
      cors: { cookieInsecure: true, allowOrigins: [origin, `http://localhost:${options.port}`] },
    }),
  );
  return {
    name: 'Temporal Web UI',
    command: options.executable,
    args: ['--root', options.dir, '--config', '.', '--env', 'stack', 'start'],
    logFile: options.logFile,
  };
}
