import { randomBytes } from 'node:crypto';
import { Client, type WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { Registry } from 'prom-client';
import { createActivities } from '../../src/activities';
import type { AlertChannel } from '../../src/alerts/channels';
import type { AlertNotification } from '../../src/alerts/notification';
import { KekRing, Kek } from '../../src/crypto/kek';
import type { CustodyRegistry } from '../../src/custody/custody-registry';
import type { KeySetStatus } from '../../src/domain/key-set-state';
import { DEFAULT_CEILINGS, type PolicyCeilings } from '../../src/domain/policy';
import { createLogger, type Logger } from '../../src/logger';
import { keyturnMetrics } from '../../src/observability/metrics';
import { AlertIncidentStore } from '../../src/store/alert-incidents';
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
  /** Receives every notification the alert activities send (through a channel named `test`). */
  alerts?: AlertNotification[];
  /** More alert channels (Slack and a webhook on a loopback receiver). */
  channels?: AlertChannel[];
  /** KEYTURN_ALERT_REMINDER, 4 hours unless given. */
  reminderMs?: number;
  /** KEYTURN_UI_URL, for links in messages. */
  uiUrl?: string;
  /** keyturn_alerts_total goes here. */
  registry?: Registry;
  logger?: Logger;
  /**
   * 0 keeps no workflow in memory: every task replays the history, as a fresh worker process
   * would, and nothing is left on a sticky queue when this worker stops.
   */
  maxCachedWorkflows?: number;
  /** KEYTURN_MAX_*_CEILING: the seed defaults unless given. */
  ceilings?: PolicyCeilings;
  /** The custody backends keys are generated in (a test's KMS server or token); sealed only unless given. */
  custody?: CustodyRegistry;
}

/** A channel that keeps every notification in `list`. */
function listChannel(list: AlertNotification[]): AlertChannel {
  return {
    name: 'test',
    target: "the test's list",
    whenRefused: 'nothing to check',
    send: async (n) => void list.push(n),
  };
}

/** A real worker with the real activities against the test database. */
export function createKeySetWorker(options: KeySetWorkerOptions): Promise<Worker> {
  // Stamped with the test server's clock, the one the workflow's timers run on.
  const keyStore = new KeyStore(options.db.pool, options.kekRing, {
    clock: () => options.env.currentTimeMs(),
    custody: options.custody,
  });
  const alerts = options.alerts;
  return Worker.create({
    connection: options.env.nativeConnection,
    taskQueue: options.taskQueue,
    workflowBundle: options.bundle,
    ...(options.maxCachedWorkflows !== undefined && { maxCachedWorkflows: options.maxCachedWorkflows }),
    activities: createActivities({
      keyStore,
      logger: options.logger ?? createLogger({ level: 'silent' }),
      alerting: {
        channels: [...(alerts ? [listChannel(alerts)] : []), ...(options.channels ?? [])],
        reminderMs: options.reminderMs ?? 4 * 3_600_000,
        webUi: options.uiUrl === undefined ? undefined : { url: options.uiUrl, namespace: 'default' },
        incidents: new AlertIncidentStore(options.db.pool),
      },
      metrics: keyturnMetrics(options.registry ?? new Registry()),
      keyAgeToleranceMs: 3_600_000,
      ceilings: options.ceilings ?? DEFAULT_CEILINGS,
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
export async function settled(
  env: TestWorkflowEnvironment,
  handle: WorkflowHandle,
  timeoutMs = 30_000,
): Promise<KeySetStatus> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [status, now] = await Promise.all([handle.query(getStateQuery), env.currentTimeMs()]);
    const idle = status.inFlight === null && status.pendingCommands === 0;
    if (idle && (status.nextTransition === null || status.nextTransition.at > now)) return status;
    if (Date.now() > deadline) throw new Error(`workflow did not settle: ${JSON.stringify(status)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * Waits until the delivery workflows of these alert messages have ended, and returns their results.
 * A test's task queue is its own: a task of theirs still pending when the test's worker stops would
 * keep the test server from skipping time for the tests after it. A plain client, so that waiting
 * does not let time run on.
 */
export function deliveriesEnded(
  env: TestWorkflowEnvironment,
  messages: { incidentId: string; sequence: number }[],
): Promise<unknown[]> {
  const client = new Client({ connection: env.connection });
  return Promise.all(messages.map((m) => client.workflow.getHandle(`alert/${m.incidentId}/${m.sequence}`).result()));
}

const quietBundlerLogger = {
  log: () => undefined,
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: (message: string, meta?: Record<string, unknown>) => console.error(message, meta),
};
