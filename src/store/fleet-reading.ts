import type { Pool } from 'pg';
import type { KeySetPolicy } from '../domain/policy';
import { KEY_COLUMNS, LIVE_STATES_SQL, toStoredKey, type KeyRow, type StoredKey } from './stored-keys';

/** What PostgreSQL knows of one key set in service, read with every other in one query. */
export interface KeySetRecord {
  id: string;
  policy: KeySetPolicy;
  /** Its live keys, and any other key that still holds a private part, oldest first. */
  keys: StoredKey[];
  /** Kids whose row is no longer what keyturn last wrote (changed by hand, restored from a backup...). */
  rewritten: string[];
  /** The pause the audit trail shows in force (its last pause not followed by a resume), or null. */
  paused: { reason: string; since: number; requestedBy: string } | null;
  /** The rotation the audit trail shows asked for and not yet followed by a promotion, or null. */
  rotation: { reason: string; requestedAt: number; requestedBy: string; immediately: boolean } | null;
  /** Incidents the key set's workflow holds open (a step that keeps failing, a promotion held at the propagation gate). */
  openIncidents: number;
}

interface RecordRow extends Partial<KeyRow> {
  set_id: string;
  policy: KeySetPolicy;
  rewritten: boolean | null;
  pause_event: 'paused' | 'resumed' | null;
  pause_reason: string | null;
  pause_actor: string | null;
  pause_at: Date | null;
  rotation_reason: string | null;
  rotation_actor: string | null;
  rotation_at: Date | null;
  rotation_immediately: boolean | null;
  open_incidents: number;
}

/**
 * Every key set not decommissioned with its keys, in one statement (one snapshot, one round trip),
 * so that the supervisor, `verify` and `status` read 10,000 key sets as fast as a few: what their
 * workflows should agree with, which keys were changed outside keyturn, and the pause and rotation
 * the audit trail records, by key set id.
 */
export async function readKeySetRecords(pool: Pick<Pool, 'query'>): Promise<KeySetRecord[]> {
  const { rows } = await pool.query<RecordRow>(`
    SELECT ks.id AS set_id, ks.policy, k.*,
           pause.event AS pause_event, pause.reason AS pause_reason, pause.actor AS pause_actor, pause.occurred_at AS pause_at,
           rotation.reason AS rotation_reason, rotation.actor AS rotation_actor, rotation.occurred_at AS rotation_at,
           (rotation.details ->> 'immediately')::boolean AS rotation_immediately,
           (SELECT count(*) FROM key_set_incidents i WHERE i.key_set_id = ks.id)::int AS open_incidents
      FROM key_sets ks
      LEFT JOIN LATERAL (
        SELECT event, reason, actor, occurred_at FROM audit_events e
         WHERE e.key_set_id = ks.id AND e.event IN ('paused', 'resumed') ORDER BY e.id DESC LIMIT 1) pause ON true
      LEFT JOIN LATERAL (
        SELECT reason, actor, occurred_at, details FROM audit_events e
         WHERE e.key_set_id = ks.id AND e.event = 'rotation_requested'
           AND NOT EXISTS (SELECT 1 FROM audit_events p WHERE p.key_set_id = ks.id AND p.id > e.id AND p.event = 'promoted')
         ORDER BY e.id DESC LIMIT 1) rotation ON true
      LEFT JOIN (
        SELECT ${KEY_COLUMNS}, written_fingerprint IS DISTINCT FROM keyturn_key_fingerprint(signing_keys) AS rewritten
          FROM signing_keys WHERE state IN ${LIVE_STATES_SQL} OR private_key IS NOT NULL
            OR (custody_handle IS NOT NULL AND custody_released_at IS NULL)) k
        ON k.key_set_id = ks.id
     WHERE ks.decommissioned_at IS NULL
     ORDER BY ks.id, k.created_at, k.kid`);
  const records: KeySetRecord[] = [];
  for (const row of rows) {
    let record = records.at(-1);
    if (record?.id !== row.set_id) {
      record = {
        id: row.set_id,
        policy: row.policy,
        keys: [],
        rewritten: [],
        paused:
          row.pause_event === 'paused'
            ? { reason: row.pause_reason!, since: row.pause_at!.getTime(), requestedBy: row.pause_actor! }
            : null,
        rotation:
          row.rotation_at === null
            ? null
            : {
                reason: row.rotation_reason!,
                requestedAt: row.rotation_at.getTime(),
                requestedBy: row.rotation_actor!,
                immediately: row.rotation_immediately === true,
              },
        openIncidents: row.open_incidents,
      };
      records.push(record);
    }
    // A key set without keys comes back once, with the key's columns null.
    if (row.kid == null) continue;
    record.keys.push(toStoredKey(row as KeyRow));
    if (row.rewritten) record.rewritten.push(row.kid);
  }
  return records;
}
