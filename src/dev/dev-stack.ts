import type { WorkflowBundleOption } from '@temporalio/worker';
import { applyKeySets, type ApplyOptions, type ApplyReport } from '../client/apply';
import { connectClient, temporalTargetFrom, type TemporalTarget } from '../client/connect';
import { KeySetClient } from '../client/key-set-client';
import type { KeySetsFile } from '../client/key-sets-file';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { DatabaseSource } from '../runtime/database';
import { instanceFilePath, readLiveInstance, removeInstanceFile, writeInstanceFile } from '../runtime/instance-file';
import type { CustodyRegistryOptions } from '../custody/custody-registry';
import { openKeyStore } from '../runtime/open-key-store';
import { Teardown } from '../runtime/teardown';
import { connectWorker, createWorker, startWorker } from '../worker';
import { startJwksServer } from '../jwks/server';
import { startSignerServer } from '../signer/server';
import { registerKeyStateMetrics } from '../observability/key-state-metrics';
import { createMetricsRegistry } from '../observability/metrics';
import { installTemporalRuntime } from '../observability/temporal-runtime';
import { assertPortFree } from '../runtime/port-check';
import { assertDevServerPortsFree, startTemporalDevServer } from './temporal-dev-server';

export interface DevStackOptions {
  config: Config;
  /** Ports of the Temporal dev server, started unless TEMPORAL_ADDRESS or a Temporal profile names a server. */
  temporalPort: number;
  uiPort: number;
  logger: Logger;
  /** The key sets file to apply once the worker runs (`keyturn dev -f`); nothing is applied without one. */
  keySets?: KeySetsFile;
  /** Hears how far the apply of `keySets` is (`keyturn dev` prints it). */
  onApplyProgress?: ApplyOptions['onProgress'];
  /** A bundle built beforehand (tests start the stack twice). */
  workflowBundle?: WorkflowBundleOption;
  /** Aborts a start in progress; what was started is stopped again. */
  signal?: AbortSignal;
  /** Serve the JWKS on this port (0: any free one); no JWKS server when left out. */
  jwksPort?: number;
  /** Serve the Temporal SDK's metrics on this port; not served when left out (or when the SDK runtime was installed before). */
  sdkMetricsPort?: number;
  /** Run the signing service on this port of 127.0.0.1 (0: any free one); none when left out. */
  signerPort?: number;
  /** How to reach AWS KMS and PKCS#11 tokens, where the environment's defaults do not (tests: a local KMS server). */
  custodyFactories?: CustodyRegistryOptions['factories'];
}

/** Where everything of a running `keyturn dev` is. */
export interface DevStack {
  temporalAddress: string;
  namespace: string;
  taskQueue: string;
  /** Null when TEMPORAL_ADDRESS or a Temporal profile named a server keyturn did not start. */
  webUiUrl: string | null;
  /** The JWKS server's base URL; null when none was asked for. Its `/metrics` has the worker's and signer's too. */
  jwksUrl: string | null;
  /** Where the Temporal SDK's own metrics are served; null when they are not. */
  sdkMetricsUrl: string | null;
  /** The signing service's base URL; null when none was asked for. It has no client until one is added. */
  signerUrl: string | null;
  databaseUrl: string;
  databaseSource: DatabaseSource;
  kekFile: string | null;
  instanceFile: string;
  /** What applying the key sets file did; null when there was none. */
  applied: ApplyReport | null;
  keySets: KeySetClient;
  /** Settles if the worker stops by itself (it rejects if the worker failed). */
  workerDone: Promise<void>;
  /** Stops everything, the worker first, then the servers it used. */
  stop(): Promise<void>;
}

/**
 * Everything `keyturn dev` runs, on one data folder: the embedded PostgreSQL (unless DATABASE_URL),
 * its KEK file (unless KEYTURN_KEK), a Temporal dev server (unless TEMPORAL_ADDRESS or a Temporal
 * profile names a server, reached then with the profile's TLS and API key), migrations, the JWKS
 * server and the signing service when given a port, the worker, and an apply of the key sets file
 * (key sets already running after a restart are left as they are). Records itself in
 * `<dataDir>/instance.json` for the commands run beside it.
 */
export async function startDevStack(options: DevStackOptions): Promise<DevStack> {
  const { config, logger, signal } = options;
  await refuseSecondInstance(config.dataDir);
  if (!config.explicit.temporalAddress) {
    // Checked again when the server starts; asked first so a taken port fails before the database starts.
    await assertDevServerPortsFree('127.0.0.1', options.temporalPort, options.uiPort);
  }
  if (options.sdkMetricsPort !== undefined) {
    await assertPortFree(
      '127.0.0.1',
      options.sdkMetricsPort,
      "the Temporal SDK's metrics",
      'stop whatever holds it, or set KEYTURN_SDK_METRICS_PORT',
    );
  }
  const teardown = new Teardown(logger);
  try {
    const store = await openKeyStore(config, logger, {
      joinRunningInstance: false,
      custodyFactories: options.custodyFactories,
    });
    teardown.add('the key store', () => store.close());
    signal?.throwIfAborted();

    // Before the dev server, which may use the runtime too: the first installation decides the SDK's metrics port.
    const sdkMetricsAddress = options.sdkMetricsPort === undefined ? undefined : `127.0.0.1:${options.sdkMetricsPort}`;
    const sdkMetricsUrl =
      sdkMetricsAddress !== undefined && installTemporalRuntime(logger, { metricsBindAddress: sdkMetricsAddress })
        ? `http://${sdkMetricsAddress}/metrics`
        : null;
    // One registry for the worker, the JWKS server and the signer: in dev, one /metrics shows everything.
    const registry = createMetricsRegistry({ perKeySet: config.metricsPerKeySet });
    await registerKeyStateMetrics(registry, store.keyStore);

    let target: TemporalTarget = temporalTargetFrom(config);
    let webUiUrl: string | null = null;
    if (!config.explicit.temporalAddress) {
      const server = await startTemporalDevServer({
        dataDir: config.dataDir,
        port: options.temporalPort,
        uiPort: options.uiPort,
        namespace: config.temporalNamespace,
        logger,
      });
      teardown.add('the Temporal dev server', () => server.stop());
      // Plaintext on loopback, whatever TLS settings the environment holds for other servers.
      target = { address: server.address, namespace: target.namespace, origin: 'the dev server keyturn started' };
      webUiUrl = server.webUiUrl;
    }
    signal?.throwIfAborted();

    // Before the worker: the propagation gate checks this server's JWKS.
    let jwksUrl: string | null = null;
    if (options.jwksPort !== undefined) {
      const jwks = await startJwksServer({
        port: options.jwksPort,
        host: '127.0.0.1',
        pool: store.pool,
        registry,
        logger,
        publicUrl: config.publicUrl,
        defaultKeySetId: config.defaultKeySetId,
        issuer: config.issuer,
      });
      teardown.add('the JWKS server', () => jwks.close());
      jwksUrl = jwks.url;
    }

    // Beside the JWKS server, never inside it: the process the internet reaches holds no key.
    let signerUrl: string | null = null;
    if (options.signerPort !== undefined) {
      const signer = await startSignerServer({
        port: options.signerPort,
        host: '127.0.0.1',
        pool: store.pool,
        kekRing: store.kekRing,
        custody: store.keyStore.custody,
        registry,
        logger,
        defaultRate: config.signer.rate,
        maxTokenTtlCeilingMs: config.ceilings.maxTokenTtlMs,
        issuer: config.issuer,
        publicUrl: config.publicUrl ?? jwksUrl ?? undefined,
        defaultKeySetId: config.defaultKeySetId,
      });
      teardown.add('the signer', () => signer.close());
      signerUrl = signer.url;
    }

    const connection = await connectWorker(target, logger);
    teardown.add('the worker connection', () => connection.close());
    const worker = startWorker(
      await createWorker(config, {
        connection,
        keyStore: store.keyStore,
        logger,
        workflowBundle: options.workflowBundle,
        jwksUrls: jwksUrl === null ? undefined : [jwksUrl],
        registry,
      }),
    );
    teardown.add('the worker', () => worker.stop());
    signal?.throwIfAborted();

    const client = await connectClient(target);
    teardown.add('the Temporal client', () => client.connection.close());
    const keySets = new KeySetClient(client, config.taskQueue);
    const applied = options.keySets
      ? await applyKeySets(client, options.keySets, {
          taskQueue: config.taskQueue,
          onProgress: options.onApplyProgress,
        })
      : null;
    if (applied) logger.info({ file: options.keySets!.source, ...applied }, 'key sets applied');

    await writeInstanceFile(config.dataDir, {
      temporalAddress: target.address,
      namespace: target.namespace,
      taskQueue: config.taskQueue,
      webUiUrl,
      databaseUrl: store.database.source === 'DATABASE_URL' ? null : store.database.url,
      kekFile: store.kekFile,
      publicUrl: jwksUrl === null ? undefined : (config.publicUrl ?? jwksUrl),
    });
    teardown.add('the instance file', () => removeInstanceFile(config.dataDir));

    return {
      temporalAddress: target.address,
      namespace: target.namespace,
      taskQueue: config.taskQueue,
      webUiUrl,
      jwksUrl,
      sdkMetricsUrl,
      signerUrl,
      databaseUrl: store.database.url,
      databaseSource: store.database.source,
      kekFile: store.kekFile,
      instanceFile: instanceFilePath(config.dataDir),
      applied,
      keySets,
      workerDone: worker.done,
      stop: () => teardown.run(),
    };
  } catch (error) {
    await teardown.run();
    throw error;
  }
}

/** One instance per data folder: a second would find the database and the ports taken, and say so less clearly. */
async function refuseSecondInstance(dataDir: string): Promise<void> {
  const running = await readLiveInstance(dataDir);
  if (!running) return;
  const where = running.webUiUrl ? `Web UI ${running.webUiUrl}, ` : '';
  throw new Error(
    `keyturn is already running on ${dataDir} (pid ${running.pid}, ${where}Temporal ${running.temporalAddress}): ` +
      'stop it first, or start another instance with its own --data-dir, --temporal-port, --ui-port and --pg-port',
  );
}
