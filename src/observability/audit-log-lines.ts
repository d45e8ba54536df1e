import { onAuditEventCommitted, type CommittedAuditEvent } from '../store/audit-log';
import type { Logger } from '../logger';

/**
 * Every audit event this process commits, also as one info-level JSON line (`"msg":"audit event"`),
 * so that a log pipeline (ELK, Splunk) sees each rotation, revocation and operator action as it
 * happens. The event is under `audit`, every field always present (null when it does not apply):
 * keySetId, seq and hash (its place in the key set's hash chain, as `keyturn audit verify` checks it),
 * event, kid, fromState, toState, trigger, actor, reason, operationId, occurredAt (ISO 8601), details.
 * Returns the call that stops it.
 */
export function logAuditEvents(logger: Logger): () => void {
  return onAuditEventCommitted((event) =>
    logger.info({ keySetId: event.keySetId, kid: event.kid ?? null, audit: auditFields(event) }, 'audit event'),
  );
}

function auditFields(e: CommittedAuditEvent) {
  return {
    keySetId: e.keySetId,
    seq: e.seq,
    hash: e.hash,
    event: e.event,
    kid: e.kid ?? null,
    fromState: e.fromState ?? null,
    toState: e.toState ?? null,
    trigger: e.trigger,
    actor: e.actor,
    reason: e.reason,
    operationId: e.operationId ?? null,
    occurredAt: new Date(e.at).toISOString(),
    details: e.details ?? {},
  };
}
