import { spawn } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { resolveTestServerExecutable } from '../../src/dev/temporal-executables';
import { acceptsConnections } from '../../src/runtime/port-check';
import { waitFor } from './wait';
import { freePort } from './ports';

/** How long the test server may take to listen: Java on a busy machine takes longer than the SDK's own 5 s. */
const START_TIMEOUT_MS = 60_000;

/**
 * A time-skipping Temporal environment on the test server `npm pretest` provisioned. The server is
 * started here and waited for as long as it needs; the SDK is then handed a launcher that only
 * holds its place, and finds the server already listening on the port it is told.
 */
export async function createTimeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  const { executable } = await resolveTestServerExecutable({ allowBuild: false });
  if (executable.type !== 'existing-path')
    return TestWorkflowEnvironment.createTimeSkipping({ server: { executable } });

  const port = await freePort();
  const server = spawn(executable.path, [String(port)], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'keyturn-test-server-'));
  const stop = async () => {
    server.kill('SIGKILL');
    await exited;
    await rm(scratch, { recursive: true, force: true });
  };
  try {
    await waitFor(
      async () => {
        if (server.exitCode !== null) throw new Error(`the test server exited (${server.exitCode}) before it listened`);
        return (await acceptsConnections(port)) || undefined;
      },
      START_TIMEOUT_MS,
      'the test server',
      100,
    );
    const placeholder = path.join(scratch, 'test-server-started');
    await writeFile(placeholder, '#!/bin/sh\nexec sleep 2147483647\n');
    await chmod(placeholder, 0o755);
    const env = await TestWorkflowEnvironment.createTimeSkipping({
      server: { executable: { type: 'existing-path', path: placeholder }, port },
    });
    const teardown = env.teardown.bind(env);
    env.teardown = async () => {
      await teardown();
      await stop();
    };
    return env;
  } catch (error) {
    await stop();
    throw error;
  }
}
