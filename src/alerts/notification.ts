import type { Alert, Incident, NotificationKind } from '../domain/incidents';
import { hintFor } from './hints';

/**
 * One message about an incident, as every channel receives it: the alert, where the incident stands,
 * what to check, and a link to the key set's workflow. It travels through workflow history to the
 * delivery activities, so it holds no secret (channels are named, their URLs stay in the worker).
 */
export interface AlertNotification extends Alert {
  kind: NotificationKind;
  /** The same for every message about one incident, so that a receiver can thread them. */
  incidentId: string;
  openedAt: number;
  /** When this message was decided, on the raising workflow's clock. */
  at: number;
  /** This is the incident's n-th message (1: its opening; the resolution counts too). */
  sequence: number;
  /** What an operator should check first. */
  hint: string;
  /** The key set's workflow in the Temporal Web UI, when KEYTURN_UI_URL is set. */
  workflowUrl?: string;
}

/** Where the Temporal Web UI is: a base URL and the namespace keyturn runs in. */
export interface WebUi {
  url: string;
  namespace: string;
}

/** The message `kind` about `incident` (as it was before a resolution closed it), raised by `alert` at `at`. */
export function notificationFor(
  alert: Alert,
  kind: NotificationKind,
  incident: Incident,
  at: number,
  webUi?: WebUi,
): AlertNotification {
  return {
    ...alert,
    kind,
    incidentId: `${alert.keySetId}/${alert.incident}/${new Date(incident.openedAt).toISOString()}`,
    openedAt: incident.openedAt,
    at,
    sequence: kind === 'resolved' ? incident.notifications + 1 : incident.notifications,
    hint: hintFor(alert),
    ...(webUi && { workflowUrl: workflowUrl(webUi, alert.workflowId) }),
  };
}

/** The Web UI page of one workflow (the Web UI's own URL scheme). */
function workflowUrl(webUi: WebUi, workflowId: string): string {
  return `${webUi.url}/namespaces/${encodeURIComponent(webUi.namespace)}/workflows/${encodeURIComponent(workflowId)}`;
}

/**
 * The JSON object ALERT_WEBHOOK_URL receives (documented in the README): every field is always
 * present (null when it does not apply), times are ISO 8601 UTC, and `version` changes only when
 * a field changes meaning.
 */
export function webhookPayload(n: AlertNotification): Record<string, unknown> {
  return {
    source: 'keyturn',
    version: 1,
    status: n.status,
    kind: n.kind,
    incidentId: n.incidentId,
    incident: n.incident,
    keySetId: n.keySetId,
    kid: n.kid ?? null,
    step: n.step,
    summary: n.summary,
    error: n.error ?? null,
    code: n.code ?? null,
    failures: n.failures ?? null,
    hint: n.hint,
    openedAt: new Date(n.openedAt).toISOString(),
    at: new Date(n.at).toISOString(),
    sequence: n.sequence,
    workflowId: n.workflowId,
    workflowUrl: n.workflowUrl ?? null,
  };
}
