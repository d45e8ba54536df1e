import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startEmbeddedPostgres } from '../src/runtime/embedded-postgres';
import { freePort } from '../test/helpers/ports';

/**
 * The benchmark's own PostgreSQL, as the tests' global setup starts it: embedded, on a free port, in
 * a temporary folder that is deleted afterwards. Its URL goes into KEYTURN_TEST_DATABASE_URL, where
 * the test helpers (createTestDatabase, startTestDevStack) look for it.
 */
export async function startBenchPostgres(): Promise<{ url: string; stop(): Promise<void> }> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-bench-pg-'));
  const postgres = await startEmbeddedPostgres({ dataDir, port: await freePort(), persistent: false });
  process.env.KEYTURN_TEST_DATABASE_URL = postgres.url;
  return {
    url: postgres.url,
    async stop() {
      await postgres.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
