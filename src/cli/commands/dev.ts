import path from 'node:path';
import { loadConfig } from '../../config';
import { startDevStack, type DevStack } from '../../dev/dev-stack';
import { KeyturnError } from '../../domain/errors';
import { createLogger } from '../../logger';
import { displayDatabaseUrl } from '../../runtime/database';
import { onShutdownRequest } from '../../runtime/shutdown-signal';
import { keySetWorkflowId } from '../../workflows/messages';
import { mapBounded } from '../../client/map-bounded';
import { loadKeySetsFile, type KeySetsFile } from '../../client/key-sets-file';
import { progressPrinter } from '../progress';

/** The banner names this many key sets; with thousands, `keyturn status` is the place to look. */
const BANNER_KEY_SETS = 10;
/** How many of those are waited for at once. */
const WAITS_AT_ONCE = 4;

interface DevOptions {
  file: string;
  dataDir?: string;
  temporalPort: number;
  uiPort?: number;
  pgPort?: number;
  port?: number;
  signerPort?: number;
}

export async function devAction(options: DevOptions): Promise<void> {
  const config = loadConfig(process.env, { dataDir: options.dataDir, pgPort: options.pgPort, jwksPort: options.port });
  // Checked before anything starts: a missing or bad file stops dev at once, with every problem.
  const keySetsFile = await loadKeySetsFile(options.file).catch((error: unknown) => {
    if (!(error instanceof KeyturnError && (error.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT'))
      throw error;
    throw new KeyturnError(
      'ERR_KEYSETS_FILE_INVALID',
      `keyturn dev applies the key sets file ${options.file}, and there is none at ${path.resolve(options.file)}: ` +
        'run it from the keyturn folder (it ships keysets.yaml) or name a file with -f <file>',
      { field: 'file', cause: error },
    );
  });
  // Readable lines for a person at a terminal; JSON when piped into something that parses it.
  const logger = createLogger({ level: config.logLevel, pretty: process.stdout.isTTY === true });
  // Listening from the start: a Ctrl-C while things start still stops what has started.
  const shutdown = onShutdownRequest(logger);
  const abort = new AbortController();
  void shutdown.requested.then(() => abort.abort());
  let stack: DevStack | undefined;
  try {
    stack = await startDevStack({
      config,
      logger,
      temporalPort: options.temporalPort,
      uiPort: options.uiPort ?? options.temporalPort + 1000,
      keySets: keySetsFile,
      onApplyProgress: progressPrinter('key sets applied'),
      jwksPort: config.jwksPort,
      sdkMetricsPort: config.sdkMetricsPort,
      signerPort: options.signerPort ?? config.signer.port,
      signal: abort.signal,
    }).catch((error: unknown) => {
      // Stopped by Ctrl-C while starting: what had started is stopped again; that is no failure.
      if (abort.signal.aborted) return undefined;
      throw error;
    });
    if (!stack) return;
    const keySets = stack.keySets;
    // Only the key sets the banner names are waited for, a few at a time: each wait polls its workflow.
    const shown = keySetsFile.keySets.slice(0, BANNER_KEY_SETS);
    const activeKids = await mapBounded(shown, WAITS_AT_ONCE, ({ id }) =>
      keySets.waitForActiveKid(id, 30_000).catch((error: Error) => {
        logger.warn({ err: error, keySetId: id }, 'the key set has no active key yet');
        return null;
      }),
    );
    console.log(banner(stack, keySetsFile, activeKids));
    await Promise.race([stack.workerDone, shutdown.requested]);
  } finally {
    await stack?.stop();
    shutdown.dispose();
  }
}

/** Where everything is, for the person who just ran `npm start`. */
function banner(stack: DevStack, file: KeySetsFile, activeKids: (string | null)[]): string {
  const ui = stack.webUiUrl;
  const workflowUrl = (id: string) =>
    ui
      ? `${ui}/namespaces/${stack.namespace}/workflows/${encodeURIComponent(keySetWorkflowId(id))}`
      : keySetWorkflowId(id);
  const database =
    stack.databaseSource === 'embedded'
      ? `${displayDatabaseUrl(stack.databaseUrl)}  (embedded, data in ${path.join(path.dirname(stack.instanceFile), 'postgres')})`
      : `${displayDatabaseUrl(stack.databaseUrl)}  (from DATABASE_URL)`;
  const rows: [string, string][] = [
    [
      'Temporal Web UI',
      ui
        ? `${ui}/namespaces/${stack.namespace}/workflows`
        : '(a Temporal server keyturn did not start: use its own UI)',
    ],
    ...activeKids.map((kid, i): [string, string] => [
      `key set ${file.keySets[i].id}`,
      `${workflowUrl(file.keySets[i].id)}  (active kid ${kid ?? 'pending'})`,
    ]),
    ...(file.keySets.length > activeKids.length
      ? ([[`and ${file.keySets.length - activeKids.length} more`, '`keyturn status` lists every key set']] as [
          string,
          string,
        ][])
      : []),
    ['key sets file', `${path.resolve(file.source)}  (${describeApplied(stack)})`],
    ...(stack.jwksUrl
      ? ([
          ['JWKS', `${stack.jwksUrl}/.well-known/jwks.json  (per key set: ${stack.jwksUrl}/keysets/<id>/jwks.json)`],
          ['metrics', `${stack.jwksUrl}/metrics  (worker, JWKS server and signer)`],
        ] as [string, string][])
      : []),
    ...(stack.sdkMetricsUrl ? ([['Temporal SDK metrics', stack.sdkMetricsUrl]] as [string, string][]) : []),
    ...(stack.signerUrl
      ? ([
          [
            'signer',
            `${stack.signerUrl}/v1/keysets/<id>/sign  (no client yet: \`keyturn signer client add <name> --key-sets ${file.keySets[0]?.id ?? '<id>'}\` prints a bearer secret)`,
          ],
        ] as [string, string][])
      : []),
    ['Temporal address', `${stack.temporalAddress}  (namespace ${stack.namespace}, task queue ${stack.taskQueue})`],
    ['PostgreSQL', database],
    ['KEK', stack.kekFile ?? 'from KEYTURN_KEK'],
    ['instance file', stack.instanceFile],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  return [
    '',
    'keyturn is running. Ctrl-C stops it.',
    ...rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`),
    '',
  ].join('\n');
}

function describeApplied(stack: DevStack): string {
  const applied = stack.applied;
  if (!applied) return 'not applied';
  const parts = [
    applied.created.length > 0 && `created ${names(applied.created)}`,
    applied.changed.length > 0 && `changed ${names(applied.changed.map((c) => `${c.id} (${c.fields.join(', ')})`))}`,
    applied.unchanged.length > 0 && `unchanged ${names(applied.unchanged)}`,
  ];
  return `applied: ${parts.filter(Boolean).join('; ')}`;
}

/** A list of key sets for the banner: the first few by name, then how many more. */
function names(list: string[]): string {
  return list.length <= BANNER_KEY_SETS
    ? list.join(', ')
    : `${list.slice(0, BANNER_KEY_SETS).join(', ')} and ${list.length - BANNER_KEY_SETS} more`;
}
