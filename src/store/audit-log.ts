import type { ClientBase, Pool } from 'pg';
import { KeyturnError } from '../domain/errors';
import type { ChangeTrigger } from '../domain/key-set-state';
import type { KeyState } from '../domain/lifecycle';
import {
  findChainBreak,
  nextLink,
  type ChainBreak,
  type ChainedFields,
  type ChainHead,
  type StoredLink,
} from './audit-chain';
import { afterCommit, inTransaction, transactionMemo } from './transaction';

export type AuditEventKind =
  | 'registered'
  | 'policy_changed'
  | 'generated'
  /** The propagation gate found the next key at every JWKS URL. */
  | 'published'
  | 'promoted'
  | 'demoted'
  /** A next key that never signed left the JWKS (its algorithm is no longer the policy's). */
  | 'withdrawn'
  | 'retired'
  | 'destroyed'
  | 'revoked'
  | 'paused'
  | 'resumed'
  | 'rotation_requested'
  | 'decommissioned'
  | 'recommissioned'
  /** The key set's private keys were re-sealed under the current KEK; no key or state changed. */
  | 'kek_rewrapped'
  /** A key's private half was destroyed in its KMS or token (`details`: custody, handle); KMS schedules the deletion. */
  | 'custody_destroyed'
  /** A client of `keyturn signer` may now sign for the key set (`details.client`), or no longer may. */
  | 'signer_client_added'
  | 'signer_client_revoked'
  /** `keyturn signer` refused requests for the key set (`details`: client, reason, count within a window). */
  | 'signer_denied';

export interface AuditEvent {
  keySetId: string;
  kid?: string;
  event: AuditEventKind;
  fromState?: KeyState;
  toState?: KeyState;
  /** What set the change off; `signer` for what `keyturn signer` records itself (its denials). */
  trigger: ChangeTrigger | 'signer';
  actor: string;
  reason: string;
  operationId?: string;
  /** When it happened: the commit time of the change, epoch milliseconds. */
  at: number;
  details?: Record<string, unknown>;
}

/** An appended event as its chain holds it: every hashed field, and its hash. */
export type CommittedAuditEvent = ChainedFields & { hash: string };

const committedListeners = new Set<(event: CommittedAuditEvent) => void>();

/**
 * Tells `listener` of every audit event this process appends, once its transaction has committed
 * (the process's log: every audit event is also a log line). Returns the call that stops it.
 */
export function onAuditEventCommitted(listener: (event: CommittedAuditEvent) => void): () => void {
  committedListeners.add(listener);
  return () => committedListeners.delete(listener);
}

/**
 * Appends one event inside the caller's transaction, so a change and its record commit together,
 * and chains it to the key set's previous event (audit-chain.ts). The key set row is locked here
 * (every KeyStore change has locked it already): the head it holds is read and moved by one
 * writer at a time, so seqs never repeat and no event is chained to a stale head.
 */
export async function appendAuditEvent(tx: ClientBase, e: AuditEvent): Promise<void> {
  // The head this transaction locked and moved itself, for a change that appends several events.
  const knownHead = transactionMemo<ChainHead>(tx, `audit head ${e.keySetId}`);
  const head = knownHead.get() ?? (await readHead(tx, e.keySetId));
  // Hash what the database will hand back: the details as plain JSON values (what jsonb returns)
  // and the time in whole milliseconds (what a Date holds).
  const details = JSON.parse(JSON.stringify(e.details ?? {})) as Record<string, unknown>;
  const fields = {
    keySetId: e.keySetId,
    kid: e.kid ?? null,
    event: e.event,
    fromState: e.fromState ?? null,
    toState: e.toState ?? null,
    trigger: e.trigger,
    actor: e.actor,
    reason: e.reason,
    operationId: e.operationId ?? null,
    occurredAt: new Date(e.at).getTime(),
    details,
  };
  const link = nextLink(head, fields);
  await tx.query(
    `WITH appended AS (
       INSERT INTO audit_events
         (key_set_id, kid, event, from_state, to_state, trigger, actor, reason, operation_id, occurred_at, details, seq, prev_hash, hash)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
       RETURNING key_set_id, seq, hash)
     UPDATE key_sets SET audit_head_seq = appended.seq, audit_head_hash = appended.hash FROM appended WHERE id = appended.key_set_id`,
    [
      fields.keySetId,
      fields.kid,
      fields.event,
      fields.fromState,
      fields.toState,
      fields.trigger,
      fields.actor,
      fields.reason,
      fields.operationId,
      new Date(fields.occurredAt),
      JSON.stringify(details),
      link.seq,
      link.prevHash,
      link.hash,
    ],
  );
  knownHead.set({ seq: link.seq, hash: link.hash });
  afterCommit(tx, () => {
    for (const listener of committedListeners) listener({ ...fields, ...link });
  });
}

export interface AuditRecord extends Required<Omit<AuditEvent, 'kid' | 'fromState' | 'toState' | 'operationId'>> {
  id: number;
  kid: string | null;
  fromState: KeyState | null;
  toState: KeyState | null;
  operationId: string | null;
  /** Position in the key set's chain, from 1; with the hashes, null only on a row keyturn did not write. */
  seq: number | null;
  /** The hash of event seq - 1, null for the first. */
  prevHash: string | null;
  hash: string | null;
}

const EVENT_COLUMNS = `id, key_set_id, kid, event, from_state, to_state, trigger, actor, reason, operation_id, occurred_at, details,
  seq, prev_hash, hash`;

/**
 * A key set's audit trail, oldest first; with `since` (epoch ms), the events that happened from then on.
 * An unregistered key set throws ERR_KEYSET_NOT_FOUND (a registered one may have no events yet).
 */
export async function readAuditTrail(
  db: Pick<ClientBase, 'query'>,
  keySetId: string,
  since?: number,
): Promise<AuditRecord[]> {
  const registered = await db.query('SELECT 1 FROM key_sets WHERE id = $1', [keySetId]);
  if (!registered.rowCount) throw keySetNotRegistered(keySetId);
  const { rows } = await db.query<EventRow>(
    `SELECT ${EVENT_COLUMNS} FROM audit_events WHERE key_set_id = $1 AND ($2::timestamptz IS NULL OR occurred_at >= $2) ORDER BY id`,
    [keySetId, since === undefined ? null : new Date(since)],
  );
  return rows.map(toRecord);
}

/** What `keyturn audit verify` found for one key set. */
export interface AuditChainVerification {
  keySetId: string;
  /** How many events the key set's trail holds. */
  events: number;
  /** The head stored on the key set row. */
  head: ChainHead;
  /** The first break, or null when the chain is intact. */
  problem: ChainBreak | null;
}

/**
 * Checks the hash chain of one key set, or of every registered key set in id order. Reads in one
 * snapshot, so a change committing meanwhile cannot look like a head that disagrees.
 * An unregistered `keySetId` throws ERR_KEYSET_NOT_FOUND.
 */
export async function verifyAuditTrail(pool: Pool, keySetId?: string): Promise<AuditChainVerification[]> {
  return inTransaction(
    pool,
    async (client) => {
      const { rows: heads } = await client.query<{
        id: string;
        audit_head_seq: string;
        audit_head_hash: string | null;
      }>(`SELECT id, audit_head_seq, audit_head_hash FROM key_sets WHERE $1::text IS NULL OR id = $1 ORDER BY id`, [
        keySetId ?? null,
      ]);
      if (keySetId !== undefined && heads.length === 0) throw keySetNotRegistered(keySetId);
      const results: AuditChainVerification[] = [];
      for (const row of heads) {
        const head = { seq: Number(row.audit_head_seq), hash: row.audit_head_hash };
        const { rows } = await client.query<EventRow>(
          `SELECT ${EVENT_COLUMNS} FROM audit_events WHERE key_set_id = $1 ORDER BY seq NULLS LAST, id`,
          [row.id],
        );
        const links = rows.map(toLink);
        results.push({ keySetId: row.id, events: links.length, head, problem: findChainBreak(links, head) });
      }
      return results;
    },
    'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
  );
}

/**
 * Chains the events that have no hash yet (those written before migration 3), in id order after
 * each key set's head. Runs inside that migration's transaction; touches only unchained rows, so
 * running it again changes nothing. Returns how many events it chained.
 */
export async function chainUnchainedEvents(tx: ClientBase): Promise<number> {
  const { rows: keySets } = await tx.query<{ key_set_id: string }>(
    'SELECT DISTINCT key_set_id FROM audit_events WHERE hash IS NULL ORDER BY key_set_id',
  );
  let chained = 0;
  for (const { key_set_id: keySetId } of keySets) {
    let head = await readHead(tx, keySetId);
    const { rows } = await tx.query<EventRow>(
      `SELECT ${EVENT_COLUMNS} FROM audit_events WHERE key_set_id = $1 AND hash IS NULL ORDER BY id`,
      [keySetId],
    );
    const links = rows.map((row) => {
      const link = nextLink(head, toLink(row));
      head = { seq: link.seq, hash: link.hash };
      return { id: row.id, ...link };
    });
    await tx.query(
      `UPDATE audit_events a SET seq = l.seq, prev_hash = l.prev_hash, hash = l.hash
         FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[]) AS l (id, seq, prev_hash, hash)
        WHERE a.id = l.id`,
      [links.map((l) => l.id), links.map((l) => l.seq), links.map((l) => l.prevHash), links.map((l) => l.hash)],
    );
    await tx.query('UPDATE key_sets SET audit_head_seq = $2, audit_head_hash = $3 WHERE id = $1', [
      keySetId,
      head.seq,
      head.hash,
    ]);
    chained += links.length;
  }
  return chained;
}

/** Locks the key set row and reads its chain head. */
async function readHead(tx: ClientBase, keySetId: string): Promise<ChainHead> {
  const { rows } = await tx.query<{ audit_head_seq: string; audit_head_hash: string | null }>(
    'SELECT audit_head_seq, audit_head_hash FROM key_sets WHERE id = $1 FOR UPDATE',
    [keySetId],
  );
  if (rows.length === 0) {
    throw new KeyturnError(
      'ERR_KEYSET_NOT_FOUND',
      `key set "${keySetId}" is not registered: its audit event has no chain to join`,
      { keySetId },
    );
  }
  return { seq: Number(rows[0].audit_head_seq), hash: rows[0].audit_head_hash };
}

function keySetNotRegistered(keySetId: string): KeyturnError {
  return new KeyturnError(
    'ERR_KEYSET_NOT_FOUND',
    `key set "${keySetId}" is not registered, so it has no audit trail: check the id (\`keyturn status\` lists the key sets)`,
    { keySetId },
  );
}

interface EventRow {
  id: string;
  key_set_id: string;
  kid: string | null;
  event: AuditEventKind;
  from_state: KeyState | null;
  to_state: KeyState | null;
  trigger: ChangeTrigger;
  actor: string;
  reason: string;
  operation_id: string | null;
  occurred_at: Date;
  details: Record<string, unknown>;
  seq: string | null;
  prev_hash: string | null;
  hash: string | null;
}

function toRecord(r: EventRow): AuditRecord {
  return {
    id: Number(r.id),
    keySetId: r.key_set_id,
    kid: r.kid,
    event: r.event,
    fromState: r.from_state,
    toState: r.to_state,
    trigger: r.trigger,
    actor: r.actor,
    reason: r.reason,
    operationId: r.operation_id,
    at: r.occurred_at.getTime(),
    details: r.details,
    seq: r.seq === null ? null : Number(r.seq),
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

/** A row as the chain sees it: the fields its hash covers, its links, and its id to name it. */
function toLink(r: EventRow): StoredLink {
  const { at, ...record } = toRecord(r);
  return { ...record, occurredAt: at };
}
