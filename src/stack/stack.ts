import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { resolveTemporalCli, resolveTemporalServer, resolveTemporalUiServer } from '../dev/temporal-executables';
import type { Logger } from '../logger';
import { assertPortFree } from '../runtime/port-check';
import { Teardown } from '../runtime/teardown';
import { startAlertInbox, type AlertInbox, type ReceivedNotification } from './alert-inbox';
import { ManagedProcess, runToEnd, type ProcessSpec } from '../runtime/managed-process';
import { monitoringProcesses, type AlertTimings } from './monitoring';
import { StackFolder } from './stack-folder';
import { startTcpBalancer } from './tcp-balancer';
import { waitForFrontend } from '../dev/temporal-frontend';
import { TEMPORAL_NODE_PORT_NAMES, temporalNode, type TemporalNodePorts } from './temporal-node';
import { webUiProcess } from './web-ui';

const STACK_NAMESPACE = 'default';
const STACK_TASK_QUEUE = 'keyturn';

/** Every port of a stack, all on 127.0.0.1. */
export interface StackPorts {
  postgres: number;
  /** The balancer in front of the Temporal nodes' frontends: what every client uses. */
  temporal: number;
  temporalNodes: TemporalNodePorts[];
  webUi: number;
  /** The balancer in front of the JWKS servers: what verifiers and the propagation gate use. */
  jwks: number;
  jwksServers: number[];
  /** Per worker: keyturn's metrics and the Temporal SDK's. */
  workerMetrics: { keyturn: number; sdk: number }[];
  prometheus: number;
  alertmanager: number;
  alertInbox: number;
}

/**
 * The ports `keyturn stack` uses: where docker-compose.yml publishes its services (7233, 8233, 8080,
 * 9090, 9093, 9464 and 9465), the rest (PostgreSQL, the nodes, the second of each pair) above 15000.
 */
export function defaultStackPorts(): StackPorts {
  const node = (base: number) =>
    Object.fromEntries(TEMPORAL_NODE_PORT_NAMES.map((name, i) => [name, base + i])) as unknown as TemporalNodePorts;
  return {
    postgres: 15432,
    temporal: 7233,
    temporalNodes: [node(17200), node(17220)],
    webUi: 8233,
    jwks: 8080,
    jwksServers: [18081, 18082],
    workerMetrics: [
      { keyturn: 9464, sdk: 9465 },
      { keyturn: 9466, sdk: 9467 },
    ],
    prometheus: 9090,
    alertmanager: 9093,
    alertInbox: 19095,
  };
}

/** How to run `keyturn`: node and the CLI's entry (and tsx when it runs from the sources). */
export interface KeyturnCommand {
  command: string;
  args: string[];
}

export interface StackOptions {
  /** The stack's folder: data, configuration, secrets, logs. Kept across starts. */
  dir: string;
  ports: StackPorts;
  keyturn: KeyturnCommand;
  logger: Logger;
  /** A key sets file to apply once the workers run. */
  keySetsFile?: string;
  /** Faster alerting than deploy/'s (tests). */
  alertTimings?: AlertTimings;
  /** Off: no Web UI server (it need not be built). */
  webUi?: boolean;
  /** Added to each worker's environment. */
  workerEnv?: NodeJS.ProcessEnv;
  /** LOG_LEVEL of the keyturn processes (default info). */
  logLevel?: string;
  /** Told of every notification the alert inbox receives. */
  onNotification?: (notification: ReceivedNotification) => void;
  /** Aborts a start in progress; what was started is stopped again. */
  signal?: AbortSignal;
}

/** A server of the stack: started (and ready), stopped, or killed as a crash would. */
export interface StackService {
  name: string;
  process: ManagedProcess;
  /** Starts it (again) and resolves once it is ready. */
  start(): Promise<void>;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

/** A running stack: where everything is, its servers, and the one-shot setup steps to run again. */
export interface Stack {
  folder: StackFolder;
  ports: StackPorts;
  temporalAddress: string;
  namespace: string;
  taskQueue: string;
  jwksUrl: string;
  webUiUrl: string | null;
  prometheusUrl: string;
  alertmanagerUrl: string;
  inbox: AlertInbox;
  postgres: StackService;
  temporalNodes: StackService[];
  workers: StackService[];
  jwksServers: StackService[];
  webUi: StackService | null;
  prometheus: StackService;
  alertmanager: StackService;
  /** keyturn's database as its owner (the role `keyturn migrate` runs as). */
  ownerDatabaseUrl: string;
  /** The environment for `keyturn` commands against this stack: Temporal, keyturn's database as its owner, the KEK. */
  cliEnv: NodeJS.ProcessEnv;
  /** The file of `cliEnv`, for a shell: `set -a; . <file>; set +a`. */
  cliEnvFile: string;
  /** What `keyturn apply` printed, when a key sets file was applied. */
  applied: string | null;
  /** Runs the setup steps again (Temporal's schema, keyturn's migrations, the namespace and search attributes), as a redeploy would. */
  setUp(): Promise<void>;
  /** Runs `keyturn <args>` against the stack to its end; fails unless it exits with 0. */
  keyturn(args: string[], env?: NodeJS.ProcessEnv, timeoutMs?: number): Promise<string>;
  /** Stops everything, clients before the servers they use. */
  stop(): Promise<void>;
}

/** Variables of the stack's own environment that must not redirect the processes it starts. */
const OWN_SETTINGS =
  /^(KEYTURN_|TEMPORAL_|DATABASE_URL|SLACK_WEBHOOK_URL|ALERT_WEBHOOK_URL|PORT$|LOG_LEVEL$|NODE_OPTIONS$|PG[A-Z]+$|SQL_)/;

const READY_TIMEOUT_MS = 120_000;
/** How long a crashed server is left down before it is started again. */
const RESTART_DELAY_MS = 1_000;

/**
 * Starts the production topology on this machine, in an order docker-compose.yml's dependencies allow
 * and with its setup scripts: PostgreSQL with Temporal's and keyturn's databases and roles; Temporal's
 * schema and keyturn's migrations; a Temporal cluster of two nodes behind a balancer, with the
 * namespace and search attributes; Prometheus and Alertmanager on deploy/'s configuration, alerting
 * into a local inbox; two JWKS servers behind a balancer and two workers; the Web UI; and an apply of
 * the key sets file.
 */
export async function startStack(options: StackOptions): Promise<Stack> {
  const { ports, logger, signal } = options;
  const deploy = deployDir();
  await assertPortsFree(ports);
  const folder = await StackFolder.open(options.dir);
  const { secrets } = folder;
  const teardown = new Teardown(logger);
  const step = (what: string) => {
    signal?.throwIfAborted();
    logger.info(what);
  };
  try {
    step(
      'finding the Temporal server, its SQL tool, the Temporal CLI and the Web UI server (built once, from the Go module proxy)',
    );
    const build = { log: (line: string) => logger.info(line.replace(/^keyturn: /, '')) };
    const installation = await resolveTemporalServer(build);
    // A file the setup script can run; the SDK's own download is no such file.
    const cli = (await resolveTemporalCli({ ...build, canDownload: async () => false })).executable as { path: string };
    const uiServer = options.webUi === false ? null : await resolveTemporalUiServer(build);

    const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !OWN_SETTINGS.test(name)));
    const withPath = (dir: string) => `${dir}${path.delimiter}${process.env.PATH ?? ''}`;
    const databaseUrl = (role: string, password: string) =>
      `postgres://${role}:${password}@127.0.0.1:${ports.postgres}/keyturn`;
    const ownerDatabaseUrl = databaseUrl('keyturn', secrets.keyturnDbPassword);
    const urls = {
      owner: await folder.writeSecret('keyturn_owner_database_url', ownerDatabaseUrl),
      worker: await folder.writeSecret(
        'keyturn_worker_database_url',
        databaseUrl('keyturn_worker', secrets.keyturnWorkerDbPassword),
      ),
      jwks: await folder.writeSecret(
        'keyturn_jwks_database_url',
        databaseUrl('keyturn_jwks', secrets.keyturnJwksDbPassword),
      ),
    };
    const kekFile = folder.secretFile('keyturn_kek');
    const temporalAddress = `127.0.0.1:${ports.temporal}`;
    const jwksUrl = `http://127.0.0.1:${ports.jwks}`;
    const webUiUrl = uiServer ? `http://127.0.0.1:${ports.webUi}` : null;
    const temporalEnv = {
      TEMPORAL_ADDRESS: temporalAddress,
      TEMPORAL_NAMESPACE: STACK_NAMESPACE,
      KEYTURN_TASK_QUEUE: STACK_TASK_QUEUE,
    };
    const logLevel = options.logLevel ?? 'info';

    const keyturnSpec = (name: string, args: string[], env: NodeJS.ProcessEnv): ProcessSpec => ({
      name,
      command: options.keyturn.command,
      args: [...options.keyturn.args, ...args],
      env: { ...baseEnv, LOG_LEVEL: logLevel, ...env },
      cwd: process.cwd(),
      logFile: folder.logFile(name.replaceAll(' ', '-')),
    });
    const runKeyturn = (args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000) =>
      runToEnd(keyturnSpec(`keyturn ${args[0]}`, args, env), timeoutMs);

    // --- PostgreSQL, its databases and roles (compose: postgres and its init script) ---
    step('starting PostgreSQL');
    const postgres = service(
      {
        name: 'PostgreSQL',
        command: process.execPath,
        args: [
          ...nodeEntry('postgres-process'),
          folder.path('postgres'),
          String(ports.postgres),
          folder.secretFile('postgres_password'),
        ],
        env: baseEnv,
        logFile: folder.logFile('postgres'),
      },
      (p) => p.waitForOutput(/^ready$/m, READY_TIMEOUT_MS).then(() => undefined),
    );
    await postgres.start();
    teardown.add('PostgreSQL', () => postgres.process.close());
    const databasesCreated = folder.path('postgres', 'keyturn-stack-databases-created');
    if (!existsSync(databasesCreated)) {
      step('creating the databases and roles (deploy/postgres/init-databases.sh)');
      await runToEnd(
        {
          name: 'init-databases.sh',
          command: 'sh',
          args: [path.join(deploy, 'postgres', 'init-databases.sh')],
          env: {
            ...baseEnv,
            POSTGRES_USER: 'postgres',
            PGHOST: '127.0.0.1',
            PGPORT: String(ports.postgres),
            PGPASSWORD: secrets.postgresPassword,
            TEMPORAL_DB_PASSWORD: secrets.temporalDbPassword,
            KEYTURN_DB_PASSWORD: secrets.keyturnDbPassword,
            KEYTURN_WORKER_DB_PASSWORD: secrets.keyturnWorkerDbPassword,
            KEYTURN_JWKS_DB_PASSWORD: secrets.keyturnJwksDbPassword,
            KEYTURN_SIGNER_DB_PASSWORD: secrets.keyturnSignerDbPassword,
          },
          logFile: folder.logFile('setup'),
        },
        60_000,
      );
      await writeFile(databasesCreated, `${new Date().toISOString()}\n`);
    }

    // --- the one-shot setup steps (compose: temporal-schema, migrate, temporal-setup) ---
    const setUpSchemas = async () => {
      step("bringing Temporal's schema up to date (deploy/temporal/setup-schema.sh) and keyturn's (keyturn migrate)");
      await Promise.all([
        runToEnd(
          {
            name: 'setup-schema.sh',
            command: 'sh',
            args: [path.join(deploy, 'temporal', 'setup-schema.sh')],
            env: {
              ...baseEnv,
              PATH: withPath(path.dirname(installation.sqlTool)),
              SQL_PASSWORD: secrets.temporalDbPassword,
              SQL_HOST: '127.0.0.1',
              SQL_PORT: String(ports.postgres),
              TEMPORAL_SCHEMA_DIR: installation.postgresSchemaDir,
            },
            logFile: folder.logFile('setup'),
          },
          300_000,
        ),
        runKeyturn(['migrate'], {
          DATABASE_URL_FILE: urls.owner,
          KEYTURN_WORKER_ROLE: 'keyturn_worker',
          KEYTURN_JWKS_ROLE: 'keyturn_jwks',
          KEYTURN_SIGNER_ROLE: 'keyturn_signer',
        }),
      ]);
    };
    const setUpNamespace = async () => {
      step('creating the namespace and the search attributes (deploy/temporal/setup-namespace.sh)');
      await runToEnd(
        {
          name: 'setup-namespace.sh',
          command: 'sh',
          args: [path.join(deploy, 'temporal', 'setup-namespace.sh')],
          env: {
            ...baseEnv,
            PATH: withPath(path.dirname(cli.path)),
            TEMPORAL_ADDRESS: temporalAddress,
            TEMPORAL_NAMESPACE: STACK_NAMESPACE,
          },
          logFile: folder.logFile('setup'),
        },
        180_000,
      );
      // Each node learns of the namespace and the attributes on its own: every frontend must know them
      // before keyturn uses any.
      await Promise.all(
        ports.temporalNodes.map((node) =>
          waitForFrontend(`127.0.0.1:${node.frontend}`, READY_TIMEOUT_MS, STACK_NAMESPACE),
        ),
      );
    };
    await setUpSchemas();

    // --- the Temporal cluster ---
    step(`starting a Temporal cluster of ${ports.temporalNodes.length} nodes`);
    let namespaceReady = false;
    const temporalNodes = await Promise.all(
      ports.temporalNodes.map(async (nodePorts, i) => {
        const spec = await temporalNode({
          installation,
          dir: folder.path('temporal', `node-${i + 1}`),
          ports: nodePorts,
          postgres: { port: ports.postgres, password: secrets.temporalDbPassword },
          dynamicConfigFile: path.join(deploy, 'temporal', 'dynamicconfig.yaml'),
          clusterAddress: temporalAddress,
          logFile: folder.logFile(`temporal-node-${i + 1}`),
          name: `Temporal node ${i + 1}`,
        });
        return service({ ...spec, env: baseEnv }, (p) =>
          waitForFrontend(
            `127.0.0.1:${nodePorts.frontend}`,
            READY_TIMEOUT_MS,
            namespaceReady ? STACK_NAMESPACE : undefined,
            () => p.running,
          ),
        );
      }),
    );
    for (const node of temporalNodes) teardown.add(node.name, () => node.process.close());
    // The first node to start records the cluster's metadata; two at once would both try, and one fail.
    const [firstNode, ...otherNodes] = temporalNodes;
    await firstNode.start();
    await Promise.all(otherNodes.map((node) => node.start()));
    const temporalBalancer = await startTcpBalancer(
      ports.temporal,
      ports.temporalNodes.map((node) => node.frontend),
    );
    teardown.add("the Temporal frontends' balancer", () => temporalBalancer.close());
    await setUpNamespace();
    namespaceReady = true;

    // --- alerting: the inbox, Prometheus, Alertmanager ---
    step('starting the alert inbox, Prometheus and Alertmanager');
    const inbox = await startAlertInbox(ports.alertInbox, folder.path('logs', 'alerts.jsonl'), (n) => {
      logger.info({ channel: n.channel }, `alert received on ${n.channel}: ${n.headline}`);
      options.onNotification?.(n);
    });
    teardown.add('the alert inbox', () => inbox.close());
    await folder.writeSecret('slack_webhook_url', `${inbox.url}/slack`);
    await folder.writeSecret('pagerduty_routing_key', 'keyturn-stack-local');
    const alertWebhookFile = await folder.writeSecret('alert_webhook_url', `${inbox.url}/keyturn`);
    const monitoring = await monitoringProcesses({
      deployDir: deploy,
      dir: folder.root,
      prometheusPort: ports.prometheus,
      alertmanagerPort: ports.alertmanager,
      targets: {
        'keyturn-worker': ports.workerMetrics.map((m) => `127.0.0.1:${m.keyturn}`),
        'temporal-sdk': ports.workerMetrics.map((m) => `127.0.0.1:${m.sdk}`),
        'keyturn-jwks': ports.jwksServers.map((port) => `127.0.0.1:${port}`),
        prometheus: [`127.0.0.1:${ports.prometheus}`],
      },
      secretsDir: folder.path('secrets'),
      inboxUrl: inbox.url,
      timings: options.alertTimings,
      logDir: folder.path('logs'),
    });
    const prometheusUrl = `http://127.0.0.1:${ports.prometheus}`;
    const alertmanagerUrl = `http://127.0.0.1:${ports.alertmanager}`;
    const alertmanager = service(monitoring.alertmanager, (p) => untilHttpOk(`${alertmanagerUrl}/-/ready`, p));
    const prometheus = service(monitoring.prometheus, (p) => untilHttpOk(`${prometheusUrl}/-/ready`, p));
    teardown.add('Alertmanager', () => alertmanager.process.close());
    teardown.add('Prometheus', () => prometheus.process.close());
    await Promise.all([alertmanager.start(), prometheus.start()]);

    // --- keyturn: JWKS servers, then workers (whose propagation gate reads the JWKS) ---
    step('starting two JWKS servers and two workers');
    const jwksServers = ports.jwksServers.map((port, i) =>
      service(
        keyturnSpec(`keyturn serve ${i + 1}`, ['serve', '--host', '127.0.0.1'], {
          DATABASE_URL_FILE: urls.jwks,
          PORT: String(port),
        }),
        (p) => p.waitForOutput(/"msg":"JWKS server running"/, READY_TIMEOUT_MS).then(() => undefined),
      ),
    );
    for (const server of jwksServers) teardown.add(server.name, () => server.process.close());
    await Promise.all(jwksServers.map((server) => server.start()));
    const jwksBalancer = await startTcpBalancer(ports.jwks, ports.jwksServers);
    teardown.add("the JWKS servers' balancer", () => jwksBalancer.close());

    const workers = ports.workerMetrics.map((metrics, i) =>
      service(
        keyturnSpec(`keyturn worker ${i + 1}`, ['worker'], {
          ...temporalEnv,
          DATABASE_URL_FILE: urls.worker,
          KEYTURN_KEK_FILE: kekFile,
          // Each server, not the balancer: the gate must see a key in every view a verifier may fetch.
          KEYTURN_JWKS_URL: ports.jwksServers.map((port) => `http://127.0.0.1:${port}`).join(','),
          KEYTURN_METRICS_PORT: String(metrics.keyturn),
          KEYTURN_SDK_METRICS_PORT: String(metrics.sdk),
          ALERT_WEBHOOK_URL_FILE: alertWebhookFile,
          ...(webUiUrl && { KEYTURN_UI_URL: webUiUrl }),
          ...options.workerEnv,
        }),
        (p) => p.waitForOutput(/"msg":"worker running"/, READY_TIMEOUT_MS).then(() => undefined),
      ),
    );
    for (const worker of workers) teardown.add(worker.name, () => worker.process.close());
    await Promise.all(workers.map((worker) => worker.start()));

    let webUi: StackService | null = null;
    if (uiServer) {
      step('starting the Temporal Web UI');
      webUi = service(
        await webUiProcess({
          executable: uiServer,
          dir: folder.path('ui'),
          port: ports.webUi,
          temporalAddress,
          logFile: folder.logFile('web-ui'),
        }),
        (p) => untilHttpOk(webUiUrl!, p),
      );
      teardown.add('the Temporal Web UI', () => webUi!.process.close());
      await webUi.start();
    }

    const cliEnv = { ...temporalEnv, DATABASE_URL_FILE: urls.owner, KEYTURN_KEK_FILE: kekFile };
    const cliEnvFile = folder.path('cli.env');
    await writeFile(
      cliEnvFile,
      Object.entries(cliEnv)
        .map(([name, value]) => `${name}=${value}\n`)
        .join(''),
      { mode: 0o600 },
    );

    let applied: string | null = null;
    if (options.keySetsFile) {
      step(`applying ${options.keySetsFile}`);
      applied = await runKeyturn(['apply', '-f', path.resolve(options.keySetsFile)], temporalEnv);
    }

    // As docker-compose.yml's `restart: unless-stopped`: a server that crashes is logged and started
    // again, so one crash does not leave the topology short of a process for the rest of its life.
    let stopping = false;
    teardown.add('the restarts of crashed servers', () => void (stopping = true));
    for (const server of [
      postgres,
      ...temporalNodes,
      alertmanager,
      prometheus,
      ...jwksServers,
      ...workers,
      ...(webUi ? [webUi] : []),
    ]) {
      server.process.onUnexpectedExit((how) => {
        logger.error(
          { component: server.name },
          `${server.name} exited (${how}), starting it again in ${RESTART_DELAY_MS / 1000} s: ${server.process.outputTail()}`,
        );
        setTimeout(() => {
          if (stopping || server.process.running) return;
          server
            .start()
            .catch((error: unknown) =>
              logger.error({ component: server.name, err: error }, `${server.name} did not start again`),
            );
        }, RESTART_DELAY_MS).unref();
      });
    }

    return {
      folder,
      ports,
      temporalAddress,
      namespace: STACK_NAMESPACE,
      taskQueue: STACK_TASK_QUEUE,
      jwksUrl,
      webUiUrl,
      prometheusUrl,
      alertmanagerUrl,
      inbox,
      postgres,
      temporalNodes,
      workers,
      jwksServers,
      webUi,
      prometheus,
      alertmanager,
      ownerDatabaseUrl,
      cliEnv,
      cliEnvFile,
      applied,
      async setUp() {
        await setUpSchemas();
        await setUpNamespace();
      },
      keyturn: (args, env = {}, timeoutMs) => runKeyturn(args, { ...cliEnv, ...env }, timeoutMs),
      stop: () => teardown.run(),
    };
  } catch (error) {
    await teardown.run();
    throw error;
  }
}

function service(spec: ProcessSpec, ready: (process: ManagedProcess) => Promise<void>): StackService {
  const process = new ManagedProcess(spec);
  return {
    name: spec.name,
    process,
    async start() {
      process.start();
      try {
        await ready(process);
      } catch (error) {
        await process.stop();
        const tail = process.outputTail();
        const message = (error as Error).message;
        throw message.includes(tail) ? error : new Error(`${message}; ${spec.name} printed: ${tail}`, { cause: error });
      }
    },
    stop: () => process.stop(),
    kill: () => process.kill(),
  };
}

/** The node arguments that run one of this folder's entry scripts: tsx for the TypeScript sources, plain node once built. */
function nodeEntry(name: string): string[] {
  const extension = path.extname(__filename);
  const file = path.join(__dirname, `${name}${extension}`);
  return extension === '.ts' ? ['--import', 'tsx', file] : [file];
}

/** The repository's deploy/ folder: `keyturn stack` runs from a checkout, as docker-compose.yml does. */
function deployDir(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'deploy', 'temporal', 'setup-schema.sh'))) return path.join(dir, 'deploy');
  }
  throw new Error(
    "keyturn stack runs from a checkout of keyturn's repository: deploy/ was not found above " + __dirname,
  );
}

async function untilHttpOk(url: string, process: ManagedProcess): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let problem = 'no answer yet';
  while (Date.now() < deadline) {
    if (!process.running)
      throw new Error(`${process.name} exited (${process.describeExit()}): ${process.outputTail()}`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      await response.body?.cancel();
      if (response.ok) return;
      problem = `HTTP ${response.status}`;
    } catch (error) {
      problem = (error as Error).message;
    }
    await sleep(250);
  }
  throw new Error(
    `${process.name} did not answer at ${url} within ${READY_TIMEOUT_MS / 1000} s (${problem}): ${process.outputTail()}`,
  );
}

async function assertPortsFree(ports: StackPorts): Promise<void> {
  const named: [string, number][] = [
    ['PostgreSQL', ports.postgres],
    ["the Temporal frontends' balancer", ports.temporal],
    ...ports.temporalNodes.flatMap((node, i) =>
      TEMPORAL_NODE_PORT_NAMES.map((name): [string, number] => [`Temporal node ${i + 1} (${name})`, node[name]]),
    ),
    ['the Web UI', ports.webUi],
    ["the JWKS servers' balancer", ports.jwks],
    ...ports.jwksServers.map((port, i): [string, number] => [`JWKS server ${i + 1}`, port]),
    ...ports.workerMetrics.flatMap((m, i): [string, number][] => [
      [`worker ${i + 1}'s metrics`, m.keyturn],
      [`worker ${i + 1}'s Temporal SDK metrics`, m.sdk],
    ]),
    ['Prometheus', ports.prometheus],
    ['Alertmanager', ports.alertmanager],
    ['the alert inbox', ports.alertInbox],
  ];
  for (const [what, port] of named) {
    await assertPortFree(
      '127.0.0.1',
      port,
      `${what} of keyturn stack`,
      'stop whatever holds it (another keyturn stack or dev, docker compose)',
    );
  }
}
