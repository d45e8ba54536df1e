/**
 * Alerts and the incidents they belong to. An alert says that something about a key set is wrong
 * (`firing`) or fine again (`resolved`); every alert about the same thing belongs to one incident,
 * which is announced once when it opens, reminded of at an interval while it lasts, and announced
 * once more when it resolves. Pure: the key set workflow keeps its incidents in its own state, the
 * supervisor keeps its incidents in PostgreSQL; both decide with `applyAlert`.
 */

/** Something an operator should know about a key set. */
export interface Alert {
  keySetId: string;
  /** The incident it belongs to, one open at a time per key set: see the *Incident names below. */
  incident: string;
  status: 'firing' | 'resolved';
  /** The lifecycle step concerned (`promote`, `generateNext`, ...), `propagation`, or `supervisor`. */
  step: string;
  /** What failed (or recovered), in one sentence. */
  summary: string;
  kid?: string;
  /** The error as it was reported (never key material). */
  error?: string;
  /** The KeyturnError code or invariant code behind it, which picks what the message says to check. */
  code?: string;
  /** Consecutive failures so far. */
  failures?: number;
  /** The key set's workflow, which the message links to in the Web UI. */
  workflowId: string;
}

/** An open incident: what was announced about it so far. Times are epoch milliseconds. */
export interface Incident {
  key: string;
  openedAt: number;
  /** When its last message (the opening or a reminder) went out. */
  notifiedAt: number;
  /** Messages sent about it so far. */
  notifications: number;
}

/** Which message an alert calls for. */
export type NotificationKind = 'opened' | 'reminder' | 'resolved';

export interface IncidentChange {
  /** The incident after the alert: null once resolved, or when a resolution found nothing open. */
  incident: Incident | null;
  /** The message to send; null when the alert repeats an incident announced less than the reminder interval ago. */
  notify: NotificationKind | null;
}

/** A key set's steps keep failing; one incident however many steps fail in a row, until one succeeds. */
export const STEP_FAILURE_INCIDENT = 'step-failure';

const PROPAGATION = 'propagation:';

/** A next key waits at the propagation gate because a JWKS URL does not list it yet. */
export function propagationIncident(kid: string): string {
  return `${PROPAGATION}${kid}`;
}

/** The kid a propagation incident is about; undefined for any other incident. */
export function propagationIncidentKid(incident: string): string | undefined {
  return incident.startsWith(PROPAGATION) ? incident.slice(PROPAGATION.length) : undefined;
}

/** The supervisor found an invariant broken (for one key when the violation names one). */
export function invariantIncident(code: string, kid?: string): string {
  return kid === undefined ? `invariant:${code}` : `invariant:${code}:${kid}`;
}

/** The supervisor found the key set's workflow not running and started it again. */
export const WORKFLOW_STOPPED_INCIDENT = 'workflow-stopped';

/**
 * What `alert` does to the incident `open` (null when none is open) at `now`: a first firing opens
 * and announces it; a firing `reminderMs` or more after the last message sends a reminder; a
 * resolution closes and announces an open incident. A firing at the very instant of the last message
 * is the same alert again (a retried activity), so it is announced again rather than lost.
 */
export function applyAlert(
  open: Incident | null,
  alert: Pick<Alert, 'incident' | 'status'>,
  now: number,
  reminderMs: number,
): IncidentChange {
  if (alert.status === 'resolved') return { incident: null, notify: open ? 'resolved' : null };
  if (open === null)
    return { incident: { key: alert.incident, openedAt: now, notifiedAt: now, notifications: 1 }, notify: 'opened' };
  if (now === open.notifiedAt) return { incident: open, notify: open.notifications === 1 ? 'opened' : 'reminder' };
  if (now - open.notifiedAt >= reminderMs) {
    return { incident: { ...open, notifiedAt: now, notifications: open.notifications + 1 }, notify: 'reminder' };
  }
  return { incident: open, notify: null };
}

/** What kind of problem an incident is, as keyturn_open_incidents counts and Prometheus' rules page on it. */
export type IncidentKind = 'step_failure' | 'promotion_held' | 'invariant_broken' | 'workflow_stopped';

export const INCIDENT_KINDS: readonly IncidentKind[] = [
  'step_failure',
  'promotion_held',
  'invariant_broken',
  'workflow_stopped',
];

/** The kind of the incident named `incident` (one of the names above); undefined for any other name. */
export function incidentKind(incident: string): IncidentKind | undefined {
  if (incident === STEP_FAILURE_INCIDENT) return 'step_failure';
  if (incident === WORKFLOW_STOPPED_INCIDENT) return 'workflow_stopped';
  if (propagationIncidentKid(incident) !== undefined) return 'promotion_held';
  if (incident.startsWith('invariant:')) return 'invariant_broken';
  return undefined;
}
