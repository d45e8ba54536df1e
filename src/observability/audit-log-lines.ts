import { onAuditEventCommitted, type CommittedAuditEvent } from '../store/audit-log';
import type { Logger } from '../logger';

/**
 * Every audit event this process commits, also as one info-level JSON line (`"msg":"audit event"`),
 * so that a log pipeline (ELK, Splunk) sees each rotation, revocation and operator action as it
 * happens. The event is under `audit`, every field always present (null when it does not apply):
 * every field the key set's hash chain covers (keySetId, seq, kid, event, fromState, toState, trigger,
 * actor, reason, operationId, occurredAt in ISO 8601, details, prevHash) and the event's hash, as
 * `keyturn audit verify` checks them.
 * Returns the call that stops it.
 */
export function logAuditEvents(logger: Logger): () => void {
  return onAuditEventCommitted((event) =>
    logger.info({ keySetId: event.keySetId, kid: event.kid ?? null, audit: auditFields(event) }, 'audit event'),
  );
}

/** The event as its chain holds it, the time in ISO 8601. */
function auditFields(e: CommittedAuditEvent) {
  return { ...e, occurredAt: new Date(e.occurredAt).toISOString() };
}
