import { randomBytes } from 'node:crypto';
import type { WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createActivities, type Alert } from '../../src/activities';
import { KekRing, Kek } from '../../src/crypto/kek';
import type { KeySetStatus } from '../../src/domain/keyset-state';
import { createLogger } from '../../src/observability/logger';
import { KeyStore } from '../../src/store/key-store';
import { getStateQuery } from '../../src/workflows/messages';
import type { TestDatabase } from './postgres';

/** Bundles the workflows once per test file; every worker in the file reuses it. */
export function bundleWorkflows(): Promise<WorkflowBundleWithSourceMap> {
  return bundleWorkflowCode({ workflowsPath: require.resolve('../../src/workflows'), logger: quietBundlerLogger });
}

export function randomKekRing(): KekRing {
  return new KekRing([new Kek(randomBytes(32))]);
}

export interface KeySetWorkerOptions {
  env: TestWorkflowEnvironment;
  db: TestDatabase;
  bundle: WorkflowBundleWithSourceMap;
  kekRing: KekRing;
  taskQueue: string;
  /** Receives every alert the activities raise. */
  alerts?: Alert[];
}

/** A real worker with the real activities against the test database. */
export function createKeySetWorker(options: KeySetWorkerOptions): Promise<Worker> {
  const keyStore = new KeyStore(options.db.pool, options.kekRing);
  const alerts = options.alerts;
  return Worker.create({
    connection: options.env.nativeConnection,
    taskQueue: options.taskQueue,
    workflowBundle: options.bundle,
    activities: createActivities({
      keyStore,
      logger: createLogger({ level: 'silent' }),
      alertSinks: alerts ? [async (alert) => void alerts.push(alert)] : [],
      temporalClient: options.env.client,
      taskQueue: options.taskQueue,
    }),
  });
}

/** A task queue and key set id of their own for each test. */
export function uniqueNames(prefix: string): { keySetId: string; taskQueue: string; workflowId: string } {
  const keySetId = `${prefix}-${randomBytes(4).toString('hex')}`;
  return { keySetId, taskQueue: `tq-${keySetId}`, workflowId: `keyset/${keySetId}` };
}

/**
 * Waits until the workflow has nothing running and nothing overdue on the test server's clock,
 * and returns its state then. Time does not move while this polls.
 */
export async function settled(env: TestWorkflowEnvironment, handle: WorkflowHandle, timeoutMs = 30_000): Promise<KeySetStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [status, now] = await Promise.all([handle.query(getStateQuery), env.currentTimeMs()]);
    const idle = status.inFlight === null && status.pendingCommands === 0;
    if (idle && (status.nextTransition === null || status.nextTransition.at > now)) return status;
    if (Date.now() > deadline) throw new Error(`workflow did not settle: ${JSON.stringify(status)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const quietBundlerLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: (message: string, meta?: Record<string, unknown>) => console.error(message, meta),
};
