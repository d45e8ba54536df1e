import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres, type RunningPostgres } from '../../src/runtime/embedded-postgres';
import { freePort } from './ports';
import { createSoftHsmDirectory } from './softhsm';

declare global {
  var keyturnTestPostgres: RunningPostgres | undefined;
}

/**
 * One embedded PostgreSQL for the whole run; each test file makes its own database in it. One SoftHSM2
 * token directory likewise, each file making its own token.
 */
export default async function globalSetup(): Promise<void> {
  await createSoftHsmDirectory();
  if (process.env.KEYTURN_TEST_DATABASE_URL) return;
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-test-pg-'));
  const postgres = await startEmbeddedPostgres({ dataDir, port: await freePort(), persistent: false });
  globalThis.keyturnTestPostgres = postgres;
  process.env.KEYTURN_TEST_DATABASE_URL = postgres.url;
}
