import { existsSync } from 'node:fs';
import path from 'node:path';
import { Client } from '@temporalio/client';
import { NativeConnection, Worker, type WorkflowBundleOption } from '@temporalio/worker';
import type { Registry } from 'prom-client';
import { createActivities } from './activities';
import { alertChannelsFrom } from './alerts/channels';
import { temporalConnectionOptions, temporalTargetFrom, type TemporalTarget } from './client/connect';
import { explainConnectionFailure } from './client/connection-failure';
import type { Config } from './config';
import { createLogger, type Logger } from './logger';
import { activityInstrumentation } from './observability/activity-instrumentation';
import { registerKeyStateMetrics } from './observability/key-state-metrics';
import { createMetricsRegistry, keyturnMetrics } from './observability/metrics';
import { startMetricsServer } from './observability/metrics-server';
import { installTemporalRuntime } from './observability/temporal-runtime';
import { writeInstanceFile, removeInstanceFile } from './runtime/instance-file';
import { openKeyStore } from './runtime/open-key-store';
import { assertPortFree } from './runtime/port-check';
import { onShutdownRequest } from './runtime/shutdown-signal';
import { Teardown } from './runtime/teardown';
import { AlertIncidentStore } from './store/alert-incidents';
import { OpenIncidentStore } from './store/open-incidents';
import type { KeyStore } from './store/key-store';

/**
 * The bundle `npm run build` writes (scripts/build-workflow-bundle.ts). From dist/src/worker.js
 * this is dist/workflow-bundle.js; from the sources (tsx, jest) there is none, so the worker
 * bundles src/workflows itself, which takes a few seconds.
 */
export const WORKFLOW_BUNDLE_PATH = path.resolve(__dirname, '..', 'workflow-bundle.js');

/** How long in-flight activities may run on after shutdown is asked for, before they are cancelled. */
const SHUTDOWN_GRACE = '15s';

/**
 * Key set workflows kept in memory between their tasks. A key set wakes a few times per rotation
 * period (days apart), and a task on a workflow not kept replays a history of at most ~1,000 events
 * (continue-as-new) in milliseconds: keeping every key set, as the SDK's default (sized from the heap,
 * over a thousand) would, only holds memory while they sleep. 250 keeps the ones busy at once (an
 * apply of thousands, a burst of rotations) without replaying between their steps.
 */
const MAX_CACHED_WORKFLOWS = 250;

export interface WorkerDependencies {
  connection: NativeConnection;
  keyStore: KeyStore;
  logger: Logger;
  /** A bundle built beforehand (tests reuse one); by default the prebuilt file, else the sources. */
  workflowBundle?: WorkflowBundleOption;
  /** Base URLs of this deployment's JWKS servers, which the propagation gate checks by default. */
  jwksUrls?: string[];
  /** Where the activity metrics go; a registry of its own (served nowhere) when left out. */
  registry?: Registry;
}

/** A worker for keyturn's workflows and activities on the configured namespace and task queue. */
export async function createWorker(config: Config, deps: WorkerDependencies): Promise<Worker> {
  const jwksUrls = deps.jwksUrls ?? config.jwksUrls ?? [];
  const bundle =
    deps.workflowBundle ?? (existsSync(WORKFLOW_BUNDLE_PATH) ? { codePath: WORKFLOW_BUNDLE_PATH } : undefined);
  deps.logger.debug(
    { workflowBundle: deps.workflowBundle ? 'given' : bundle ? WORKFLOW_BUNDLE_PATH : null },
    bundle ? 'using a prebuilt workflow bundle' : 'no prebuilt workflow bundle: bundling the workflow sources',
  );
  const metrics = keyturnMetrics(deps.registry ?? createMetricsRegistry());
  return Worker.create({
    connection: deps.connection,
    namespace: config.temporalNamespace,
    taskQueue: config.taskQueue,
    ...(bundle ? { workflowBundle: bundle } : { workflowsPath: require.resolve('./workflows') }),
    activities: createActivities({
      keyStore: deps.keyStore,
      logger: deps.logger,
      alerting: {
        channels: alertChannelsFrom(config.alerts),
        reminderMs: config.alerts.reminderMs,
        webUi:
          config.alerts.uiUrl === undefined
            ? undefined
            : { url: config.alerts.uiUrl, namespace: config.temporalNamespace },
        incidents: new AlertIncidentStore(deps.keyStore.pool),
        openIncidents: new OpenIncidentStore(deps.keyStore.pool),
      },
      metrics,
      keyAgeToleranceMs: config.alerts.overdueToleranceMs,
      ceilings: config.ceilings,
      temporalClient: new Client({ connection: deps.connection, namespace: config.temporalNamespace }),
      taskQueue: config.taskQueue,
      defaultJwksUrls: (keySetId) => jwksUrls.map((url) => `${url}/keysets/${encodeURIComponent(keySetId)}/jwks.json`),
    }),
    interceptors: { activity: [activityInstrumentation(metrics, deps.logger)] },
    maxCachedWorkflows: MAX_CACHED_WORKFLOWS,
    // The default is 0: in-flight activities would be cancelled at once instead of finishing.
    shutdownGraceTime: SHUTDOWN_GRACE,
  });
}

/**
 * The worker's own connection (native, unlike the client's), with the same TLS, API key and errors.
 * The SDK's runtime (logs into pino, its metrics on `sdkMetricsAddress`) is installed here, as late
 * as possible: it keeps the process alive until its last connection closes, so a command failing
 * earlier (a missing KEK, an unreadable certificate) must not have installed it.
 */
export async function connectWorker(
  target: TemporalTarget,
  logger: Logger,
  sdkMetricsAddress?: string,
): Promise<NativeConnection> {
  const options = temporalConnectionOptions(target);
  installTemporalRuntime(logger, { metricsBindAddress: sdkMetricsAddress });
  try {
    return await NativeConnection.connect(options);
  } catch (error) {
    throw await explainConnectionFailure(target, options, error);
  }
}

/** A worker running in the background, and the way to stop it. */
export interface RunningWorker {
  /** Settles when the worker has stopped; rejects if it failed. */
  done: Promise<void>;
  /** Asks for a graceful shutdown (in-flight activities finish) and waits for it. */
  stop(): Promise<void>;
}

export function startWorker(worker: Worker): RunningWorker {
  const done = worker.run();
  return {
    done,
    async stop() {
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await done;
    },
  };
}

export interface RunWorkerOptions {
  /** Stops the worker like SIGINT does (tests, embedding). */
  signal?: AbortSignal;
  logger?: Logger;
}

/**
 * `keyturn worker`: migrations first, then the worker until SIGINT or SIGTERM, then a graceful
 * shutdown; the pool, the connection and any embedded database are closed on the way out. Without
 * DATABASE_URL it joins the database of a keyturn instance running on the data folder, or starts
 * the embedded one and records itself in `<dataDir>/instance.json`.
 */
export async function runWorker(config: Config, options: RunWorkerOptions = {}): Promise<void> {
  const logger = options.logger ?? createLogger({ level: config.logLevel });
  const shutdown = onShutdownRequest(logger, options.signal);
  const teardown = new Teardown(logger);
  try {
    const store = await openKeyStore(config, logger, { joinRunningInstance: true });
    teardown.add('the key store', () => store.close());
    const target = temporalTargetFrom(config);
    // Asked first: the SDK's exporter would fail on a taken port with a message naming neither port nor variable.
    await assertPortFree(
      '0.0.0.0',
      config.metricsPort,
      "the worker's metrics endpoint",
      'stop whatever holds it, or set KEYTURN_METRICS_PORT',
    );
    await assertPortFree(
      '0.0.0.0',
      config.sdkMetricsPort,
      "the Temporal SDK's metrics endpoint",
      'stop whatever holds it, or set KEYTURN_SDK_METRICS_PORT',
    );
    const connection = await connectWorker(target, logger, `0.0.0.0:${config.sdkMetricsPort}`);
    teardown.add('the Temporal connection', () => connection.close());
    const registry = createMetricsRegistry({ perKeySet: config.metricsPerKeySet });
    await registerKeyStateMetrics(registry, store.keyStore);
    const metricsServer = await startMetricsServer({ port: config.metricsPort, registry, logger });
    teardown.add('the metrics server', () => metricsServer.close());
    if (store.database.source === 'embedded') {
      await writeInstanceFile(config.dataDir, {
        temporalAddress: target.address,
        namespace: target.namespace,
        taskQueue: config.taskQueue,
        webUiUrl: null,
        databaseUrl: store.database.url,
        kekFile: store.kekFile,
      });
      teardown.add('the instance file', () => removeInstanceFile(config.dataDir));
    }
    const worker = startWorker(await createWorker(config, { connection, keyStore: store.keyStore, logger, registry }));
    teardown.add('the worker', () => worker.stop());
    logger.info(
      {
        address: target.address,
        namespace: target.namespace,
        security: config.temporalProfile.security,
        taskQueue: config.taskQueue,
        metrics: metricsServer.url,
        sdkMetricsPort: config.sdkMetricsPort,
      },
      'worker running',
    );
    await Promise.race([worker.done, shutdown.requested]);
  } finally {
    await teardown.run();
    shutdown.dispose();
  }
}
