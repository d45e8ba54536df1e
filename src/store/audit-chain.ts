import { createHash } from 'node:crypto';

/**
 * The hash chain that makes a key set's audit trail tamper-evident. Pure: the writer
 * (appendAuditEvent), the backfill of rows older than the chain and `keyturn audit verify` all
 * hash through here, so they cannot disagree.
 *
 * Each event of a key set has a `seq` (1, 2, 3 …) and `hash = SHA-256(encoding)` in lowercase hex,
 * where the encoding is the RFC 8785 (JCS) canonical JSON, in UTF-8, of the object
 *
 *   { keySetId, seq, kid, event, fromState, toState, trigger, actor, reason, operationId,
 *     occurredAt, details, prevHash }
 *
 * with `occurredAt` in epoch milliseconds, absent values as null, `details` as stored (jsonb) and
 * `prevHash` the hash of event `seq - 1` (null for seq 1). JCS writes object members sorted by the
 * UTF-16 code units of their names, no whitespace, strings and numbers as JavaScript's
 * JSON.stringify does, so any JCS library can recompute a hash. `id` and `recorded_at` are not
 * covered: `seq` is the order of the chain.
 *
 * The key set row keeps the head (last seq and hash), updated in the same transaction as the event:
 * without it, deleting the newest events would leave a shorter chain that is still valid.
 *
 * What this protects against: an event edited, inserted or deleted, including the newest ones, by
 * someone who did not also recompute every later hash and the head. It is tamper-evident, not
 * tamper-proof: there is no secret, so anyone who can write both tables can rebuild a consistent
 * forgery. Keep the heads somewhere the database's writers cannot reach (the output of
 * `keyturn audit verify --json` in logs or a ticket, say): a head recorded outside is what shows
 * that a whole chain was rewritten.
 */

/** The fields of one audit event that its hash covers. */
export interface ChainedFields {
  keySetId: string;
  seq: number;
  kid: string | null;
  event: string;
  fromState: string | null;
  toState: string | null;
  trigger: string;
  actor: string;
  reason: string;
  operationId: string | null;
  /** Epoch milliseconds. */
  occurredAt: number;
  /** As PostgreSQL's jsonb hands it back: plain JSON values. */
  details: unknown;
  prevHash: string | null;
}

/** A key set's head: the seq and hash of its newest event; seq 0 and hash null before the first. */
export interface ChainHead {
  seq: number;
  hash: string | null;
}

/** Every member of ChainedFields (a Record, so that one added there and not here fails to compile). */
const CHAINED_FIELD_NAMES = Object.keys({
  keySetId: true,
  seq: true,
  kid: true,
  event: true,
  fromState: true,
  toState: true,
  trigger: true,
  actor: true,
  reason: true,
  operationId: true,
  occurredAt: true,
  details: true,
  prevHash: true,
} satisfies Record<keyof ChainedFields, true>) as (keyof ChainedFields)[];

/** The hash of one event, chained to its predecessor by `fields.prevHash`. */
export function hashAuditEvent(fields: ChainedFields): string {
  // Only these: a row may carry more (its id, say) that the chain must not depend on.
  const covered = Object.fromEntries(CHAINED_FIELD_NAMES.map((name) => [name, fields[name]]));
  return createHash('sha256').update(canonicalJson(covered), 'utf8').digest('hex');
}

/** The link the next event of a chain whose head is `head` gets. */
export function nextLink(
  head: ChainHead,
  event: Omit<ChainedFields, 'seq' | 'prevHash'>,
): { seq: number; prevHash: string | null; hash: string } {
  const seq = head.seq + 1;
  return { seq, prevHash: head.hash, hash: hashAuditEvent({ ...event, seq, prevHash: head.hash }) };
}

/**
 * RFC 8785 canonical JSON of a JSON value. Values that are not JSON (undefined, Date, Map) are
 * refused rather than silently turned into something the database would hand back differently.
 */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return JSON.stringify(value);
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`canonicalJson: ${value} is not a JSON number`);
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const members = Object.keys(value)
      .sort()
      .map((name) => `${JSON.stringify(name)}:${canonicalJson((value as Record<string, unknown>)[name])}`);
    return `{${members.join(',')}}`;
  }
  throw new TypeError(`canonicalJson: a ${Object.prototype.toString.call(value)} is not a JSON value`);
}

/** An audit event as the chain check reads it. */
export interface StoredLink extends Omit<ChainedFields, 'seq' | 'prevHash'> {
  /** The row's id in audit_events, to name it in a report. */
  id: number;
  seq: number | null;
  prevHash: string | null;
  hash: string | null;
}

export type ChainBreakKind = 'unchained' | 'edited' | 'deleted' | 'head_mismatch';

/** The first thing wrong with a key set's chain, in words that say what happened and what to do (the caller names the key set). */
export interface ChainBreak {
  kind: ChainBreakKind;
  /** The event at fault or where the gap shows; absent when only the head disagrees. */
  seq?: number;
  id?: number;
  message: string;
}

const RESTORE = 'compare audit_events with a backup and find out who had write access to the database';

/**
 * The first break in a key set's chain, or null when every event hashes to what it stores, the seqs
 * run 1, 2, 3 … without a gap, each event names its predecessor's hash, and the head names the last.
 * `links` must be in seq order, rows without a seq last.
 */
export function findChainBreak(links: readonly StoredLink[], head: ChainHead): ChainBreak | null {
  let previous: { id: number; seq: number; hash: string } | undefined;
  for (const link of links) {
    const { id, seq, hash } = link;
    if (seq === null || hash === null) {
      return {
        kind: 'unchained',
        id,
        message: `audit event row id ${id} has no seq or hash: keyturn never writes one, and the audit_events_chained constraint refuses them unless dropped; ${RESTORE}`,
      };
    }
    const expected = (previous?.seq ?? 0) + 1;
    if (seq > expected) {
      const missing = seq - 1 === expected ? `seq ${expected} is` : `seqs ${expected} to ${seq - 1} are`;
      return {
        kind: 'deleted',
        seq,
        id,
        message: `audit event ${missing} missing before seq ${seq} (row id ${id}): deleted; ${RESTORE}`,
      };
    }
    if (seq < expected) {
      return {
        kind: 'edited',
        seq,
        id,
        message: `audit event row id ${id} repeats seq ${seq}: it was edited or inserted; ${RESTORE}`,
      };
    }
    if (hashAuditEvent({ ...link, seq }) !== hash) {
      return {
        kind: 'edited',
        seq,
        id,
        message: `audit event seq ${seq} (row id ${id}) was edited: its hash does not match its contents; ${RESTORE}`,
      };
    }
    if (previous === undefined && link.prevHash !== null) {
      return {
        kind: 'edited',
        seq,
        id,
        message: `audit event seq 1 (row id ${id}) names a predecessor: earlier events were deleted and the rest renumbered and rehashed; ${RESTORE}`,
      };
    }
    if (previous !== undefined && link.prevHash !== previous.hash) {
      // This event is intact, so its predecessor was rewritten along with its own hash.
      return {
        kind: 'edited',
        seq: previous.seq,
        id: previous.id,
        message:
          `audit event seq ${previous.seq} (row id ${previous.id}) was rewritten with a new hash: ` +
          `seq ${seq} (row id ${id}) recorded another; ${RESTORE}`,
      };
    }
    previous = { id, seq, hash };
  }
  const last = { seq: previous?.seq ?? 0, hash: previous?.hash ?? null };
  if (last.seq === head.seq && last.hash === head.hash) return null;
  const chainEnd = last.seq === 0 ? 'has no audit events' : `ends at seq ${last.seq}`;
  const recorded = `the key set's head records seq ${head.seq}${head.hash === null ? '' : ` (hash ${head.hash.slice(0, 12)}…)`}`;
  const meaning =
    head.seq > last.seq
      ? `the newest ${head.seq - last.seq} event(s) were deleted, or the head was edited`
      : head.seq < last.seq
        ? 'events were added without moving the head (not by keyturn), or the head was edited'
        : 'the newest event was rewritten with a new hash, or the head was edited';
  return { kind: 'head_mismatch', message: `the audit trail ${chainEnd} but ${recorded}: ${meaning}; ${RESTORE}` };
}
