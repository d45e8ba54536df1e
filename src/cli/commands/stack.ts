import { existsSync } from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../../config';
import { createLogger } from '../../logger';
import { onShutdownRequest } from '../../runtime/shutdown-signal';
import { defaultStackPorts, startStack, type Stack, type StackService } from '../../stack/stack';
import { keySetWorkflowId } from '../../workflows/messages';
import { loadKeySetsFile } from '../../client/key-sets-file';

interface StackOptions {
  file: string;
  dataDir?: string;
  ui: boolean;
}

export async function stackAction(options: StackOptions): Promise<void> {
  const config = loadConfig(process.env, { dataDir: options.dataDir });
  const keySetsFile = existsSync(options.file) ? await loadKeySetsFile(options.file) : undefined;
  const logger = createLogger({ level: config.logLevel, pretty: process.stdout.isTTY === true });
  const shutdown = onShutdownRequest(logger);
  const abort = new AbortController();
  void shutdown.requested.then(() => abort.abort());
  let stack: Stack | undefined;
  try {
    stack = await startStack({
      dir: path.join(config.dataDir, 'stack'),
      ports: defaultStackPorts(),
      // This very CLI, from wherever it runs (bin/keyturn.js and the build, or the sources through tsx).
      keyturn: { command: process.execPath, args: [...process.execArgv, process.argv[1]] },
      logger,
      keySetsFile: keySetsFile?.source,
      webUi: options.ui,
      signal: abort.signal,
    }).catch((error: unknown) => {
      // Stopped by Ctrl-C while starting: what had started is stopped again; that is no failure.
      if (abort.signal.aborted) return undefined;
      throw error;
    });
    if (!stack) return;
    console.log(banner(stack, keySetsFile?.keySets.map((k) => k.id) ?? []));
    await shutdown.requested;
  } finally {
    await stack?.stop();
    shutdown.dispose();
  }
}

/** Where everything is, for the person who just ran `keyturn stack`. */
function banner(stack: Stack, keySetIds: string[]): string {
  const pid = (service: StackService) => `pid ${service.process.pid ?? '-'}`;
  const { ports } = stack;
  const ui = stack.webUiUrl;
  const rows: [string, string][] = [
    [
      'Temporal',
      `${stack.temporalAddress}  (namespace ${stack.namespace}, task queue ${stack.taskQueue}; balanced over the nodes below)`,
    ],
    ...stack.temporalNodes.map((node, i): [string, string] => [
      `  ${node.name}`,
      `frontend 127.0.0.1:${ports.temporalNodes[i].frontend}, metrics http://127.0.0.1:${ports.temporalNodes[i].metrics}/metrics  (${pid(node)})`,
    ]),
    ['Temporal Web UI', ui ? `${ui}/namespaces/${stack.namespace}/workflows  (read-only)` : '(not started: --no-ui)'],
    ...keySetIds.map((id): [string, string] => [
      `key set ${id}`,
      ui
        ? `${ui}/namespaces/${stack.namespace}/workflows/${encodeURIComponent(keySetWorkflowId(id))}`
        : keySetWorkflowId(id),
    ]),
    [
      'JWKS',
      `${stack.jwksUrl}/.well-known/jwks.json  (per key set: ${stack.jwksUrl}/keysets/<id>/jwks.json; balanced over the servers below)`,
    ],
    ...stack.jwksServers.map((server, i): [string, string] => [
      `  ${server.name}`,
      `http://127.0.0.1:${ports.jwksServers[i]}  (${pid(server)})`,
    ]),
    ...stack.workers.map((worker, i): [string, string] => [
      worker.name,
      `metrics http://127.0.0.1:${ports.workerMetrics[i].keyturn}/metrics, Temporal SDK's :${ports.workerMetrics[i].sdk}  (${pid(worker)})`,
    ]),
    ['Prometheus', `${stack.prometheusUrl}/alerts  (${pid(stack.prometheus)}; deploy/prometheus rules)`],
    ['Alertmanager', `${stack.alertmanagerUrl}  (${pid(stack.alertmanager)}; deploy/alertmanager routes)`],
    [
      'alert inbox',
      `${stack.folder.path('logs', 'alerts.jsonl')}  (Alertmanager's Slack and PagerDuty receivers and keyturn's webhook post to ${stack.inbox.url})`,
    ],
    [
      'PostgreSQL',
      `127.0.0.1:${ports.postgres}  (databases temporal, temporal_visibility and keyturn; ${pid(stack.postgres)})`,
    ],
    ['data, secrets', stack.folder.root],
    ['logs', stack.folder.path('logs')],
    ['keyturn CLI', `set -a; . ${stack.cliEnvFile}; set +a   then e.g. keyturn status <key set>, keyturn verify`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  return [
    '',
    'keyturn stack is running. Ctrl-C stops it.',
    ...rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`),
    '',
  ].join('\n');
}
