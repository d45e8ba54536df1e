import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import type { TemporalServerInstallation } from '../dev/temporal-executables';
import type { ProcessSpec } from '../runtime/managed-process';

/**
 * The ports of one Temporal server node: each of its services listens for gRPC and for the cluster's
 * membership protocol. Membership ports must be below 32768: Temporal records them as a smallint.
 */
export interface TemporalNodePorts {
  frontend: number;
  frontendHttp: number;
  frontendMembership: number;
  history: number;
  historyMembership: number;
  matching: number;
  matchingMembership: number;
  worker: number;
  workerMembership: number;
  /** The server's own Prometheus metrics. */
  metrics: number;
}

export const TEMPORAL_NODE_PORT_NAMES: readonly (keyof TemporalNodePorts)[] = [
  'frontend',
  'frontendHttp',
  'frontendMembership',
  'history',
  'historyMembership',
  'matching',
  'matchingMembership',
  'worker',
  'workerMembership',
  'metrics',
];

/** The services every node runs: any node can take any request, so the cluster outlives any one node. */
const SERVICES = ['frontend', 'history', 'matching', 'worker'] as const;

export interface TemporalNodeOptions {
  installation: TemporalServerInstallation;
  /** Where its configuration is written. */
  dir: string;
  ports: TemporalNodePorts;
  postgres: { port: number; password: string };
  /** deploy/temporal/dynamicconfig.yaml, as docker-compose.yml gives its server. */
  dynamicConfigFile: string;
  /** The address clients use (the frontends' balancer), for the cluster's metadata. */
  clusterAddress: string;
  logFile: string;
  name: string;
}

type Yaml = Record<string, unknown>;

/**
 * Writes a node's configuration and says how to start it: the Temporal module's own
 * config/development-postgres12.yaml, adapted to the stack's PostgreSQL, to the node's ports (each
 * service on 127.0.0.1, where the nodes find each other through the membership rows both write in
 * the shared database) and to compose's dynamic configuration, without archival.
 */
export async function temporalNode(options: TemporalNodeOptions): Promise<ProcessSpec> {
  const { installation, dir, ports, postgres } = options;
  const config = parse(await readFile(installation.postgresConfigTemplate, 'utf8')) as Yaml;
  const at = <T extends Yaml>(object: Yaml, key: string) => object[key] as T;

  config.log = { stdout: true, level: 'warn', format: 'json' };
  const persistence = at(config, 'persistence');
  for (const store of Object.values(at<Record<string, Yaml>>(persistence, 'datastores'))) {
    Object.assign(at(store, 'sql'), {
      connectAddr: `127.0.0.1:${postgres.port}`,
      user: 'temporal',
      password: postgres.password,
    });
  }
  const global = at(config, 'global');
  Object.assign(at(global, 'membership'), { broadcastAddress: '127.0.0.1' });
  // Port 0 turns the profiler off.
  global.pprof = { port: 0 };
  Object.assign(at(at(global, 'metrics'), 'prometheus'), { listenAddress: `127.0.0.1:${ports.metrics}` });

  const rpc = (grpcPort: number, membershipPort: number, extra: Yaml = {}) => ({
    rpc: { grpcPort, membershipPort, bindOnLocalHost: true, ...extra },
  });
  config.services = {
    frontend: rpc(ports.frontend, ports.frontendMembership, { httpPort: ports.frontendHttp }),
    history: rpc(ports.history, ports.historyMembership),
    matching: rpc(ports.matching, ports.matchingMembership),
    worker: rpc(ports.worker, ports.workerMembership),
  };
  at<Record<string, Yaml>>(at(config, 'clusterMetadata'), 'clusterInformation').active.rpcAddress =
    options.clusterAddress;
  delete config.archival;
  delete config.namespaceDefaults;
  config.dynamicConfigClient = { filepath: options.dynamicConfigFile, pollInterval: '10s' };

  await mkdir(dir, { recursive: true });
  // It holds the database password.
  await writeFile(path.join(dir, 'stack.yaml'), stringify(config), { mode: 0o600 });
  return {
    name: options.name,
    command: installation.server,
    // The server reads <root>/<config>/<env>.yaml. No authorizer: it listens on loopback, as compose's
    // on its own network.
    args: [
      '--root',
      dir,
      '--config',
      '.',
      '--env',
      'stack',
      '--allow-no-auth',
      'start',
      ...SERVICES.flatMap((s) => ['--service', s]),
    ],
    logFile: options.logFile,
  };
}
