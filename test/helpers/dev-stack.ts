import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadConfig } from '../../src/config';
import type { CustodyRegistryOptions } from '../../src/custody/custody-registry';
import { startDevStack, type DevStack } from '../../src/dev/dev-stack';
import { createLogger, type Logger } from '../../src/logger';
import { bundleWorkflows } from './key-set-worker';
import { freePort } from './ports';
import { createTestDatabase, type TestDatabase } from './postgres';

export interface TestDevStack {
  stack: DevStack;
  /** The file's own database in the run's PostgreSQL. */
  db: TestDatabase;
  dataDir: string;
  /** The KEK, base64, as KEYTURN_KEK would hold it. */
  kek: string;
  stop(): Promise<void>;
}

/**
 * What `keyturn dev` runs, for a test file: a Temporal dev server on free ports, the worker, a
 * database of the file's own and a KEK from the environment, as in a deployment; the JWKS server
 * too when `jwksPort` is given (0: any free port). `env` adds variables (alert channels, say), and
 * `logger` receives what the stack logs (nothing by default).
 */
export async function startTestDevStack(
  name: string,
  options: {
    jwksPort?: number;
    env?: NodeJS.ProcessEnv;
    logger?: Logger;
    custodyFactories?: CustodyRegistryOptions['factories'];
  } = {},
): Promise<TestDevStack> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), `keyturn-${name}-`));
  const db = await createTestDatabase();
  const kek = randomBytes(32).toString('base64');
  const config = loadConfig({
    ...options.env,
    KEYTURN_DATA_DIR: dataDir,
    DATABASE_URL: db.url,
    KEYTURN_KEK: kek,
    LOG_LEVEL: 'silent',
  });
  const start = async () =>
    startDevStack({
      config,
      logger: options.logger ?? createLogger({ level: 'silent' }),
      temporalPort: await freePort(),
      uiPort: await freePort(),
      workflowBundle: await bundleWorkflows(),
      jwksPort: options.jwksPort,
      custodyFactories: options.custodyFactories,
    });
  // The dev server picks ports of its own for its internal services; one taken meanwhile by a test file
  // running in parallel makes it exit at start. Started again once, on fresh ports, it comes up.
  const stack = await start().catch((error: unknown) => {
    if (!/the Temporal dev server exited .* before accepting connections/.test(String(error))) throw error;
    return start();
  });
  return {
    stack,
    db,
    dataDir,
    kek,
    async stop() {
      await stack.stop();
      await db.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
