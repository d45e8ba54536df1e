import type { Pool } from 'pg';
import type { Incident } from '../domain/incidents';

/** An incident that is open now, whoever holds it. */
export interface OpenIncident {
  keySetId: string;
  incident: string;
}

/**
 * Open incidents as PostgreSQL knows them: those of the key set workflows (`key_set_incidents`,
 * written here as their alerts open and resolve them) and the supervisor's (`alert_incidents`).
 */
export class OpenIncidentStore {
  constructor(private readonly pool: Pool) {}

  /** Records a key set workflow's incident as its latest alert left it: open (`incident`), or resolved (null). */
  async record(keySetId: string, key: string, step: string, incident: Incident | null): Promise<void> {
    if (incident === null) {
      await this.pool.query('DELETE FROM key_set_incidents WHERE key_set_id = $1 AND incident = $2', [keySetId, key]);
      return;
    }
    await this.pool.query(
      `INSERT INTO key_set_incidents (key_set_id, incident, step, opened_at) VALUES ($1, $2, $3, $4)
       ON CONFLICT (key_set_id, incident) DO UPDATE SET step = EXCLUDED.step, opened_at = EXCLUDED.opened_at`,
      [keySetId, key, step, new Date(incident.openedAt)],
    );
  }

  /** Every open incident, the workflows' and the supervisor's. */
  async list(): Promise<OpenIncident[]> {
    const { rows } = await this.pool.query<{ key_set_id: string; incident: string }>(
      `SELECT key_set_id, incident FROM key_set_incidents
       UNION SELECT key_set_id, incident FROM alert_incidents WHERE resolved_at IS NULL
       ORDER BY 1, 2`,
    );
    return rows.map((r) => ({ keySetId: r.key_set_id, incident: r.incident }));
  }
}
