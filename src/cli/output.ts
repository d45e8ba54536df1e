import type { KeySetStatus, LastError } from '../domain/key-set-state';
import type { KeyState, ScheduledTransition } from '../domain/lifecycle';
import type { KeySetPolicy } from '../domain/policy';
import { TRANSITION_WORDS, utc } from '../domain/describe';
import { describeCustody } from '../domain/custody-settings';
import type { AuditChainVerification, AuditRecord } from '../store/audit-log';
import type { KekRewrapOutcome, KekStatus, KekStatusEntry } from '../client/kek-roll';
import type { KeySetVerification } from '../client/verify';

/**
 * How the operator commands show their results: `--json` for machines (times as ISO 8601), words
 * and tables for people (times in UTC). Pure functions of the data; the commands print.
 */

/** `keyturn status <id> --json`. */
export interface StatusJson {
  id: string;
  /** As in keysets.yaml. */
  policy: KeySetPolicy;
  paused: { reason: string; since: string } | null;
  keys: {
    kid: string;
    state: KeyState;
    alg: string;
    createdAt: string;
    listedAt?: string;
    promotableAt?: string;
    activatedAt?: string;
    demotedAt?: string;
    graceEndsAt?: string;
    retiredAt?: string;
  }[];
  nextTransition: { kind: ScheduledTransition['kind']; at: string; kid?: string } | null;
  /** A rotation asked for and not done yet: its next key signs at the next transition. */
  rotation: { requestedBy: string; reason: string; requestedAt: string; immediately: boolean } | null;
  lastError: (Omit<LastError, 'at'> & { at: string }) | null;
}

/** The key times `status --json` shows besides createdAt, in the order a key reaches them. */
const KEY_TIMES = ['listedAt', 'promotableAt', 'activatedAt', 'demotedAt', 'graceEndsAt', 'retiredAt'] as const;

/** A line of `keyturn status --json` for a key set that could not be read. */
export interface StatusProblemJson {
  id: string;
  error: string;
}

const iso = (ms: number) => new Date(ms).toISOString();

export function statusJson(status: KeySetStatus): StatusJson {
  return {
    id: status.keySetId,
    policy: status.policy,
    paused: status.paused && { reason: status.paused.reason, since: iso(status.paused.since) },
    keys: status.keys.map((key) => ({
      kid: key.kid,
      state: key.state,
      alg: key.alg,
      createdAt: iso(key.createdAt),
      ...Object.fromEntries(KEY_TIMES.flatMap((field) => (key[field] === undefined ? [] : [[field, iso(key[field])]]))),
    })),
    nextTransition: status.nextTransition && { ...status.nextTransition, at: iso(status.nextTransition.at) },
    rotation: status.rotation && { ...status.rotation, requestedAt: iso(status.rotation.requestedAt) },
    lastError: status.lastError && { ...status.lastError, at: iso(status.lastError.at) },
  };
}

/**
 * `keyturn status <id>`: the keys as a table, then the next transition, a rotation asked for, pause,
 * decommission, last error and policy.
 */
export function formatStatus(status: KeySetStatus, now: number): string {
  const time = (ms: number | undefined) => (ms === undefined ? '-' : utc(ms).replace(' UTC', ''));
  const rows = [
    ['KID', 'STATE', 'CREATED (UTC)', 'ACTIVATED', 'DEMOTED', 'RETIRED'],
    ...status.keys.map((k) => [
      k.kid,
      k.state,
      time(k.createdAt),
      time(k.activatedAt),
      time(k.demotedAt),
      time(k.retiredAt),
    ]),
  ];
  return [
    `key set ${status.keySetId}: ${status.policy.algorithm}, rotates every ${status.policy.rotationPeriod}`,
    ...table(rows),
    `next transition: ${describeTransition(status.nextTransition, now)}`,
    ...(status.rotation
      ? [
          `rotation asked for by ${status.rotation.requestedBy} at ${utc(status.rotation.requestedAt)}: ${status.rotation.reason}`,
        ]
      : []),
    `paused: ${status.paused ? `since ${utc(status.paused.since)}: ${status.paused.reason}` : 'no'}`,
    ...(status.decommissioned
      ? [`decommissioned since ${utc(status.decommissioned.since)}: ${status.decommissioned.reason} (winding down)`]
      : []),
    `last error: ${describeLastError(status.lastError)}`,
    `policy: ${Object.entries(status.policy)
      .map(
        ([field, value]) => `${field} ${field === 'custody' ? describeCustody(status.policy.custody) : String(value)}`,
      )
      .join(', ')}`,
  ].join('\n');
}

/** `keyturn status`: one line per key set, ids aligned. */
export function formatStatusLines(entries: readonly (KeySetStatus | StatusProblemJson)[], now: number): string {
  if (entries.length === 0) return 'no key sets';
  const ids = entries.map((entry) => ('error' in entry ? entry.id : entry.keySetId));
  const width = Math.max(...ids.map((id) => id.length));
  return entries
    .map((entry, index) => {
      const id = ids[index].padEnd(width);
      if ('error' in entry) return `${id}  error: ${entry.error}`;
      const active = entry.keys.find((key) => key.state === 'active');
      const parts = [`active ${active?.kid ?? 'none'}`, `next: ${describeTransition(entry.nextTransition, now)}`];
      if (entry.decommissioned) parts.push('DECOMMISSIONED');
      if (entry.paused) parts.push(`PAUSED: ${entry.paused.reason}`);
      if (entry.lastError) parts.push(`last error: ${describeLastError(entry.lastError)}`);
      return `${id}  ${parts.join('  ')}`;
    })
    .join('\n');
}

/** `keyturn verify`: each key set with `ok` or its violations. */
export function formatVerification(results: readonly KeySetVerification[]): string {
  if (results.length === 0) return 'no key sets';
  return results
    .flatMap((result) => {
      if (result.problem) return [`FAIL ${result.keySetId}: ${result.problem}`];
      if (result.violations.length === 0) return [`ok   ${result.keySetId}`];
      return [`FAIL ${result.keySetId}`, ...result.violations.map((v) => `  ${v.code}: ${v.message}`)];
    })
    .join('\n');
}

/** `keyturn audit <id> --json`: one element per event, as stored, the time as ISO 8601. */
export type AuditEventJson = Omit<AuditRecord, 'at'> & { at: string };

export function auditEventJson(event: AuditRecord): AuditEventJson {
  return { ...event, at: iso(event.at) };
}

/** `keyturn audit <id>`: a heading, then one row per event, oldest first. */
export function formatAuditTrail(keySetId: string, events: readonly AuditRecord[], since?: number): string {
  const from = since === undefined ? '' : ` since ${utc(since)}`;
  if (events.length === 0) return `no audit events for key set ${keySetId}${from}`;
  const states = (e: AuditRecord) =>
    e.fromState === null && e.toState === null ? '-' : `${e.fromState ?? ''}→${e.toState ?? ''}`;
  const rows = [
    ['TIME (UTC)', 'SEQ', 'EVENT', 'KID', 'FROM→TO', 'TRIGGER', 'ACTOR', 'REASON'],
    ...events.map((e) => [
      utc(e.at).replace(' UTC', ''),
      String(e.seq ?? '-'),
      e.event,
      e.kid ?? '-',
      states(e),
      e.trigger,
      printable(e.actor),
      printable(e.reason),
    ]),
  ];
  return [`audit trail of key set ${keySetId}${from}: ${events.length} event(s)`, ...table(rows)].join('\n');
}

/** `keyturn audit verify`: each key set with `ok`, its event count and head, or the first break in its chain. */
export function formatAuditVerification(results: readonly AuditChainVerification[]): string {
  if (results.length === 0) return 'no key sets';
  return results
    .map(({ keySetId, events, head, problem }) => {
      if (problem) return `FAIL ${keySetId}: ${problem.message}`;
      return `ok   ${keySetId} (${events} event(s)${head.hash === null ? '' : `, head ${head.hash.slice(0, 12)}`})`;
    })
    .join('\n');
}

/** Where the KEKs came from, in words an operator can act on. */
export function kekSource(kekFile: string | null): string {
  return kekFile === null ? 'KEYTURN_KEK' : `the KEK file ${kekFile}`;
}

/** `keyturn kek status --json`: ok unless a stored private key is sealed under a KEK that is not configured. */
export function kekStatusJson(status: KekStatus): { ok: boolean } & KekStatus {
  return { ok: status.keks.every((kek) => kek.configured), ...status };
}

/** `keyturn kek status`: the KEK ids as a table, current first, then what the operator can do next. */
export function formatKekStatus({ kekFile, keks }: KekStatus): string {
  const source = kekSource(kekFile);
  const role = (kek: KekStatusEntry) => (kek.current ? 'current' : kek.configured ? 'older' : 'NOT CONFIGURED');
  const rows = [
    ['KEK', 'ROLE', 'PRIVATE KEYS', 'KEY SETS'],
    ...keks.map((kek) => [kek.id, role(kek), String(kek.privateKeys), kek.keySetIds.join(', ') || '-']),
  ];
  const count = (list: readonly KekStatusEntry[]) => list.reduce((sum, kek) => sum + kek.privateKeys, 0);
  const older = keks.filter((kek) => kek.configured && !kek.current);
  const missing = keks.filter((kek) => !kek.configured);
  const advice: string[] = [];
  if (missing.length > 0) {
    advice.push(
      `${count(missing)} private key(s) are sealed under a KEK that ${source} lacks and cannot be opened: add that KEK back after the current one`,
    );
  }
  if (count(older) > 0)
    advice.push(`${count(older)} private key(s) are still sealed under an older KEK: run \`keyturn kek rewrap\``);
  else if (older.length > 0)
    advice.push(
      `no private key is sealed under an older KEK: they can be removed from ${source} (then restart the workers and issuers)`,
    );
  if (advice.length === 0) advice.push('every private key is sealed under the current KEK');
  return [`KEKs from ${source}, current first:`, ...table(rows), ...advice].join('\n');
}

/** `keyturn kek rewrap --json`: one element per key set; ok unless one could not be rewrapped. */
export function kekRewrapJson(current: string, outcomes: readonly KekRewrapOutcome[]) {
  return {
    ok: outcomes.every((o) => o.outcome !== 'failed'),
    current,
    keySets: outcomes.map(({ keySetId, ...outcome }) => ({ id: keySetId, ...outcome })),
  };
}

/** `keyturn kek rewrap`: one line per key set, what was re-sealed or why nothing was. */
export function formatKekRewrap(
  current: string,
  kekFile: string | null,
  outcomes: readonly KekRewrapOutcome[],
): string {
  const lines = outcomes.map((o) => {
    if (o.outcome === 'failed') return `  FAILED     ${o.keySetId} (nothing changed): ${o.error.message}`;
    if (o.outcome === 'unchanged') return `  unchanged  ${o.keySetId}: no private key under another KEK`;
    return `  rewrapped  ${o.keySetId}: ${o.kids.length} private key(s) from KEK ${o.from.join(', ')}: ${o.kids.join(', ')}`;
  });
  return [
    `re-sealing under the current KEK ${current} (from ${kekSource(kekFile)}):`,
    ...(lines.length > 0 ? lines : ['  no key sets']),
  ].join('\n');
}

/** Rows of cells as aligned lines, two spaces apart and indented by two. */
function table(rows: readonly string[][]): string[] {
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  return rows.map((row) => `  ${row.map((cell, column) => cell.padEnd(widths[column])).join('  ')}`.trimEnd());
}

/** Free text from the audit trail on one line, with no control characters to move the terminal's cursor. */
function printable(text: string): string {
  return text.replace(/[\s\p{Cc}]+/gu, ' ');
}

function describeTransition(transition: ScheduledTransition | null, now: number): string {
  if (transition === null) return 'none scheduled';
  const kid = 'kid' in transition ? ` (${transition.kid})` : '';
  return `${TRANSITION_WORDS[transition.kind]}${kid} at ${utc(transition.at)} (${relative(transition.at - now)})`;
}

function describeLastError(error: LastError | null): string {
  return error ? `${error.step} failed ${error.failures} time(s), last at ${utc(error.at)}: ${error.message}` : 'none';
}

/** `in 4d 3h`, `2m 10s ago`, `now`: the two largest units. */
function relative(ms: number): string {
  const units: [string, number][] = [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1_000],
  ];
  let rest = Math.abs(ms);
  const parts: string[] = [];
  for (const [unit, size] of units) {
    if (rest >= size && parts.length < 2) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    } else if (parts.length > 0) break;
  }
  if (parts.length === 0) return 'now';
  return ms > 0 ? `in ${parts.join(' ')}` : `${parts.join(' ')} ago`;
}
