import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { bundleWorkflows } from './key-set-worker';
import { createTestDatabase, type TestDatabase } from './postgres';
import { createTimeSkippingEnv } from './temporal-env';

/** What a time-skipping test file shares: one test server, one database, one workflow bundle. */
export interface TimeSkippingSuite {
  env: TestWorkflowEnvironment;
  db: TestDatabase;
  bundle: WorkflowBundleWithSourceMap;
}

/**
 * Starts the suite before the file's tests and stops it after them; read its fields inside tests.
 * Time is shared by every test of the file, so they run one after another (jest's default in a file).
 */
export function useTimeSkippingSuite(): TimeSkippingSuite {
  const suite = {} as TimeSkippingSuite;
  beforeAll(async () => {
    [suite.env, suite.db, suite.bundle] = await Promise.all([
      createTimeSkippingEnv(),
      createTestDatabase(),
      bundleWorkflows(),
    ]);
  });
  afterAll(async () => {
    await suite.env?.teardown();
    await suite.db?.drop();
  });
  return suite;
}
