import type { ClientBase } from 'pg';
import type { ChangeTrigger } from '../domain/keyset-state';
import type { KeyState } from '../domain/lifecycle';

export type AuditEventKind =
  | 'registered'
  | 'policy_changed'
  | 'generated'
  | 'promoted'
  | 'demoted'
  | 'retired'
  | 'destroyed'
  | 'revoked';

export interface AuditEvent {
  keySetId: string;
  kid?: string;
  event: AuditEventKind;
  fromState?: KeyState;
  toState?: KeyState;
  trigger: ChangeTrigger;
  actor: string;
  reason: string;
  operationId?: string;
  /** When it happened on the workflow's clock, epoch milliseconds. */
  at: number;
  details?: Record<string, unknown>;
}

/** Appends one event inside the caller's transaction, so a change and its record commit together. */
export async function appendAuditEvent(tx: ClientBase, e: AuditEvent): Promise<void> {
  await tx.query(
    `INSERT INTO audit_events
       (key_set_id, kid, event, from_state, to_state, trigger, actor, reason, operation_id, occurred_at, details)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
    [
      e.keySetId,
      e.kid ?? null,
      e.event,
      e.fromState ?? null,
      e.toState ?? null,
      e.trigger,
      e.actor,
      e.reason,
      e.operationId ?? null,
      new Date(e.at),
      JSON.stringify(e.details ?? {}),
    ],
  );
}

export interface AuditRecord extends Required<Omit<AuditEvent, 'kid' | 'fromState' | 'toState' | 'operationId'>> {
  id: number;
  kid: string | null;
  fromState: KeyState | null;
  toState: KeyState | null;
  operationId: string | null;
}

/** A key set's audit trail, oldest first. */
export async function readAuditTrail(db: Pick<ClientBase, 'query'>, keySetId: string): Promise<AuditRecord[]> {
  const { rows } = await db.query(
    `SELECT id, key_set_id, kid, event, from_state, to_state, trigger, actor, reason, operation_id, occurred_at, details
       FROM audit_events WHERE key_set_id = $1 ORDER BY id`,
    [keySetId],
  );
  return rows.map((r) => ({
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
    at: (r.occurred_at as Date).getTime(),
    details: r.details,
  }));
}
