import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import type { ProcessSpec } from '../runtime/managed-process';

/** Where Prometheus finds what deploy/prometheus/prometheus.yml names by compose service, by job. */
export interface ScrapeTargets {
  'keyturn-worker': string[];
  'temporal-sdk': string[];
  'keyturn-jwks': string[];
  prometheus: string[];
}

/**
 * How fast alerts move: deploy's own timings unless set. Tests shorten them, so that an alert fires,
 * is delivered and resolves within seconds rather than the minutes a deployment wants.
 */
export interface AlertTimings {
  /** Prometheus' scrape and rule evaluation interval. */
  evaluationInterval: string;
  /** Alertmanager's group_wait, group_interval and repeat_interval, on every route. */
  groupWait: string;
  groupInterval: string;
  repeatInterval: string;
}

export interface MonitoringOptions {
  /** The repository's deploy/ folder. */
  deployDir: string;
  /** Where the configurations and data go. */
  dir: string;
  prometheusPort: number;
  alertmanagerPort: number;
  targets: ScrapeTargets;
  /** The files Alertmanager reads its secrets from, by the name compose gives them under /run/secrets/. */
  secretsDir: string;
  /** The stack's alert inbox, where the Slack and PagerDuty receivers post. */
  inboxUrl: string;
  timings?: AlertTimings;
  logDir: string;
}

type Yaml = Record<string, unknown>;

/**
 * deploy/prometheus/prometheus.yml with the stack's addresses: the same jobs, rules and Alertmanager,
 * the targets on loopback. A job the stack does not know fails here, so a job added to deploy/ is
 * added here too.
 */
async function prometheusConfig(options: MonitoringOptions): Promise<string> {
  const config = parse(await readFile(path.join(options.deployDir, 'prometheus', 'prometheus.yml'), 'utf8')) as Yaml;
  if (options.timings) {
    config.global = {
      ...(config.global as Yaml),
      scrape_interval: options.timings.evaluationInterval,
      evaluation_interval: options.timings.evaluationInterval,
    };
  }
  config.rule_files = (config.rule_files as string[]).map((pattern) =>
    path.join(options.deployDir, 'prometheus', pattern),
  );
  config.alerting = { alertmanagers: [{ static_configs: [{ targets: [`127.0.0.1:${options.alertmanagerPort}`] }] }] };
  for (const job of config.scrape_configs as { job_name: string; static_configs: { targets: string[] }[] }[]) {
    const targets = options.targets[job.job_name as keyof ScrapeTargets];
    if (targets === undefined)
      throw new Error(`deploy/prometheus/prometheus.yml scrapes job ${job.job_name}, which keyturn stack does not run`);
    job.static_configs = [{ targets }];
  }
  return stringify(config);
}

/**
 * deploy/alertmanager/alertmanager.yml with its secrets read from the stack's files instead of
 * /run/secrets/, and its Slack and PagerDuty receivers posting to the stack's inbox: the same routes,
 * grouping and templates.
 */
async function alertmanagerConfig(options: MonitoringOptions): Promise<string> {
  const config = parse(await readFile(path.join(options.deployDir, 'alertmanager', 'alertmanager.yml'), 'utf8'), {
    merge: true,
  }) as Yaml;
  const rewrite = (value: unknown): unknown => {
    if (typeof value === 'string' && value.startsWith('/run/secrets/'))
      return path.join(options.secretsDir, value.slice('/run/secrets/'.length));
    if (Array.isArray(value)) return value.map(rewrite);
    if (value !== null && typeof value === 'object')
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, rewrite(v)]));
    return value;
  };
  const rewritten = rewrite(config) as Yaml;
  for (const receiver of rewritten.receivers as { pagerduty_configs?: Yaml[] }[]) {
    for (const pagerduty of receiver.pagerduty_configs ?? []) pagerduty.url = `${options.inboxUrl}/pagerduty`;
  }
  if (options.timings) {
    const { groupWait, groupInterval, repeatInterval } = options.timings;
    const retime = (route: Yaml) => {
      route.group_wait = groupWait;
      route.group_interval = groupInterval;
      if (route === rewritten.route || route.repeat_interval !== undefined) route.repeat_interval = repeatInterval;
      for (const child of (route.routes as Yaml[] | undefined) ?? []) retime(child);
    };
    retime(rewritten.route as Yaml);
  }
  return stringify(rewritten, { aliasDuplicateObjects: false });
}

/** Writes both configurations and says how to start Prometheus and Alertmanager (Debian's packages). */
export async function monitoringProcesses(
  options: MonitoringOptions,
): Promise<{ prometheus: ProcessSpec; alertmanager: ProcessSpec }> {
  const prometheusDir = path.join(options.dir, 'prometheus');
  const alertmanagerDir = path.join(options.dir, 'alertmanager');
  await mkdir(path.join(prometheusDir, 'data'), { recursive: true });
  await mkdir(path.join(alertmanagerDir, 'data'), { recursive: true });
  const prometheusFile = path.join(prometheusDir, 'prometheus.yml');
  const alertmanagerFile = path.join(alertmanagerDir, 'alertmanager.yml');
  await writeFile(prometheusFile, await prometheusConfig(options));
  await writeFile(alertmanagerFile, await alertmanagerConfig(options));
  const prometheusUrl = `http://127.0.0.1:${options.prometheusPort}`;
  const alertmanagerUrl = `http://127.0.0.1:${options.alertmanagerPort}`;
  return {
    prometheus: {
      name: 'Prometheus',
      command: 'prometheus',
      args: [
        `--config.file=${prometheusFile}`,
        `--storage.tsdb.path=${path.join(prometheusDir, 'data')}`,
        `--web.listen-address=127.0.0.1:${options.prometheusPort}`,
        `--web.external-url=${prometheusUrl}`,
      ],
      logFile: path.join(options.logDir, 'prometheus.log'),
    },
    alertmanager: {
      name: 'Alertmanager',
      // Debian names it prometheus-alertmanager.
      command: 'prometheus-alertmanager',
      args: [
        `--config.file=${alertmanagerFile}`,
        `--storage.path=${path.join(alertmanagerDir, 'data')}`,
        `--web.listen-address=127.0.0.1:${options.alertmanagerPort}`,
        `--web.external-url=${alertmanagerUrl}`,
        // A single Alertmanager: no gossip port to take.
        '--cluster.listen-address=',
      ],
      logFile: path.join(options.logDir, 'alertmanager.log'),
    },
  };
}
