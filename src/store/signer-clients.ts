import type { Pool, PoolClient } from 'pg';
import { KeyturnError } from '../domain/errors';
import type { Rate } from '../domain/rate';
import { appendAuditEvent } from './audit-log';
import { inTransaction } from './transaction';

/** Channel on which every committed change to the signing clients is announced, with the client's name as payload. */
export const SIGNER_CLIENTS_CHANNEL = 'keyturn_signer_clients';

/** A client of `keyturn signer` as stored; `secretHash` is the SHA-256 of its bearer secret, never the secret. */
export interface SignerClientRecord {
  name: string;
  secretHash: Buffer | null;
  /** The subject of the client certificate that identifies it, e.g. `CN=billing,O=Example`. */
  certSubject: string | null;
  keySetIds: string[];
  /** Claims every token of this client carries, which its requests cannot change. */
  pinnedClaims: Record<string, unknown>;
  /** Its own token bucket; null: the deployment's KEYTURN_SIGNER_RATE. */
  rate: Rate | null;
  createdAt: number;
  createdBy: string;
  expiresAt: number | null;
  revokedAt: number | null;
  revokedBy: string | null;
}

/** What `client add` stores. */
export type NewSignerClient = Pick<SignerClientRecord, 'name' | 'keySetIds' | 'pinnedClaims'> & {
  secretHash?: Buffer;
  certSubject?: string;
  rate?: Rate;
  expiresAt?: number;
  actor: string;
};

const CLIENT_COLUMNS = `name, secret_hash, cert_subject, key_set_ids, pinned_claims, rate_per_second, burst,
  created_at, created_by, expires_at, revoked_at, revoked_by`;

/**
 * Stores a new client and records it in the audit trail of each key set it may sign for, in one
 * transaction; the running signers hear of it once it commits. Throws ERR_KEYSET_NOT_FOUND for a key
 * set that is not registered and ERR_SIGNER_CLIENT_INVALID for a name (or certificate subject) in use.
 */
export async function addSignerClient(pool: Pool, client: NewSignerClient): Promise<void> {
  await inTransaction(pool, async (tx) => {
    const { rows: known } = await tx.query<{ id: string }>('SELECT id FROM key_sets WHERE id = ANY($1)', [
      client.keySetIds,
    ]);
    const missing = client.keySetIds.filter((id) => !known.some((row) => row.id === id));
    if (missing.length > 0) {
      throw new KeyturnError(
        'ERR_KEYSET_NOT_FOUND',
        `key set "${missing[0]}" is not registered: a client may sign only for key sets that exist (\`keyturn status\` lists them)`,
        { keySetId: missing[0] },
      );
    }
    try {
      await tx.query(
        `INSERT INTO signer_clients (name, secret_hash, cert_subject, key_set_ids, pinned_claims, rate_per_second, burst, created_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [
          client.name,
          client.secretHash ?? null,
          client.certSubject ?? null,
          client.keySetIds,
          JSON.stringify(client.pinnedClaims),
          client.rate?.perSecond ?? null,
          client.rate?.burst ?? null,
          client.actor,
          client.expiresAt === undefined ? null : new Date(client.expiresAt),
        ],
      );
    } catch (error) {
      if ((error as { code?: string }).code !== '23505') throw error;
      const what = (error as { constraint?: string }).constraint?.includes('subject')
        ? `the certificate subject "${client.certSubject}" already identifies a live client: revoke that one first`
        : `a client named "${client.name}" exists (or existed: a revoked client's name is not reused): choose another name`;
      throw new KeyturnError('ERR_SIGNER_CLIENT_INVALID', what, { field: 'name' });
    }
    const details = {
      client: client.name,
      keySetIds: client.keySetIds,
      // The names of the pinned claims only: their values are no business of the audit trail.
      pinnedClaims: Object.keys(client.pinnedClaims),
      authentication: [client.secretHash && 'bearer secret', client.certSubject && 'client certificate'].filter(
        Boolean,
      ),
      ...(client.certSubject !== undefined && { certSubject: client.certSubject }),
      ...(client.expiresAt !== undefined && { expiresAt: new Date(client.expiresAt).toISOString() }),
      ...(client.rate !== undefined && { rate: client.rate }),
    };
    for (const keySetId of client.keySetIds) {
      await appendAuditEvent(tx, {
        keySetId,
        event: 'signer_client_added',
        trigger: 'manual',
        actor: client.actor,
        reason: `signing client "${client.name}" may sign for this key set`,
        at: Date.now(),
        details,
      });
    }
    await notify(tx, client.name);
  });
}

/**
 * Revokes a client: the running signers refuse it as soon as they hear of the change. Recorded in the
 * audit trail of each of its key sets. Returns false if it was revoked already; ERR_SIGNER_CLIENT_UNKNOWN
 * for a name no client has.
 */
export async function revokeSignerClient(pool: Pool, name: string, actor: string, reason: string): Promise<boolean> {
  return inTransaction(pool, async (tx) => {
    const { rows } = await tx.query<{ key_set_ids: string[]; revoked_at: Date | null }>(
      'SELECT key_set_ids, revoked_at FROM signer_clients WHERE name = $1 FOR UPDATE',
      [name],
    );
    if (rows.length === 0) {
      throw new KeyturnError(
        'ERR_SIGNER_CLIENT_UNKNOWN',
        `no signing client is named "${name}": \`keyturn signer client list\` lists them`,
        { field: 'name' },
      );
    }
    if (rows[0].revoked_at !== null) return false;
    await tx.query('UPDATE signer_clients SET revoked_at = now(), revoked_by = $2 WHERE name = $1', [name, actor]);
    for (const keySetId of rows[0].key_set_ids) {
      await appendAuditEvent(tx, {
        keySetId,
        event: 'signer_client_revoked',
        trigger: 'manual',
        actor,
        reason,
        at: Date.now(),
        details: { client: name },
      });
    }
    await notify(tx, name);
    return true;
  });
}

/** Every client, live and revoked, by name, without the hashes of their secrets. */
export async function listSignerClients(pool: Pool): Promise<Omit<SignerClientRecord, 'secretHash'>[]> {
  const { rows } = await pool.query<ClientRow>(`SELECT ${CLIENT_COLUMNS} FROM signer_clients ORDER BY name`);
  return rows.map(toListedClient);
}

/** The clients that are not revoked, hashes included: what a signer authenticates against. */
export async function loadLiveSignerClients(pool: Pool): Promise<SignerClientRecord[]> {
  const { rows } = await pool.query<ClientRow>(
    `SELECT ${CLIENT_COLUMNS} FROM signer_clients WHERE revoked_at IS NULL ORDER BY name`,
  );
  return rows.map((row) => ({ ...toListedClient(row), secretHash: row.secret_hash }));
}

/** One line of a signer's denials of one client for one key set, as `signer_denied` records them. */
export interface SignerDenial {
  keySetId: string;
  /** The client's name, or null for a request that proved no client. */
  client: string | null;
  /** The problem code it was refused with, e.g. ERR_FORBIDDEN. */
  code: string;
  count: number;
  firstAt: number;
  lastAt: number;
}

/**
 * Appends `signer_denied` events, one per key set, client and reason; a key set no longer registered
 * is skipped. Nothing of a request's claims or token is recorded.
 */
export async function recordSignerDenials(pool: Pool, denials: SignerDenial[], actor: string): Promise<void> {
  if (denials.length === 0) return;
  await inTransaction(pool, async (tx) => {
    const { rows } = await tx.query<{ id: string }>('SELECT id FROM key_sets WHERE id = ANY($1)', [
      [...new Set(denials.map((d) => d.keySetId))],
    ]);
    const registered = new Set(rows.map((row) => row.id));
    for (const denial of denials.filter((d) => registered.has(d.keySetId))) {
      await appendAuditEvent(tx, {
        keySetId: denial.keySetId,
        event: 'signer_denied',
        trigger: 'signer',
        actor,
        reason: `refused ${denial.count} request${denial.count === 1 ? '' : 's'} (${denial.code})`,
        at: denial.lastAt,
        details: {
          client: denial.client,
          code: denial.code,
          count: denial.count,
          firstAt: new Date(denial.firstAt).toISOString(),
          lastAt: new Date(denial.lastAt).toISOString(),
        },
      });
    }
  });
}

async function notify(tx: PoolClient, name: string): Promise<void> {
  await tx.query('SELECT pg_notify($1, $2)', [SIGNER_CLIENTS_CHANNEL, name]);
}

interface ClientRow {
  name: string;
  secret_hash: Buffer | null;
  cert_subject: string | null;
  key_set_ids: string[];
  pinned_claims: Record<string, unknown>;
  rate_per_second: number | null;
  burst: number | null;
  created_at: Date;
  created_by: string;
  expires_at: Date | null;
  revoked_at: Date | null;
  revoked_by: string | null;
}

function toListedClient(row: ClientRow): Omit<SignerClientRecord, 'secretHash'> {
  return {
    name: row.name,
    certSubject: row.cert_subject,
    keySetIds: row.key_set_ids,
    pinnedClaims: row.pinned_claims,
    rate:
      row.rate_per_second === null || row.burst === null ? null : { perSecond: row.rate_per_second, burst: row.burst },
    createdAt: row.created_at.getTime(),
    createdBy: row.created_by,
    expiresAt: row.expires_at?.getTime() ?? null,
    revokedAt: row.revoked_at?.getTime() ?? null,
    revokedBy: row.revoked_by,
  };
}
