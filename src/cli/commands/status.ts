import type { Command } from 'commander';
import { z } from 'zod';
import type { Config } from '../../config';
import type { KeySetStatus } from '../../domain/key-set-state';
import { KeyturnError } from '../../domain/errors';
import { policyTimings } from '../../domain/policy';
import { keySetTimeline } from '../../domain/timeline';
import { readFleet, statusFromRecord, type FleetReading } from '../../client/fleet-check';
import { mapBounded } from '../../client/map-bounded';
import type { KeySetClient } from '../../client/key-set-client';
import { connectionOptions, keySetIdArgument, parseOptions, withKeySets } from '../operator';
import { formatStatus, formatStatusLines, statusJson, type StatusProblemJson } from '../output';
import { renderTimelineChart, renderTimelineMermaid } from '../timeline-chart';

const schema = connectionOptions
  .extend({
    keySetId: keySetIdArgument.optional(),
    timeline: z.boolean().default(false),
    mermaid: z.boolean().default(false),
  })
  .refine((options) => options.keySetId !== undefined || !(options.timeline || options.mermaid), {
    error: '--timeline and --mermaid draw one key set: name it, e.g. `keyturn status default --timeline`',
    path: ['timeline'],
  });

/** The chart fills the terminal; piped, 100 columns and no colour (NO_COLOR turns colour off too). */
function chartOptions(now: number) {
  const tty = process.stdout.isTTY === true;
  return { now, width: tty ? (process.stdout.columns ?? 100) : 100, color: tty && !process.env.NO_COLOR };
}

export interface StatusOverview {
  /** Where the list of key sets came from. */
  source: 'PostgreSQL' | 'Temporal visibility';
  entries: (KeySetStatus | StatusProblemJson)[];
}

/**
 * Every key set's state. With a database known (DATABASE_URL, or the running instance's), every key
 * set not decommissioned, including one whose workflow is gone, read at once (`readFleet`): a key set
 * that visibility and PostgreSQL settle, with no open incident, is shown as PostgreSQL records it;
 * the others are asked one by one. Without a database, the running key set workflows that Temporal's
 * visibility store lists, each asked.
 */
export async function collectStatuses(keySets: KeySetClient, config: Config): Promise<StatusOverview> {
  // Loaded here: `status <id>` needs no database, and the driver and key crypto slow the CLI's start.
  const { KeySetDatabase } = await import('../../client/key-set-database.js');
  const database = await KeySetDatabase.open(config);
  if (!database)
    return {
      source: 'Temporal visibility',
      entries: await askEach(
        keySets,
        (await keySets.listRunningKeySetIds()).map((id) => ({ id })),
      ),
    };
  const now = Date.now();
  let fleet: FleetReading;
  try {
    fleet = await readFleet(keySets, database.keyStore.pool, now, { keyAgeMs: config.alerts.overdueToleranceMs });
  } finally {
    await database.close();
  }
  const entries = await askEach(
    keySets,
    fleet.records.map((record) => ({
      id: record.id,
      known: fleet.doubts.has(record.id) || record.openIncidents > 0 ? undefined : statusFromRecord(record, now),
    })),
  );
  return { source: 'PostgreSQL', entries };
}

/** Each key set's `known` status, or its workflow's answer where none is known, a few at a time. */
async function askEach(
  keySets: KeySetClient,
  keySetsToShow: { id: string; known?: KeySetStatus }[],
): Promise<StatusOverview['entries']> {
  return mapBounded(keySetsToShow, 8, async ({ id, known }) => {
    if (known) return known;
    try {
      return await keySets.getState(id);
    } catch (error) {
      if (!(error instanceof KeyturnError)) throw error;
      return { id, error: error.message };
    }
  });
}

export async function statusAction(id: string | undefined, _options: unknown, command: Command): Promise<void> {
  const options = parseOptions(schema, { ...command.opts(), keySetId: id });
  await withKeySets(options, async (keySets, config) => {
    if (options.keySetId !== undefined) {
      const status = await keySets.getState(options.keySetId);
      const now = Date.now();
      if (options.timeline || options.mermaid) {
        const rows = keySetTimeline(status.keys, policyTimings(status.policy), now);
        if (options.mermaid) console.log(renderTimelineMermaid(status.keySetId, rows));
        else console.log(options.json ? JSON.stringify(rows) : renderTimelineChart(rows, chartOptions(now)));
        return;
      }
      console.log(options.json ? JSON.stringify(statusJson(status)) : formatStatus(status, now));
      return;
    }
    const { entries } = await collectStatuses(keySets, config);
    console.log(
      options.json
        ? JSON.stringify(entries.map((entry) => ('error' in entry ? entry : statusJson(entry))))
        : formatStatusLines(entries, Date.now()),
    );
    const unreadable = entries.filter((entry) => 'error' in entry).length;
    if (unreadable > 0) throw new Error(`${unreadable} of ${entries.length} key set(s) could not be read`);
  });
}
