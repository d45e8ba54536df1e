import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { loadConfig, SECRET_VARIABLES, type Config } from '../../src/config';
import { SEARCH_ATTRIBUTES } from '../../src/dev/temporal-frontend';
import { TEMPORAL_SERVER_VERSION, TEMPORAL_UI_VERSION } from '../../src/dev/temporal-executables';

// No container engine runs here, so the deployment files are checked for what can be checked
// without one: they parse, every file a service is given or told to read exists, the services agree
// with each other (ports, names, variables), Prometheus' and Alertmanager's own tools accept their
// configurations, the alert rules fire when they should (test/deploy/keyturn.rules.promtool.yml),
// and the dashboard and rules only query metrics keyturn exports.

const REPO = path.resolve(__dirname, '..', '..');
const read = (file: string) => readFileSync(path.join(REPO, file), 'utf8');
const run = promisify(execFile);

/** Runs one of Prometheus' command line tools; their absence is a failure, not a reason to skip. */
async function tool(command: 'promtool' | 'amtool', args: string[]): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await run(command, args, { cwd: REPO });
    return { ok: true, output: stdout + stderr };
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stdout?: string; stderr?: string };
    if (failure.code === 'ENOENT') {
      const pkg = command === 'promtool' ? 'prometheus' : 'prometheus-alertmanager';
      throw new Error(`${command} is not installed: apt-get install ${pkg} (.ci/run installs it)`);
    }
    return { ok: false, output: `${failure.stdout ?? ''}${failure.stderr ?? ''}` };
  }
}

// ---------------------------------------------------------------------------------------------
// docker-compose.yml

interface Service {
  image?: string;
  build?: string;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string | number>;
  volumes?: string[];
  ports?: string[];
  secrets?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[]; start_period?: string; retries?: number };
}
interface ComposeFile {
  services: Record<string, Service>;
  secrets: Record<string, { environment?: string; file?: string }>;
  volumes: Record<string, unknown>;
}

const composeText = read('docker-compose.yml');
// Compose resolves YAML merge keys (`<<: *anchor`); the yaml package does so when asked.
const compose = parse(composeText, { merge: true }) as ComposeFile;
const services = compose.services;
const keyturnServices = Object.entries(services).filter(([, s]) => s.build === '.');

/** .env.example as the user copies it: NAME=value lines. */
const envExample = new Map(
  read('.env.example')
    .split('\n')
    .filter((line) => /^[A-Z][A-Z0-9_]*=/.test(line))
    .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const),
);

/** What Compose makes of `${NAME}`, `${NAME:-default}` and `${NAME:?message}` with the given variables. */
function interpolate(value: string | number, vars: Map<string, string>): string {
  return String(value).replace(
    /\$\{([A-Za-z0-9_]+)(?::([-?])([^}]*))?\}/g,
    (_, name: string, op?: string, arg?: string) => {
      const set = vars.get(name) ?? '';
      if (op === '?' && set === '') throw new Error(`\${${name}} is required: ${arg}`);
      return set === '' && op === '-' ? (arg ?? '') : set;
    },
  );
}

/** The variables Compose refuses to start without (`${NAME:?message}`). */
const requiredVars = new Set([...composeText.matchAll(/\$\{([A-Za-z0-9_]+):\?/g)].map((m) => m[1]));

/**
 * .env.example with its required values and the KEK filled in the way its comments say to make them,
 * then its own `${NAME}` references resolved, as Compose reads a .env file.
 */
const filledEnv = new Map(envExample);
for (const name of requiredVars) filledEnv.set(name, randomBytes(24).toString('hex'));
filledEnv.set('KEYTURN_KEK', randomBytes(32).toString('base64'));
for (const [name, value] of filledEnv) filledEnv.set(name, interpolate(value, filledEnv));

function environmentOf(name: string): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(services[name].environment ?? {}).map(([k, v]) => [k, interpolate(v, filledEnv)]),
  );
}

const SECRETS_DIR = '/run/secrets/';

/**
 * What a keyturn service's configuration is once started: its Compose secrets are written where it
 * would find them (here a folder of the test's in place of /run/secrets/), with the values .env gives
 * them. A variable naming a secret file the service is not given fails to load, naming the file.
 */
function configOf(name: string): Config {
  const dir = mkdtempSync(path.join(os.tmpdir(), `keyturn-secrets-${name}-`));
  try {
    for (const secret of services[name].secrets ?? []) {
      writeFileSync(path.join(dir, secret), filledEnv.get(compose.secrets[secret].environment!) ?? '', { mode: 0o600 });
    }
    const env = Object.fromEntries(
      Object.entries(environmentOf(name)).map(([k, v]) => [
        k,
        v?.startsWith(SECRETS_DIR) ? path.join(dir, v.slice(SECRETS_DIR.length)) : v,
      ]),
    );
    return loadConfig(env);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Bind mounts (`./host:/container[:ro]`) of a service, as [host path relative to the repo, container path]. */
function bindMounts(service: Service): [string, string][] {
  return (service.volumes ?? [])
    .filter((v) => v.startsWith('./'))
    .map((v) => v.split(':').slice(0, 2) as [string, string]);
}

/** The repository file a service sees at `containerPath`, through its bind mounts. */
function hostPathOf(serviceName: string, containerPath: string): string | undefined {
  for (const [host, container] of bindMounts(services[serviceName])) {
    if (containerPath === container) return path.normalize(host);
    if (containerPath.startsWith(`${container}/`)) return path.join(host, containerPath.slice(container.length + 1));
  }
  return undefined;
}

const flag = (args: string[] | undefined, name: string) =>
  args?.find((a) => a.startsWith(`${name}=`))?.slice(name.length + 1);

describe('docker-compose.yml', () => {
  it('runs the whole stack', () => {
    expect(Object.keys(services)).toEqual([
      ...['postgres', 'temporal-schema', 'temporal', 'temporal-setup', 'temporal-ui'],
      ...['migrate', 'worker', 'jwks', 'signer', 'apply'],
      ...['prometheus', 'alertmanager', 'grafana'],
    ]);
    expect(keyturnServices.map(([name, s]) => [name, s.command])).toEqual([
      ['migrate', ['migrate']],
      ['worker', ['worker']],
      ['jwks', ['serve']],
      ['signer', ['signer']],
      ['apply', ['apply', '-f', '/keysets.yaml']],
    ]);
    expect(services.temporal.environment?.DB).toBe('postgres12');
  });

  it('refers only to services, secrets and volumes it defines', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const dependency of Object.keys(service.depends_on ?? {})) {
        expect([name, dependency, dependency in services]).toEqual([name, dependency, true]);
      }
      for (const secret of service.secrets ?? [])
        expect([name, secret, secret in compose.secrets]).toEqual([name, secret, true]);
      for (const volume of (service.volumes ?? []).filter((v) => !v.startsWith('./'))) {
        expect([name, volume, volume.split(':')[0] in compose.volumes]).toEqual([name, volume, true]);
      }
    }
    // The one-shot services run in order: schema, server, namespace, worker, apply; keyturn's schema
    // and its roles' grants before the worker and the JWKS server.
    expect(services.temporal.depends_on?.['temporal-schema'].condition).toBe('service_completed_successfully');
    expect(services.worker.depends_on?.['temporal-setup'].condition).toBe('service_completed_successfully');
    expect(services.apply.depends_on?.worker.condition).toBe('service_healthy');
    for (const name of ['worker', 'jwks', 'signer'])
      expect(services[name].depends_on?.migrate.condition).toBe('service_completed_successfully');
  });

  it('mounts files that exist, and tells services to read files that are mounted', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const [host] of bindMounts(service))
        expect([name, host, existsSync(path.join(REPO, host))]).toEqual([name, host, true]);
    }
    const told: [string, string | undefined][] = [
      ['prometheus', flag(services.prometheus.command, '--config.file')],
      ['alertmanager', flag(services.alertmanager.command, '--config.file')],
      ['temporal-schema', services['temporal-schema'].entrypoint?.[1]],
      ['temporal-setup', services['temporal-setup'].entrypoint?.[1]],
      ['temporal', `/etc/temporal/${services.temporal.environment?.DYNAMIC_CONFIG_FILE_PATH}`],
      ['grafana', String(services.grafana.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH)],
      ['apply', services.apply.command?.[2]],
    ];
    const found = told.map(([name, file]) => [name, file && hostPathOf(name, file)]);
    expect(found).toEqual([
      ['prometheus', 'deploy/prometheus/prometheus.yml'],
      ['alertmanager', 'deploy/alertmanager/alertmanager.yml'],
      ['temporal-schema', 'deploy/temporal/setup-schema.sh'],
      ['temporal-setup', 'deploy/temporal/setup-namespace.sh'],
      ['temporal', 'deploy/temporal/dynamicconfig.yaml'],
      ['grafana', 'deploy/grafana/dashboards/keyturn.json'],
      ['apply', 'keysets.yaml'],
    ]);
    // The postgres image runs an init script only if it can execute it (it sources it otherwise).
    expect(statSync(path.join(REPO, 'deploy/postgres/init-databases.sh')).mode & 0o111).not.toBe(0);
  });

  it('builds keyturn from this repository', () => {
    for (const [, service] of keyturnServices) expect(service.image).toBe('keyturn:local');
    expect(existsSync(path.join(REPO, 'Dockerfile'))).toBe(true);
  });

  it("gives keyturn's services only variables keyturn reads, with values it accepts", () => {
    // Comments are left out: a variable named only in a comment is not read. (`//` after a colon is a URL.)
    const src = path.join(REPO, 'src');
    const code = readdirSync(src, { recursive: true, encoding: 'utf8' })
      .filter((file) => file.endsWith('.ts'))
      .map((file) =>
        readFileSync(path.join(src, file), 'utf8')
          .replace(/\/\*[\s\S]*?\*\//g, '')
          .replace(/(^|\s)\/\/.*$/gm, '$1'),
      )
      .join('\n');
    // config.ts reads `<NAME>_FILE` for each of its SECRET_VARIABLES.
    const keyturnReads = (variable: string) => {
      const secret = /^(\w+)_FILE$/.exec(variable)?.[1];
      if (secret !== undefined) return (SECRET_VARIABLES as readonly string[]).includes(secret);
      return new RegExp(`\\b${variable}\\b`).test(code);
    };
    for (const [name] of keyturnServices) {
      for (const variable of Object.keys(services[name].environment ?? {})) {
        expect([name, variable, keyturnReads(variable)]).toEqual([name, variable, true]);
      }
      expect(() => configOf(name)).not.toThrow();
    }
    const worker = configOf('worker');
    expect(worker).toMatchObject({
      temporalAddress: 'temporal:7233',
      jwksUrls: ['http://jwks:8080'],
      metricsPort: 9464,
      sdkMetricsPort: 9465,
    });
    expect(worker.databaseUrl).toMatch(/^postgres:\/\/keyturn_worker:[0-9a-f]{48}@postgres:5432\/keyturn$/);
    // apply and the worker must meet on the same namespace and task queue.
    const apply = configOf('apply');
    const meeting = (c: typeof worker) => [c.temporalAddress, c.temporalNamespace, c.taskQueue];
    expect(meeting(apply)).toEqual(meeting(worker));
    expect(configOf('jwks').jwksPort).toBe(8080);
  });

  it('gives secrets as files only: no database URL, KEK or webhook URL in any environment', () => {
    for (const [name] of keyturnServices) {
      for (const variable of SECRET_VARIABLES)
        expect([name, variable in (services[name].environment ?? {})]).toEqual([name, false]);
    }
    const worker = configOf('worker');
    expect(worker.kek).toBe(filledEnv.get('KEYTURN_KEK'));
    expect(worker.alerts.slackWebhookUrl).toBeUndefined();
    expect(services.apply.secrets ?? []).toEqual([]);
  });

  it('gives the JWKS server no KEK and a database role of its own, the one migrate grants the published keys only', () => {
    const [migrate, worker, jwks] = ['migrate', 'worker', 'jwks'].map(configOf);
    expect(jwks.kek).toBeUndefined();
    expect(Object.keys(services.jwks.environment ?? {}).filter((v) => v.startsWith('KEYTURN_KEK'))).toEqual([]);
    const kekSecrets = Object.entries(compose.secrets)
      .filter(([, s]) => s.environment === 'KEYTURN_KEK')
      .map(([secret]) => secret);
    expect(services.jwks.secrets?.filter((secret) => kekSecrets.includes(secret))).toEqual([]);
    expect(migrate.kek).toBeUndefined();

    const user = (c: Config) => new URL(c.databaseUrl!).username;
    expect(new Set([user(migrate), user(worker), user(jwks)]).size).toBe(3);
    expect(user(jwks)).toBe(migrate.databaseRoles.jwks);
    expect(user(worker)).toBe(migrate.databaseRoles.worker);
  });

  it('runs the signer apart from the JWKS server, with the KEK, a database role of its own that migrate grants, and the same issuer', () => {
    const [migrate, signer, jwks] = ['migrate', 'signer', 'jwks'].map(configOf);
    expect(signer.kek).toBe(filledEnv.get('KEYTURN_KEK'));
    const user = (c: Config) => new URL(c.databaseUrl!).username;
    expect(user(signer)).toBe(migrate.databaseRoles.signer);
    expect(new Set([user(signer), user(jwks), user(configOf('worker'))]).size).toBe(3);
    expect(signer.signer).toMatchObject({ port: 8081, host: '0.0.0.0', tls: undefined });
    expect(services.signer.ports).toEqual(['127.0.0.1:8081:8081']);
    expect([signer.publicUrl, signer.issuer]).toEqual([jwks.publicUrl, jwks.issuer]);
    expect(read('deploy/postgres/init-databases.sh')).toContain(
      "CREATE ROLE keyturn_signer LOGIN PASSWORD :'keyturn_signer_password';",
    );
  });

  it('checks the JWKS server by its readiness, which a PostgreSQL outage within jwksMaxAge leaves healthy, after a start period', () => {
    const probe = services.jwks.healthcheck!;
    expect(probe.test.join(' ')).toMatch(/\/readyz'\)/);
    expect(probe.test.join(' ')).not.toContain('/healthz');
    expect(probe.start_period).toBe('60s');
    expect(probe.retries).toBe(3);
  });

  it('tells the JWKS server the URL verifiers reach it at, for discovery: its published port by default, else .env', () => {
    const [[host, hostPort, containerPort]] = services.jwks.ports!.map((p) => p.split(':'));
    const jwks = configOf('jwks');
    expect([host, containerPort]).toEqual(['127.0.0.1', String(jwks.jwksPort)]);
    expect(jwks.publicUrl).toBe(`http://localhost:${hostPort}`);
    const behindProxy = interpolate(
      services.jwks.environment!.KEYTURN_PUBLIC_URL,
      new Map([['KEYTURN_PUBLIC_URL', 'https://keys.example.com']]),
    );
    expect(loadConfig({ KEYTURN_PUBLIC_URL: behindProxy }).publicUrl).toBe('https://keys.example.com');
  });

  it("keeps the Temporal Web UI's write actions off unless .env turns them on", () => {
    const setting = services['temporal-ui'].environment?.TEMPORAL_DISABLE_WRITE_ACTIONS ?? '';
    expect(interpolate(setting, filledEnv)).toBe('true');
    expect(interpolate(setting, new Map())).toBe('true');
    expect(interpolate(setting, new Map([['TEMPORAL_UI_DISABLE_WRITE_ACTIONS', 'false']]))).toBe('false');
  });

  it('reaches each service where it listens', () => {
    const worker = configOf('worker');
    const jwks = configOf('jwks');
    // The worker's propagation gate asks the JWKS server.
    expect(worker.jwksUrls).toEqual([`http://jwks:${jwks.jwksPort}`]);
    // Health checks probe the ports the services are configured with.
    expect(services.worker.healthcheck?.test.join(' ')).toContain(`http://127.0.0.1:${worker.metricsPort}/metrics`);
    expect(services.jwks.healthcheck?.test.join(' ')).toContain(`http://127.0.0.1:${jwks.jwksPort}/readyz`);
    // Prometheus scrapes what the worker and the JWKS server serve.
    const prometheus = parse(read('deploy/prometheus/prometheus.yml')) as PrometheusConfig;
    const targets = Object.fromEntries(
      prometheus.scrape_configs.map((c) => [c.job_name, c.static_configs.flatMap((s) => s.targets)]),
    );
    expect(targets).toMatchObject({
      'keyturn-worker': [`worker:${worker.metricsPort}`],
      'temporal-sdk': [`worker:${worker.sdkMetricsPort}`],
      'keyturn-jwks': [`jwks:${jwks.jwksPort}`],
    });
    expect(prometheus.alerting.alertmanagers[0].static_configs[0].targets).toEqual(['alertmanager:9093']);
    // Grafana's data source is that Prometheus.
    const datasources = parse(read('deploy/grafana/provisioning/datasources/prometheus.yml')) as {
      datasources: { url: string }[];
    };
    expect(datasources.datasources.map((d) => d.url)).toEqual(['http://prometheus:9090']);
    // No two services publish the same host port.
    const published = Object.values(services).flatMap((s) =>
      (s.ports ?? []).map((p) => p.split(':').slice(0, 2).join(':')),
    );
    expect(published.length).toBeGreaterThan(5);
    expect(new Set(published).size).toBe(published.length);
  });

  it('creates the databases and roles the services log in with', () => {
    const init = read('deploy/postgres/init-databases.sh');
    const owners = Object.fromEntries(
      [...init.matchAll(/CREATE DATABASE (\w+) OWNER (\w+)/g)].map((m) => [m[1], m[2]]),
    );
    const logins = [...init.matchAll(/CREATE ROLE (\w+) LOGIN PASSWORD/g)].map((m) => m[1]);
    // keyturn migrate runs as the owner of keyturn's database; the worker and the JWKS server as roles of their own.
    const url = (name: string) => new URL(configOf(name).databaseUrl!);
    expect(owners[url('migrate').pathname.slice(1)]).toBe(url('migrate').username);
    for (const name of ['migrate', 'worker', 'jwks']) {
      expect([name, url(name).pathname, logins.includes(url(name).username)]).toEqual([name, '/keyturn', true]);
    }
    // The Temporal server's default database names, which deploy/temporal/setup-schema.sh sets up.
    const temporalUser = services.temporal.environment?.POSTGRES_USER;
    expect([owners.temporal, owners.temporal_visibility]).toEqual([temporalUser, temporalUser]);
    expect(read('deploy/temporal/setup-schema.sh')).toMatch(
      /for target in temporal:temporal temporal_visibility:visibility;/,
    );
    expect(read('deploy/temporal/setup-schema.sh')).toContain(`-u ${temporalUser} `);
  });

  it("registers the search attributes keyturn's workflows set", () => {
    const script = read('deploy/temporal/setup-namespace.sh');
    const registered = Object.fromEntries([...script.matchAll(/--name (\w+) --type (\w+)/g)].map((m) => [m[1], m[2]]));
    expect(registered).toEqual(SEARCH_ATTRIBUTES);
    expect(services['temporal-setup'].environment?.TEMPORAL_NAMESPACE).toBe(configOf('worker').temporalNamespace);
  });

  it('runs the Temporal versions `keyturn stack` builds, so that the stack tests what compose runs', () => {
    const tag = (service: string) => services[service].image!.split(':')[1];
    expect([tag('temporal'), tag('temporal-schema'), tag('temporal-setup'), tag('temporal-ui')]).toEqual([
      TEMPORAL_SERVER_VERSION,
      // admin-tools images carry the server's version first, then their tools'.
      expect.stringMatching(new RegExp(`^${TEMPORAL_SERVER_VERSION.replaceAll('.', '\\.')}-`)),
      tag('temporal-schema'),
      TEMPORAL_UI_VERSION,
    ]);
  });

  it('takes every setting from .env, whose example holds no secret', () => {
    const used = new Set([...composeText.matchAll(/\$\{([A-Za-z0-9_]+)/g)].map((m) => m[1]));
    for (const secret of Object.values(compose.secrets)) if (secret.environment) used.add(secret.environment);
    expect([...used].filter((name) => !envExample.has(name))).toEqual([]);
    expect([...envExample.keys()].filter((name) => !used.has(name))).toEqual([]);
    // Required values and delivery secrets are left for the user to fill in.
    const passwords = [
      'POSTGRES_PASSWORD',
      'TEMPORAL_DB_PASSWORD',
      'KEYTURN_DB_PASSWORD',
      'KEYTURN_WORKER_DB_PASSWORD',
      'KEYTURN_JWKS_DB_PASSWORD',
      'KEYTURN_SIGNER_DB_PASSWORD',
    ];
    expect(requiredVars).toEqual(new Set([...passwords, 'GRAFANA_ADMIN_PASSWORD']));
    // The connection URLs are made of those passwords, never written in.
    for (const name of [
      'KEYTURN_OWNER_DATABASE_URL',
      'KEYTURN_WORKER_DATABASE_URL',
      'KEYTURN_JWKS_DATABASE_URL',
      'KEYTURN_SIGNER_DATABASE_URL',
    ]) {
      expect([name, envExample.get(name)]).toEqual([
        name,
        expect.stringMatching(/^postgres:\/\/\w+:\$\{KEYTURN_\w*DB_PASSWORD\}@postgres:5432\/keyturn$/),
      ]);
    }
    for (const name of [
      ...requiredVars,
      'KEYTURN_KEK',
      'SLACK_WEBHOOK_URL',
      'ALERT_WEBHOOK_URL',
      'PAGERDUTY_ROUTING_KEY',
    ]) {
      expect([name, envExample.get(name)]).toEqual([name, '']);
    }
    // …and the real file stays out of git.
    expect(read('.gitignore').split('\n')).toContain('.env');
  });
});

// ---------------------------------------------------------------------------------------------
// Dockerfile

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((line) => line.trim() && !line.startsWith('#'));

  it('builds on Node 20 and runs `keyturn` as an unprivileged user, the worker by default', () => {
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:20-bookworm-slim$/m);
    expect(instructions.filter((l) => l.startsWith('FROM'))).toEqual([
      'FROM ${NODE_IMAGE} AS build',
      'FROM ${NODE_IMAGE} AS runtime',
    ]);
    const runtime = instructions.slice(instructions.indexOf('FROM ${NODE_IMAGE} AS runtime'));
    expect(runtime.find((l) => l.startsWith('USER'))).toBe('USER node');
    expect(runtime.find((l) => l.startsWith('RUN npm ci'))).toMatch(/--omit=dev/);
    expect(runtime.slice(-2)).toEqual(['ENTRYPOINT ["node", "bin/keyturn.js"]', 'CMD ["worker"]']);
  });

  it('copies only files that exist and that .dockerignore lets into the build context', () => {
    const allowed = read('.dockerignore')
      .split('\n')
      .filter((line) => line.startsWith('!'))
      .map((line) => line.slice(1).replace(/\/$/, ''));
    expect(read('.dockerignore').split('\n')).toContain('*');
    const copied = instructions
      .filter((l) => l.startsWith('COPY ') && !l.includes('--from='))
      .flatMap((l) => l.split(/\s+/).slice(1, -1));
    expect(copied).toEqual(
      expect.arrayContaining(['package.json', 'package-lock.json', 'src', 'scripts', 'bin', 'keysets.yaml']),
    );
    for (const source of copied) {
      expect([source, existsSync(path.join(REPO, source)), allowed.includes(source)]).toEqual([source, true, true]);
    }
    // The runtime stage takes the build's output, which bin/keyturn.js loads.
    expect(instructions).toContain('COPY --from=build /app/dist ./dist');
    expect(read('bin/keyturn.js')).toContain("require('../dist/src/cli/main.js')");
  });
});

// ---------------------------------------------------------------------------------------------
// Prometheus

interface PrometheusConfig {
  rule_files: string[];
  alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
  scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[];
}
interface AlertRule {
  alert: string;
  expr: string;
  labels: { severity: string };
  annotations: { summary: string; description: string; runbook_url: string };
}
const rulesFile = 'deploy/prometheus/rules/keyturn.rules.yml';
const alertRules = (parse(read(rulesFile)) as { groups: { rules: AlertRule[] }[] }).groups.flatMap((g) => g.rules);

/** What the lead's metrics export (src/observability, src/jwks/metrics.ts), and what else may be queried. */
const KEYTURN_METRICS = [
  'keyturn_rotations_total',
  'keyturn_rotation_failures_total',
  'keyturn_alerts_total',
  'keyturn_activity_duration_seconds',
  'keyturn_keys',
  'keyturn_stored_keys',
  'keyturn_key_sets',
  'keyturn_key_sets_overdue',
  'keyturn_key_sets_needing_attention',
  'keyturn_oldest_active_key_age_seconds',
  'keyturn_active_key_age_seconds',
  'keyturn_rotation_period_seconds',
  'keyturn_next_transition_timestamp_seconds',
  'keyturn_last_rotation_timestamp_seconds',
  'keyturn_database_up',
  'keyturn_jwks_requests_total',
  'keyturn_jwks_request_duration_seconds',
  'keyturn_jwks_refused_keys_total',
  'keyturn_key_view_age_seconds',
  'keyturn_supervisor_rounds_total',
  'keyturn_supervisor_unchecked_key_sets',
  'keyturn_open_incidents',
];
const HISTOGRAMS = ['keyturn_activity_duration_seconds', 'keyturn_jwks_request_duration_seconds'];
const QUERYABLE = new Set([
  ...KEYTURN_METRICS.filter((m) => !HISTOGRAMS.includes(m)),
  ...HISTOGRAMS.flatMap((m) => [`${m}_bucket`, `${m}_sum`, `${m}_count`]),
  // Prometheus' own: whether a target answered its scrape, and the alerts it holds.
  'up',
  'ALERTS',
]);
const isQueryable = (name: string) => QUERYABLE.has(name) || /^(temporal|process|nodejs)_/.test(name);

const PROMQL_KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

/** The metric names a PromQL expression selects (a light parse: enough for the expressions here). */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""') // strings, which may hold anything
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // ranges, e.g. [5m] or [$__rate_interval]
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' '); // label lists
  // A name is a whole word (not part of a number, a $variable or a longer name) not followed by `(`.
  const names = [...bare.matchAll(/(?<![\w$.])([A-Za-z_:][\w:]*)(?![\w:]|\s*\()/g)].map((m) => m[1]);
  return [...new Set(names.filter((name) => !PROMQL_KEYWORDS.has(name)))];
}

describe('metricNames', () => {
  it('finds the selected metrics, not functions, labels, keywords or variables', () => {
    expect(
      metricNames(
        'histogram_quantile(0.95, sum by (le, route) ' +
          '(rate(keyturn_jwks_request_duration_seconds_bucket{code=~"5..", x="a b"}[$__rate_interval])))',
      ),
    ).toEqual(['keyturn_jwks_request_duration_seconds_bucket']);
    const expr =
      '(time() - foo_seconds > 600) and on (job, key_set) (bar{state="next"} == 0) or vector(0) unless baz offset 5m';
    expect(metricNames(expr)).toEqual(['foo_seconds', 'bar', 'baz']);
  });
});

describe('Prometheus configuration', () => {
  it('passes promtool check config, rule files included', async () => {
    const result = await tool('promtool', ['check', 'config', 'deploy/prometheus/prometheus.yml']);
    expect(result.output).toContain('SUCCESS: 1 rule files found');
    expect(result).toMatchObject({ ok: true });
  });

  it('passes promtool check rules', async () => {
    const result = await tool('promtool', ['check', 'rules', rulesFile]);
    expect(result.output).toContain(`SUCCESS: ${alertRules.length} rules found`);
    expect(result).toMatchObject({ ok: true });
  });

  it("fires each alert on its own condition and not on a look-alike (promtool's rule unit tests)", async () => {
    const result = await tool('promtool', ['test', 'rules', 'test/deploy/keyturn.rules.promtool.yml']);
    expect(result).toEqual({ ok: true, output: expect.stringContaining('SUCCESS') });
    // Every alert is exercised there.
    const tested = new Set(
      [...read('test/deploy/keyturn.rules.promtool.yml').matchAll(/alertname: (\w+)/g)].map((m) => m[1]),
    );
    expect([...tested].sort()).toEqual(alertRules.map((r) => r.alert).sort());
  });

  it('has the alerts the runbook explains, each with a severity, a summary and description, and its runbook section', () => {
    const anchors = alertRules.map((rule) => rule.annotations.runbook_url.replace(/^docs\/runbook\.md#/, ''));
    expect(anchors.sort()).toEqual([
      'a-key-does-not-match-its-kid',
      'database-down',
      'jwks-down',
      'jwks-errors',
      'no-active-key',
      'no-next-key',
      'promotion-waits-at-the-propagation-gate',
      'rotation-failing',
      'rotation-failing',
      'rotation-overdue',
      'supervisor-failing',
      'supervisor-failing',
      'the-supervisor-found-a-problem',
      'the-supervisor-found-a-problem',
      'worker-down',
    ]);
    for (const rule of alertRules) {
      expect([rule.alert, rule.annotations.runbook_url]).toEqual([
        rule.alert,
        expect.stringMatching(/^docs\/runbook\.md#[a-z-]+$/),
      ]);
      expect([rule.alert, rule.labels.severity]).toEqual([rule.alert, expect.stringMatching(/^(page|warning)$/)]);
      // Each names what is affected: the key set, or the instance for a service that is down or failing
      // (a JWKS server's requests name no key set); the supervisor's rules are about the whole
      // deployment (its rounds run on any worker).
      const names = metricNames(rule.expr);
      if (names.every((name) => name.startsWith('keyturn_supervisor_'))) continue;
      const byInstance = [
        'up',
        'keyturn_database_up',
        'keyturn_jwks_requests_total',
        'keyturn_jwks_refused_keys_total',
      ].some((name) => names.includes(name));
      const subject = byInstance ? '{{ $labels.instance }}' : '{{ $labels.key_set }}';
      expect([rule.alert, rule.annotations.summary]).toEqual([rule.alert, expect.stringContaining(subject)]);
      expect([rule.alert, rule.annotations.description]).toEqual([rule.alert, expect.stringContaining(subject)]);
    }
  });

  it('queries only metrics keyturn, the Temporal SDK and Prometheus provide', () => {
    for (const rule of alertRules) {
      for (const name of metricNames(rule.expr))
        expect([rule.alert, name, isQueryable(name)]).toEqual([rule.alert, name, true]);
    }
  });

  const runbook = path.join(REPO, 'docs/runbook.md');
  it('links to sections docs/runbook.md has', () => {
    // GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens.
    const headings = new Set(
      [...readFileSync(runbook, 'utf8').matchAll(/^#+\s+(.+)$/gm)].map((m) =>
        m[1]
          .trim()
          .toLowerCase()
          .replace(/[^\w\- ]/g, '')
          .replace(/ /g, '-'),
      ),
    );
    for (const rule of alertRules) {
      const anchor = rule.annotations.runbook_url.split('#')[1];
      expect([rule.alert, anchor, headings.has(anchor)]).toEqual([rule.alert, anchor, true]);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Alertmanager

describe('Alertmanager configuration', () => {
  const file = 'deploy/alertmanager/alertmanager.yml';
  const text = read(file);
  const config = parse(text) as {
    route: { receiver: string; routes: { matchers: string[]; receiver: string }[] };
    receivers: { name: string; slack_configs?: unknown[]; pagerduty_configs?: unknown[] }[];
  };

  it('passes amtool check-config', async () => {
    const result = await tool('amtool', ['check-config', file]);
    expect(result.output).toContain('SUCCESS');
    expect(result).toMatchObject({ ok: true });
  });

  it('sends every alert to Slack, and pages to the pager as well', () => {
    const receiver = (name: string) => config.receivers.find((r) => r.name === name)!;
    expect(receiver(config.route.receiver).slack_configs).toHaveLength(1);
    const pages = config.route.routes.find((r) => r.matchers.includes('severity="page"'))!;
    expect(receiver(pages.receiver).slack_configs).toHaveLength(1);
    expect(receiver(pages.receiver).pagerduty_configs).toHaveLength(1);
    // The rules' severities are exactly what the routes tell apart.
    expect(new Set(alertRules.map((r) => r.labels.severity))).toEqual(new Set(['page', 'warning']));
  });

  it('reads its secrets from files Compose provides', () => {
    const files = [...text.matchAll(/^\s*(?:- )?[a-z_]+_file: (\S+)/gm)].map((m) => m[1]);
    expect(files).toEqual(['/run/secrets/slack_webhook_url', '/run/secrets/pagerduty_routing_key']);
    expect(files.map((f) => path.basename(f))).toEqual(services.alertmanager.secrets);
  });

  it('has message templates that render', async () => {
    const templates: string[] = [];
    const collect = (value: unknown): void => {
      if (typeof value === 'string' && value.includes('{{')) templates.push(value);
      else if (value && typeof value === 'object') Object.values(value).forEach(collect);
    };
    collect(config);
    expect(templates.length).toBeGreaterThanOrEqual(3);
    for (const template of templates) {
      const result = await tool('amtool', [
        'template',
        'render',
        '--template.glob=/nonexistent/*.tmpl',
        `--template.text=${template}`,
      ]);
      expect([template, result.ok, result.output]).toEqual([template, true, expect.not.stringContaining('error')]);
    }
  });

  it('has an Opsgenie example that is valid once uncommented', async () => {
    const lines = text.split('\n');
    const start = lines.findIndex((line) => /^\s*# opsgenie_configs:/.test(line));
    expect(start).toBeGreaterThan(0);
    const indent = lines[start].indexOf('#');
    let end = start;
    while (end < lines.length && lines[end].startsWith(`${' '.repeat(indent)}# `)) end++;
    const uncommented = [
      ...lines.slice(0, start),
      ...lines.slice(start, end).map((line) => line.replace('# ', '')),
      ...lines.slice(end),
    ];
    const dir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-alertmanager-'));
    try {
      await writeFile(path.join(dir, 'alertmanager.yml'), uncommented.join('\n'));
      expect(uncommented.join('\n')).toMatch(/^ {4}opsgenie_configs:\n {6}- api_key_file: /m);
      const result = await tool('amtool', ['check-config', path.join(dir, 'alertmanager.yml')]);
      expect(result).toMatchObject({ ok: true });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Grafana

interface Panel {
  id: number;
  type: string;
  title: string;
  gridPos: { x: number; y: number; w: number; h: number };
  datasource?: { type: string; uid: string };
  targets?: { expr: string; datasource: { uid: string } }[];
}

describe('Grafana dashboard', () => {
  const dashboard = JSON.parse(read('deploy/grafana/dashboards/keyturn.json')) as {
    uid: string;
    panels: Panel[];
    templating: { list: { name: string; query: { query: string } }[] };
  };
  const panels = dashboard.panels;
  const queries = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));
  // Grafana's variables, as a query would see them.
  const substituted = (expr: string) => expr.replace(/\$__rate_interval|\$__range/g, '5m').replace(/\$key_set/g, '.*');

  it('is provisioned from the mounted folder, on the provisioned data source', () => {
    const provider = parse(read('deploy/grafana/provisioning/dashboards/keyturn.yml')) as {
      providers: { options: { path: string } }[];
    };
    expect(hostPathOf('grafana', `${provider.providers[0].options.path}/keyturn.json`)).toBe(
      'deploy/grafana/dashboards/keyturn.json',
    );
    const provisioned = parse(read('deploy/grafana/provisioning/datasources/prometheus.yml')) as {
      datasources: { uid: string }[];
    };
    const datasource = provisioned.datasources[0];
    const uids = new Set(
      panels.flatMap((p) => [p.datasource?.uid, ...(p.targets ?? []).map((t) => t.datasource.uid)]).filter(Boolean),
    );
    expect(uids).toEqual(new Set([datasource.uid]));
  });

  it('lays out distinct panels on the 24-column grid without overlaps', () => {
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    const cells = new Set<string>();
    const misplaced: string[] = [];
    for (const { title, gridPos: g } of panels) {
      if (g.x + g.w > 24) misplaced.push(`${title} is wider than the grid`);
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          if (cells.has(`${x},${y}`)) misplaced.push(`${title} overlaps another panel at ${x},${y}`);
          cells.add(`${x},${y}`);
        }
      }
    }
    expect(misplaced).toEqual([]);
  });

  it('queries only metrics keyturn, the Temporal SDK and Prometheus provide, and every keyturn metric', () => {
    const used = new Set<string>();
    for (const variable of dashboard.templating.list) {
      const [, name] = /^label_values\((\w+), \w+\)$/.exec(variable.query.query) ?? [];
      expect([variable.name, name !== undefined && isQueryable(name)]).toEqual([variable.name, true]);
    }
    for (const { panel, expr } of queries) {
      for (const name of metricNames(expr)) {
        expect([panel, name, isQueryable(name)]).toEqual([panel, name, true]);
        used.add(name.replace(/_(bucket|sum|count)$/, ''));
      }
    }
    expect(KEYTURN_METRICS.filter((m) => !used.has(m))).toEqual([]);
    expect([...used].some((name) => name.startsWith('temporal_'))).toBe(true);
  });

  it('has queries that are valid PromQL (promtool parses them as recording rules)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-dashboard-'));
    try {
      const records = queries.map(({ expr }, i) => ({ record: `dashboard:query_${i}`, expr: substituted(expr) }));
      const rules = { groups: [{ name: 'dashboard', rules: records }] };
      await writeFile(path.join(dir, 'dashboard.rules.json'), JSON.stringify(rules));
      const result = await tool('promtool', ['check', 'rules', path.join(dir, 'dashboard.rules.json')]);
      expect(result).toEqual({ ok: true, output: expect.stringContaining(`SUCCESS: ${queries.length} rules found`) });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
