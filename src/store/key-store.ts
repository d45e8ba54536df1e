import type { Pool, PoolClient } from 'pg';
import type { JWK } from 'jose';
import { generateSigningKey, type PublicJwk } from '../crypto/generate';
import { openPrivateKey, sealPrivateKey } from '../crypto/envelope';
import type { KekRing } from '../crypto/kek';
import type { SigningAlgorithm } from '../domain/algorithms';
import { KeyturnError } from '../domain/errors';
import type { ChangeTrigger } from '../domain/keyset-state';
import type { KeyState, KeyTimeline, LiveKeyState } from '../domain/lifecycle';
import type { KeySetPolicy } from '../domain/policy';
import { appendAuditEvent, type AuditEventKind } from './audit-log';
import { listPublishedJwks } from './published-keys';
import { inTransaction } from './transaction';

/** Channel on which every committed key change is announced, with the key set id as payload. */
export const KEY_CHANGES_CHANNEL = 'keyturn_key_changes';

/** Who changed a key set, when (the workflow's clock) and why; `operationId` makes the change idempotent. */
export interface KeyChange {
  operationId: string;
  keySetId: string;
  at: number;
  trigger: ChangeTrigger;
  actor: string;
  reason: string;
}

/** A key as stored, without its private part. */
export interface StoredKey {
  keySetId: string;
  kid: string;
  alg: SigningAlgorithm;
  state: KeyState;
  publicJwk: PublicJwk;
  hasPrivateKey: boolean;
  kekId: string | null;
  createdAt: number;
  activatedAt: number | null;
  demotedAt: number | null;
  retiredAt: number | null;
  destroyedAt: number | null;
  revokedAt: number | null;
}

export interface Promotion {
  activeKid: string;
  demotedKid: string | null;
}

/** What re-sealing one key set's private keys under the current KEK did. */
export interface KekRewrap {
  keySetId: string;
  /** The KEK ids the re-sealed keys were under, in key order; empty when there was nothing to re-seal. */
  from: string[];
  /** The current KEK's id. */
  to: string;
  /** The keys re-sealed, oldest first. */
  kids: string[];
}

/** One KEK id as the stored keys know it: how many private keys it seals, and in which key sets. */
export interface KekUsage {
  kekId: string;
  privateKeys: number;
  keySetIds: string[];
}

/** Each target state: the audit event that records reaching it and the column that stamps when. */
const TRANSITIONS: Record<Exclude<KeyState, 'next'>, { event: AuditEventKind; stampColumn: string }> = {
  active: { event: 'promoted', stampColumn: 'activated_at' },
  grace: { event: 'demoted', stampColumn: 'demoted_at' },
  retired: { event: 'retired', stampColumn: 'retired_at' },
  destroyed: { event: 'destroyed', stampColumn: 'destroyed_at' },
  revoked: { event: 'revoked', stampColumn: 'revoked_at' },
};

const KEY_COLUMNS = `key_set_id, kid, alg, state, public_jwk, private_key IS NOT NULL AS has_private_key, kek_id,
  created_at, activated_at, demoted_at, retired_at, destroyed_at, revoked_at`;

/**
 * PostgreSQL is the source of truth for key material and states. Every change is one transaction
 * that locks the key set, records its audit event and operation id, and announces itself on
 * KEY_CHANGES_CHANNEL; replaying an operation id returns the first result and changes nothing.
 */
export class KeyStore {
  constructor(
    /** The database, for the tables beside the keys (the supervisor's alert incidents). */
    readonly pool: Pool,
    private readonly keks: KekRing,
  ) {}

  /** Creates the key set or records a changed policy; returns its live keys for the workflow to resume from. */
  async registerKeySet(
    change: Omit<KeyChange, 'operationId'>,
    policy: KeySetPolicy,
  ): Promise<KeyTimeline[]> {
    return inTransaction(this.pool, async (tx) => {
      // Read (and lock) the stored policy first: a CTE in the upsert would see the row it changes.
      const stored = await tx.query<{ policy: KeySetPolicy; same: boolean }>(
        'SELECT policy, policy = $2::jsonb AS same FROM key_sets WHERE id = $1 FOR UPDATE',
        [change.keySetId, JSON.stringify(policy)],
      );
      const previous = stored.rows[0];
      const changed = previous === undefined || !previous.same;
      if (changed) {
        await tx.query(
          `INSERT INTO key_sets (id, policy) VALUES ($1, $2)
           ON CONFLICT (id) DO UPDATE SET policy = EXCLUDED.policy, updated_at = now()`,
          [change.keySetId, JSON.stringify(policy)],
        );
      }
      if (changed) {
        const event = previous === undefined ? 'registered' : 'policy_changed';
        await appendAuditEvent(tx, { ...change, event, details: { policy, ...(previous && { previous: previous.policy }) } });
        // The JWKS cache-control and the key ring's token lifetime follow the policy.
        await tx.query('SELECT pg_notify($1, $2)', [KEY_CHANGES_CHANNEL, change.keySetId]);
      }
      const keys = await tx.query(`SELECT ${KEY_COLUMNS} FROM signing_keys
        WHERE key_set_id = $1 AND state IN ('next', 'active', 'grace', 'retired') ORDER BY created_at, kid`, [change.keySetId]);
      return keys.rows.map(toStoredKey).map(toTimeline);
    });
  }

  /** Generates a key pair, seals its private part under the current KEK and stores it as the `next` key. */
  async addNextKey(change: KeyChange, algorithm: SigningAlgorithm): Promise<KeyTimeline> {
    // Generated before the transaction: key generation is CPU work and must not hold the key set's lock.
    const key = await generateSigningKey(algorithm);
    const { kekId, sealed } = sealPrivateKey(key.privateJwk, this.keks, { keySetId: change.keySetId, kid: key.kid });
    return this.applyChange(change, 'generate', async (tx) => {
      const existing = await tx.query<{ kid: string }>(
        `SELECT kid FROM signing_keys WHERE key_set_id = $1 AND state = 'next'`,
        [change.keySetId],
      );
      if (existing.rowCount) {
        throw new KeyturnError(
          'ERR_KEY_STATE_CONFLICT',
          `key set "${change.keySetId}" already has a next key (${existing.rows[0].kid}); promote or revoke it first`,
          { keySetId: change.keySetId, kid: existing.rows[0].kid },
        );
      }
      await tx.query(
        `INSERT INTO signing_keys (key_set_id, kid, alg, state, public_jwk, private_key, kek_id, created_at)
         VALUES ($1, $2, $3, 'next', $4, $5, $6, $7)`,
        [change.keySetId, key.kid, key.alg, JSON.stringify(key.publicJwk), sealed, kekId, new Date(change.at)],
      );
      await appendAuditEvent(tx, { ...change, kid: key.kid, event: 'generated', toState: 'next', details: { alg: key.alg, kekId } });
      const timeline: KeyTimeline = { kid: key.kid, alg: key.alg, state: 'next', createdAt: change.at };
      return timeline;
    });
  }

  /** Makes the next key `kid` active and moves the key active until now, if any, into its grace period. */
  async promoteNextKey(change: KeyChange, kid: string): Promise<Promotion> {
    return this.applyChange(change, 'promote', async (tx) => {
      const active = await tx.query<{ kid: string }>(
        `SELECT kid FROM signing_keys WHERE key_set_id = $1 AND state = 'active'`,
        [change.keySetId],
      );
      const demotedKid = active.rows[0]?.kid ?? null;
      await this.assertState(tx, change, kid, ['next'], 'promote');
      // Demote first: the one-active index would refuse the promotion otherwise.
      if (demotedKid !== null) await this.moveKey(tx, change, demotedKid, 'active', 'grace');
      await this.moveKey(tx, change, kid, 'next', 'active');
      return { activeKid: kid, demotedKid };
    });
  }

  /**
   * Starts a key set's wind-down: its active and next keys move into their grace period (they
   * retire and are destroyed on schedule) and the set is marked decommissioned. Returns the kids demoted.
   */
  async windDown(change: KeyChange): Promise<string[]> {
    return this.applyChange(change, 'wind-down', async (tx) => {
      const { rows } = await tx.query<{ kid: string; state: 'active' | 'next' }>(
        `SELECT kid, state FROM signing_keys WHERE key_set_id = $1 AND state IN ('active', 'next') ORDER BY created_at`,
        [change.keySetId],
      );
      for (const key of rows) await this.moveKey(tx, change, key.kid, key.state, 'grace');
      await tx.query('UPDATE key_sets SET decommissioned_at = $2 WHERE id = $1', [change.keySetId, new Date(change.at)]);
      return rows.map((r) => r.kid);
    });
  }

  /** Every registered key set with its policy; decommissioned ones say so. */
  async listKeySets(): Promise<{ id: string; policy: KeySetPolicy; decommissioned: boolean }[]> {
    const { rows } = await this.pool.query<{ id: string; policy: KeySetPolicy; decommissioned: boolean }>(
      'SELECT id, policy, decommissioned_at IS NOT NULL AS decommissioned FROM key_sets ORDER BY id',
    );
    return rows;
  }

  /** A grace key stops verifying: it leaves the JWKS. */
  async retireKey(change: KeyChange, kid: string): Promise<void> {
    await this.applyChange(change, 'retire', async (tx) => {
      await this.assertState(tx, change, kid, ['grace'], 'retire');
      await this.moveKey(tx, change, kid, 'grace', 'retired');
      return null;
    });
  }

  /** Erases a retired key's private part; its metadata and audit trail stay. */
  async destroyKey(change: KeyChange, kid: string): Promise<void> {
    await this.applyChange(change, 'destroy', async (tx) => {
      await this.assertState(tx, change, kid, ['retired'], 'destroy');
      await this.moveKey(tx, change, kid, 'retired', 'destroyed');
      return null;
    });
  }

  /** Takes a key out of service at once: out of the JWKS, private part erased. Returns the state it left. */
  async revokeKey(change: KeyChange, kid: string): Promise<{ previousState: LiveKeyState }> {
    return this.applyChange(change, 'revoke', async (tx) => {
      const previousState = (await this.assertState(tx, change, kid, ['next', 'active', 'grace', 'retired'], 'revoke')) as LiveKeyState;
      await this.moveKey(tx, change, kid, previousState, 'revoked');
      return { previousState };
    });
  }

  /** Every key of a key set, oldest first, without private parts. */
  async listKeys(keySetId: string): Promise<StoredKey[]> {
    const { rows } = await this.pool.query(
      `SELECT ${KEY_COLUMNS} FROM signing_keys WHERE key_set_id = $1 ORDER BY created_at, kid`,
      [keySetId],
    );
    return rows.map(toStoredKey);
  }

  /** The public JWKs verifiers should trust: the next, active and grace keys. */
  async listPublishedJwks(keySetId: string): Promise<PublicJwk[]> {
    return listPublishedJwks(this.pool, keySetId);
  }

  /** The key set's policy as last registered, or undefined for an unknown key set. */
  async getPolicy(keySetId: string): Promise<KeySetPolicy | undefined> {
    const { rows } = await this.pool.query<{ policy: KeySetPolicy }>('SELECT policy FROM key_sets WHERE id = $1', [keySetId]);
    return rows[0]?.policy;
  }

  /**
   * Re-seals under the current KEK every private key of the key set that another KEK seals (same
   * key set and kid as authenticated data) and records one `kek_rewrapped` event. Keys already
   * under the current KEK and erased ones are left alone, so a second run changes and records nothing.
   * A key under a KEK the ring lacks throws ERR_KEK_UNKNOWN, a damaged one ERR_KEY_DECRYPTION_FAILED,
   * and the key set is left as it was.
   */
  async rewrapKeySet(change: Omit<KeyChange, 'operationId'>): Promise<KekRewrap> {
    const { keySetId } = change;
    return inTransaction(this.pool, async (tx) => {
      // Every other change locks the key set first, so no key can be added, moved or erased meanwhile.
      await lockKeySet(tx, keySetId);
      const current = this.keks.current.id;
      const { rows } = await tx.query<{ kid: string; private_key: Buffer; kek_id: string }>(
        `SELECT kid, private_key, kek_id FROM signing_keys
          WHERE key_set_id = $1 AND private_key IS NOT NULL AND kek_id <> $2 ORDER BY created_at, kid`,
        [keySetId, current],
      );
      const rewrap: KekRewrap = {
        keySetId,
        from: [...new Set(rows.map((r) => r.kek_id))],
        to: current,
        kids: rows.map((r) => r.kid),
      };
      if (rows.length === 0) return rewrap;
      for (const row of rows) {
        const context = { keySetId, kid: row.kid };
        const privateJwk = openPrivateKey(row.private_key, row.kek_id, this.keks, context);
        const { kekId, sealed } = sealPrivateKey(privateJwk, this.keks, context);
        await tx.query('UPDATE signing_keys SET private_key = $3, kek_id = $4 WHERE key_set_id = $1 AND kid = $2', [
          keySetId,
          row.kid,
          sealed,
          kekId,
        ]);
      }
      const { from, to, kids } = rewrap;
      await appendAuditEvent(tx, { ...change, event: 'kek_rewrapped', details: { from, to, kids } });
      // Neither the JWKS nor any signing key changed, but the event is a new version of the key set
      // (key-set-versions.ts): announced, the key rings and JWKS caches reload it now instead of
      // taking it for a lost notification at their next poll.
      await tx.query('SELECT pg_notify($1, $2)', [KEY_CHANGES_CHANNEL, keySetId]);
      return rewrap;
    });
  }

  /** Every KEK id that seals a stored private key, with how many it seals and in which key sets. */
  async countPrivateKeysByKek(): Promise<KekUsage[]> {
    const { rows } = await this.pool.query<{ kek_id: string; private_keys: number; key_set_ids: string[] }>(
      `SELECT kek_id, count(*)::int AS private_keys, array_agg(DISTINCT key_set_id ORDER BY key_set_id) AS key_set_ids
         FROM signing_keys WHERE private_key IS NOT NULL GROUP BY kek_id ORDER BY kek_id`,
    );
    return rows.map((r) => ({ kekId: r.kek_id, privateKeys: r.private_keys, keySetIds: r.key_set_ids }));
  }

  /**
   * The active key with its private part opened, for signing; undefined while the key set has no
   * active key. The caller holds the private JWK in memory only and must never log or return it.
   */
  async openActiveKey(keySetId: string): Promise<{ kid: string; alg: SigningAlgorithm; privateJwk: JWK } | undefined> {
    const { rows } = await this.pool.query<{ kid: string; alg: SigningAlgorithm; private_key: Buffer; kek_id: string }>(
      `SELECT kid, alg, private_key, kek_id FROM signing_keys WHERE key_set_id = $1 AND state = 'active'`,
      [keySetId],
    );
    const row = rows[0];
    if (row === undefined) return undefined;
    return { kid: row.kid, alg: row.alg, privateJwk: openPrivateKey(row.private_key, row.kek_id, this.keks, { keySetId, kid: row.kid }) };
  }

  private async applyChange<T>(change: KeyChange, kind: string, apply: (tx: PoolClient) => Promise<T>): Promise<T> {
    return inTransaction(this.pool, async (tx) => {
      await lockKeySet(tx, change.keySetId);
      const done = await tx.query<{ result: T }>('SELECT result FROM key_operations WHERE operation_id = $1 AND key_set_id = $2', [
        change.operationId,
        change.keySetId,
      ]);
      if (done.rowCount) return done.rows[0].result;
      const result = await apply(tx);
      await tx.query('INSERT INTO key_operations (operation_id, key_set_id, kind, result) VALUES ($1, $2, $3, $4)', [
        change.operationId,
        change.keySetId,
        kind,
        JSON.stringify(result),
      ]);
      await tx.query('SELECT pg_notify($1, $2)', [KEY_CHANGES_CHANNEL, change.keySetId]);
      return result;
    });
  }

  /** Locks the key's row and checks it is in one of `allowed`; returns its state. */
  private async assertState(tx: PoolClient, change: KeyChange, kid: string, allowed: KeyState[], action: string): Promise<KeyState> {
    const { rows } = await tx.query<{ state: KeyState }>(
      'SELECT state FROM signing_keys WHERE key_set_id = $1 AND kid = $2 FOR UPDATE',
      [change.keySetId, kid],
    );
    if (rows.length === 0) {
      throw new KeyturnError('ERR_KID_UNKNOWN', `key set "${change.keySetId}" has no key "${kid}"`, { keySetId: change.keySetId, kid });
    }
    if (!allowed.includes(rows[0].state)) {
      throw new KeyturnError(
        'ERR_KEY_STATE_CONFLICT',
        `cannot ${action} key "${kid}" of key set "${change.keySetId}": it is ${rows[0].state}, and ${action} needs ${allowed.join(' or ')}`,
        { keySetId: change.keySetId, kid },
      );
    }
    return rows[0].state;
  }

  private async moveKey(tx: PoolClient, change: KeyChange, kid: string, from: KeyState, to: Exclude<KeyState, 'next'>): Promise<void> {
    const { event, stampColumn } = TRANSITIONS[to];
    const erase = to === 'destroyed' || to === 'revoked' ? ', private_key = NULL, kek_id = NULL' : '';
    const reason = to === 'revoked' ? ', revocation_reason = $5' : '';
    await tx.query(
      `UPDATE signing_keys SET state = $3, ${stampColumn} = $4${erase}${reason} WHERE key_set_id = $1 AND kid = $2`,
      [change.keySetId, kid, to, new Date(change.at), ...(to === 'revoked' ? [change.reason] : [])],
    );
    await appendAuditEvent(tx, { ...change, kid, event, fromState: from, toState: to });
  }

}

/** Locks the key set's row, which serialises every change to the key set; ERR_KEYSET_NOT_FOUND if it is not registered. */
async function lockKeySet(tx: PoolClient, keySetId: string): Promise<void> {
  const keySet = await tx.query('SELECT 1 FROM key_sets WHERE id = $1 FOR UPDATE', [keySetId]);
  if (!keySet.rowCount) throw new KeyturnError('ERR_KEYSET_NOT_FOUND', `key set "${keySetId}" is not registered`, { keySetId });
}

interface KeyRow {
  key_set_id: string;
  kid: string;
  alg: SigningAlgorithm;
  state: KeyState;
  public_jwk: PublicJwk;
  has_private_key: boolean;
  kek_id: string | null;
  created_at: Date;
  activated_at: Date | null;
  demoted_at: Date | null;
  retired_at: Date | null;
  destroyed_at: Date | null;
  revoked_at: Date | null;
}

const ms = (d: Date | null): number | null => (d === null ? null : d.getTime());

function toStoredKey(r: KeyRow): StoredKey {
  return {
    keySetId: r.key_set_id,
    kid: r.kid,
    alg: r.alg,
    state: r.state,
    publicJwk: r.public_jwk,
    hasPrivateKey: r.has_private_key,
    kekId: r.kek_id,
    createdAt: r.created_at.getTime(),
    activatedAt: ms(r.activated_at),
    demotedAt: ms(r.demoted_at),
    retiredAt: ms(r.retired_at),
    destroyedAt: ms(r.destroyed_at),
    revokedAt: ms(r.revoked_at),
  };
}

/** A live key (next, active, grace, retired) as the workflow and the lifecycle rules see it. */
export function toTimeline(k: StoredKey): KeyTimeline {
  return {
    kid: k.kid,
    alg: k.alg,
    state: k.state as LiveKeyState,
    createdAt: k.createdAt,
    ...(k.activatedAt === null ? {} : { activatedAt: k.activatedAt }),
    ...(k.demotedAt === null ? {} : { demotedAt: k.demotedAt }),
    ...(k.retiredAt === null ? {} : { retiredAt: k.retiredAt }),
  };
}
