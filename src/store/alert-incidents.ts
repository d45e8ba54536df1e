import type { Pool } from 'pg';
import { applyAlert, type Alert, type Incident, type NotificationKind } from '../domain/incidents';
import { inTransaction } from './transaction';

/** One supervisor round as the incident table sees it. */
export interface SupervisionRound {
  /** What the round found: one firing alert per incident. */
  firing: Alert[];
  /** Open incidents the round could not judge (their key set was not checked), left as they are. */
  unjudged(keySetId: string, incident: string): boolean;
  /** The round's time on the supervisor workflow's clock; the same when an attempt is retried. */
  at: number;
  reminderMs: number;
}

/** What a round did to one incident, and the message that calls for (null: suppressed as a repeat). */
export interface IncidentNotice {
  /** The firing alert; for a resolution, the incident's last firing alert marked resolved. */
  alert: Alert;
  kind: NotificationKind | null;
  /** The incident as it stands, or as it stood before a resolution closed it. */
  incident: Incident;
}

interface IncidentRow {
  id: string;
  key_set_id: string;
  incident: string;
  opened_at: Date;
  notified_at: Date;
  notifications: number;
  resolved_at: Date | null;
  alert: Alert;
}

/**
 * The supervisor's incidents in PostgreSQL (`alert_incidents`). A round is one transaction: every
 * finding opens, reminds of or repeats its incident, and every open incident the round no longer
 * finds is resolved. A retried round (same `at`) announces again what its first attempt announced.
 */
export class AlertIncidentStore {
  constructor(private readonly pool: Pool) {}

  async recordRound(round: SupervisionRound): Promise<IncidentNotice[]> {
    const at = new Date(round.at);
    return inTransaction(this.pool, async (tx) => {
      const { rows } = await tx.query<IncidentRow>(
        `SELECT id, key_set_id, incident, opened_at, notified_at, notifications, resolved_at, alert
           FROM alert_incidents WHERE resolved_at IS NULL OR resolved_at = $1 ORDER BY id FOR UPDATE`,
        [at],
      );
      const key = (keySetId: string, incident: string) => `${keySetId}\u0000${incident}`;
      const open = new Map(rows.filter((r) => r.resolved_at === null).map((r) => [key(r.key_set_id, r.incident), r]));
      const notices: IncidentNotice[] = [];

      for (const alert of round.firing) {
        const row = open.get(key(alert.keySetId, alert.incident));
        open.delete(key(alert.keySetId, alert.incident));
        const change = applyAlert(row ? toIncident(row) : null, alert, round.at, round.reminderMs);
        const incident = change.incident!;
        if (row === undefined) {
          await tx.query(
            `INSERT INTO alert_incidents (key_set_id, incident, opened_at, notified_at, notifications, alert)
             VALUES ($1, $2, $3, $3, $4, $5)`,
            [alert.keySetId, alert.incident, at, incident.notifications, alert],
          );
        } else {
          await tx.query('UPDATE alert_incidents SET notified_at = $2, notifications = $3, alert = $4 WHERE id = $1', [
            row.id,
            new Date(incident.notifiedAt),
            incident.notifications,
            alert,
          ]);
        }
        notices.push({ alert, kind: change.notify, incident });
      }

      for (const row of open.values()) {
        if (round.unjudged(row.key_set_id, row.incident)) continue;
        await tx.query('UPDATE alert_incidents SET resolved_at = $2 WHERE id = $1', [row.id, at]);
        notices.push(resolution(row));
      }
      // Resolved by an earlier attempt of this very round, whose answer was lost.
      notices.push(...rows.filter((r) => r.resolved_at !== null).map(resolution));
      return notices;
    });
  }
}

function toIncident(row: IncidentRow): Incident {
  return {
    key: row.incident,
    openedAt: row.opened_at.getTime(),
    notifiedAt: row.notified_at.getTime(),
    notifications: row.notifications,
  };
}

function resolution(row: IncidentRow): IncidentNotice {
  return { alert: { ...row.alert, status: 'resolved' }, kind: 'resolved', incident: toIncident(row) };
}
