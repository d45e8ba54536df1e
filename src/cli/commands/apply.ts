import { z } from 'zod';
import { loadConfig } from '../../config';
import { applyKeySets, DEFAULT_APPLY_CONCURRENCY, type ApplyReport } from '../../client/apply';
import { resolveTemporalTarget, withClient } from '../../client/connect';
import { loadKeySetsFile } from '../../client/key-sets-file';
import { progressPrinter } from '../progress';
import { connectionOptions, parseOptions, requestedBy } from '../operator';

const CONCURRENCY_RANGE = '--concurrency <n> takes a whole number from 1 to 1000';

const applyOptions = connectionOptions.extend({
  file: z.string().trim().min(1, { error: '-f <file> names the key sets file' }),
  prune: z.boolean().default(false),
  dryRun: z.boolean().default(false),
  concurrency: z.coerce
    .number({ error: CONCURRENCY_RANGE })
    .int({ error: CONCURRENCY_RANGE })
    .min(1, { error: CONCURRENCY_RANGE })
    .max(1_000, { error: CONCURRENCY_RANGE })
    .default(DEFAULT_APPLY_CONCURRENCY),
});

export async function applyAction(raw: unknown): Promise<void> {
  const options = parseOptions(applyOptions, raw);
  // Checked before anything connects: a bad file changes nothing.
  const file = await loadKeySetsFile(options.file);
  const config = loadConfig(process.env, { dataDir: options.dataDir });
  const target = await resolveTemporalTarget(config, options);
  const report = await withClient(target, (client) =>
    applyKeySets(client, file, {
      taskQueue: config.taskQueue,
      prune: options.prune,
      dryRun: options.dryRun,
      requestedBy: requestedBy(),
      concurrency: options.concurrency,
      onProgress: progressPrinter(options.dryRun ? 'key sets planned' : 'key sets applied'),
    }),
  );
  console.log(
    options.json
      ? JSON.stringify(report)
      : formatApplyReport(report, `${file.source} to ${target.address} (namespace ${target.namespace})`),
  );
}

/** What `keyturn apply` says it did (or, with --dry-run, would do), one line per key set. */
function formatApplyReport(report: ApplyReport, what: string): string {
  const verb = (done: string, would: string) => (report.dryRun ? would : done);
  const rows: [string, string][] = [
    ...report.created.map((id): [string, string] => [verb('created', 'would create'), id]),
    ...report.changed.map((change): [string, string] => [
      verb('changed', 'would change'),
      `${change.id}: ${change.fields.map((field) => `${field} ${show(change.from[field])} → ${show(change.to[field])}`).join(', ')}`,
    ]),
    ...report.unchanged.map((id): [string, string] => ['unchanged', id]),
    ...report.recommissioned.map((id): [string, string] => [
      verb('recommissioned', 'would recommission'),
      `${id} (back in service: a new key signs at once)`,
    ]),
    ...report.pruned.map((id): [string, string] => [
      verb('pruned', 'would prune'),
      `${id} (decommissioned: its keys retire through grace)`,
    ]),
    [
      `schedule`,
      `supervisor ${report.schedule === 'unchanged' ? 'unchanged' : verb(report.schedule, `would be ${report.schedule}`)}`,
    ],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  return [
    report.dryRun ? `dry run, nothing changed: applying ${what} would do this` : `applied ${what}`,
    ...rows.map(([label, value]) => `  ${label.padEnd(width)}  ${value}`),
    ...report.warnings.map((warning) => `warning: ${warning}`),
  ].join('\n');
}

function show(value: unknown): string {
  if (value === undefined) return '(none)';
  return typeof value === 'string' ? value : JSON.stringify(value);
}
