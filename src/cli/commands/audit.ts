import type { Command } from 'commander';
import { z } from 'zod';
import { loadConfig } from '../../config';
import { durationToMs } from '../../domain/duration';
import { KeySetDatabase } from '../../client/key-set-database';
import { keySetIdArgument, parseOptions } from '../operator';
import { auditEventJson, formatAuditTrail, formatAuditVerification } from '../output';

// The audit trail is in PostgreSQL only: these commands never contact Temporal and need no KEK.

const ISO_TIME = /^\d{4}-\d\d-\d\d(T\d\d:\d\d(?::\d\d(?:\.\d+)?)?(Z|[+-]\d\d:\d\d)?)?$/;
const SINCE_HINT =
  '--since must be an ISO 8601 time (2025-01-31, 2025-01-31T12:00:00Z; UTC when no zone is given) or a duration back from now (7d, 12h)';

/** `--since` as epoch ms: an ISO 8601 date or time (UTC unless it says otherwise), or a duration before `now`. */
function parseSince(value: string, now: number): number | undefined {
  const back = durationToMs(value);
  if (back !== undefined) return now - back;
  const match = ISO_TIME.exec(value);
  if (match === null) return undefined;
  const [, time, zone] = match;
  // Date.parse reads a time without a zone as local time; the trail is shown in UTC, so it is read in UTC too.
  const at = Date.parse(time !== undefined && zone === undefined ? `${value}Z` : value);
  return Number.isNaN(at) ? undefined : at;
}

const common = { dataDir: z.string().optional(), json: z.boolean().default(false) };

const trailSchema = z.object({
  ...common,
  keySetId: keySetIdArgument,
  since: z
    .string()
    .trim()
    .transform((value, context) => {
      const since = parseSince(value, Date.now());
      if (since === undefined) context.addIssue({ code: 'custom', message: SINCE_HINT });
      return since ?? z.NEVER;
    })
    .optional(),
});

const verifySchema = z.object({ ...common, keySetId: keySetIdArgument.optional() });

/** Opens keyturn's PostgreSQL (DATABASE_URL, else the instance running on the data folder) for `use`. */
async function withDatabase<T>(dataDir: string | undefined, use: (database: KeySetDatabase) => Promise<T>): Promise<T> {
  const database = await KeySetDatabase.open(loadConfig(process.env, { dataDir }));
  if (!database)
    throw new Error(
      'the audit trail is in PostgreSQL: set DATABASE_URL, or run this beside `keyturn dev` (--data-dir)',
    );
  try {
    return await use(database);
  } finally {
    await database.close();
  }
}

export async function auditShowAction(id: string, _options: unknown, command: Command): Promise<void> {
  const options = parseOptions(trailSchema, { ...command.opts(), keySetId: id });
  const events = await withDatabase(options.dataDir, (database) =>
    database.auditTrail(options.keySetId, options.since),
  );
  console.log(
    options.json
      ? JSON.stringify(events.map(auditEventJson))
      : formatAuditTrail(options.keySetId, events, options.since),
  );
}

export async function auditVerifyAction(id: string | undefined, _options: unknown, command: Command): Promise<void> {
  const options = parseOptions(verifySchema, { ...command.opts(), keySetId: id });
  const results = await withDatabase(options.dataDir, (database) => database.verifyAuditTrail(options.keySetId));
  const broken = results.filter((r) => r.problem !== null);
  const keySets = results.map(({ keySetId, events, head, problem }) => ({
    id: keySetId,
    ok: problem === null,
    events,
    head,
    problem,
  }));
  console.log(options.json ? JSON.stringify({ ok: broken.length === 0, keySets }) : formatAuditVerification(results));
  if (broken.length > 0) {
    throw new Error(
      `the audit trail of ${broken.length} of ${results.length} key set(s) is broken: ${broken.map((r) => r.keySetId).join(', ')}`,
    );
  }
}
