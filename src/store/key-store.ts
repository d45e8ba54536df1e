import type { Pool, PoolClient } from 'pg';
import type { KekRing } from '../crypto/kek';
import { CustodyRegistry, SEALED } from '../custody/custody-registry';
import type { CustodyKey } from '../custody/key-custody';
import type { SigningAlgorithm } from '../domain/algorithms';
import type { CustodySettings } from '../domain/custody-settings';
import { KeyturnError } from '../domain/errors';
import type { ChangeTrigger } from '../domain/key-set-state';
import {
  FINAL_STATES,
  KEY_TRANSITIONS,
  STATE_ENTERED_AT,
  toKeyTimeline,
  type KeyState,
  type KeyTimeline,
  type KeyTransition,
  type KeyWindows,
  type LiveKeyState,
} from '../domain/lifecycle';
import { changedPolicyFields, type KeySetPolicy } from '../domain/policy';
import { appendAuditEvent, type AuditEventKind } from './audit-log';
import { lockKeySet, notifyKeyChange } from './key-set-changes';
import { KEY_COLUMNS, LIVE_KEYS, toStoredKey } from './stored-keys';
import { inTransaction } from './transaction';

/**
 * Where the store reads the time it stamps on a change. The worker's clock in production; a
 * time-skipping test passes the test server's, so that stamps agree with the workflow's timers.
 */
export type Clock = () => number | Promise<number>;

export interface KeyStoreOptions {
  clock?: Clock;
  /** Where keys are generated and destroyed: by default, sealed keys with `kekRing` and the KMS and PKCS#11 backends as configured by the environment. */
  custody?: CustodyRegistry;
  /** Told of a key generated in a KMS or token that was not stored and could not be destroyed there: it is left for an operator. */
  onOrphanedKey?: (orphan: OrphanedKey) => void;
}

/** A key left in its custody, with why; its KMS tags (or its token label) name its key set too. */
export interface OrphanedKey {
  keySetId: string;
  kid: string;
  custody: CustodySettings;
  handle: string;
  error: unknown;
}

/** Who changes a key set and why; `operationId` makes the change idempotent. When is the store's to say. */
export interface KeyChange {
  operationId: string;
  keySetId: string;
  trigger: ChangeTrigger;
  actor: string;
  reason: string;
}

export interface Promotion {
  active: KeyTimeline;
  /** The key active until now, in its grace period from the same instant. */
  demoted: KeyTimeline | null;
}

/** A key to move into its grace period, and for how long it then verifies. */
export interface Demotion {
  kid: string;
  graceMs: number;
}

/**
 * A key set's first key, asked for with its registration: its algorithm, the token lifetime it signs
 * under, and why (the audit trail records its generation and promotion as a bootstrap).
 */
export interface FirstKey {
  algorithm: SigningAlgorithm;
  tokenTtlMs: number;
  cause: Pick<KeyChange, 'operationId' | 'trigger' | 'actor' | 'reason'>;
}

/** A key pair just generated in custody, with the settings of that custody; `stored` once its row is written. */
interface NewKey extends CustodyKey {
  custody: CustodySettings;
  stored?: boolean;
}

/** Operator actions that change no key but belong in the audit trail. */
export type OperatorAction = 'paused' | 'resumed' | 'rotation_requested';

/** The audit event that records each transition. */
const TRANSITION_EVENTS: Record<KeyTransition, AuditEventKind> = {
  promote: 'promoted',
  demote: 'demoted',
  withdraw: 'withdrawn',
  retire: 'retired',
  destroy: 'destroyed',
  revoke: 'revoked',
};

/** The column that stamps when a key entered `state` (`activatedAt` → `activated_at`). */
const enteredAtColumn = (state: KeyState) => STATE_ENTERED_AT[state].replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * PostgreSQL is the source of truth for key material and states. Every change is one transaction
 * that locks the key set, stamps the change with the store's clock once the lock is held (so a
 * recorded time is never earlier than the change became possible), records its audit event and
 * operation id, and announces itself on KEY_CHANGES_CHANNEL; replaying an operation id returns the
 * first result, times included, and changes nothing.
 */
export class KeyStore {
  /** The time each change is stamped with. */
  readonly clock: Clock;
  /** The custody backends keys are generated in, signed with and destroyed by. */
  readonly custody: CustodyRegistry;
  readonly #onOrphanedKey: KeyStoreOptions['onOrphanedKey'];

  constructor(
    /** The database; callers also reach the tables beside the keys through it (incidents, metrics, the CLI's reads). */
    readonly pool: Pool,
    /** The KEKs new private keys are sealed under (the current one) and stored ones opened with. */
    readonly kekRing: KekRing,
    options: KeyStoreOptions = {},
  ) {
    this.clock = options.clock ?? Date.now;
    this.custody = options.custody ?? new CustodyRegistry({ kekRing });
    this.#onOrphanedKey = options.onOrphanedKey;
  }

  /**
   * Creates the key set or records the workflow's policy where the stored one differs, takes a
   * decommissioned key set back into service when the workflow serves it again (`inService`), and
   * returns the live keys for the workflow to resume from. With `firstKey`, a key set that has neither
   * an active nor a next key gets its first key, generated and active, in the same transaction (its
   * audit events under the bootstrap's own operation id): with no active key nothing signs, so no
   * verifier holds a token the new key could be refused for, and it signs at once (lifecycle.ts). A
   * key set found with keys keeps them; the key generated for it is dropped.
   */
  async registerKeySet(
    change: Omit<KeyChange, 'operationId'>,
    policy: KeySetPolicy,
    options: { inService: boolean; firstKey?: FirstKey },
  ): Promise<KeyTimeline[]> {
    const firstKey = options.firstKey;
    if (firstKey === undefined) return this.#register(change, policy, options.inService);
    // Generated before the transaction, like any key: generation must not hold the key set's lock.
    return this.#withNewKey(change.keySetId, firstKey.algorithm, policy.custody, (first) =>
      this.#register(change, policy, options.inService, { ...firstKey, key: first }),
    );
  }

  async #register(
    change: Omit<KeyChange, 'operationId'>,
    policy: KeySetPolicy,
    inService: boolean,
    first?: FirstKey & { key: NewKey },
  ): Promise<KeyTimeline[]> {
    return inTransaction(this.pool, async (tx) => {
      // Read (and lock) the stored policy first: a CTE in the upsert would see the row it changes.
      const stored = await tx.query<{ policy: KeySetPolicy; same: boolean; decommissioned: boolean }>(
        'SELECT policy, policy = $2::jsonb AS same, decommissioned_at IS NOT NULL AS decommissioned FROM key_sets WHERE id = $1 FOR UPDATE',
        [change.keySetId, JSON.stringify(policy)],
      );
      const previous = stored.rows[0];
      const at = await this.clock();
      let changed = false;
      if (previous === undefined || !previous.same) {
        await tx.query(
          `INSERT INTO key_sets (id, policy) VALUES ($1, $2)
           ON CONFLICT (id) DO UPDATE SET policy = EXCLUDED.policy, updated_at = now()`,
          [change.keySetId, JSON.stringify(policy)],
        );
        const event = previous === undefined ? 'registered' : 'policy_changed';
        await appendAuditEvent(tx, {
          ...change,
          at,
          event,
          details: { policy, ...(previous && { previous: previous.policy }) },
        });
        changed = true;
      }
      if (previous?.decommissioned && inService) {
        await tx.query('UPDATE key_sets SET decommissioned_at = NULL WHERE id = $1', [change.keySetId]);
        await appendAuditEvent(tx, { ...change, at, event: 'recommissioned' });
        changed = true;
      }
      const live = (await tx.query(LIVE_KEYS, [change.keySetId])).rows.map(toStoredKey).map(toKeyTimeline);
      if (first && !live.some((k) => k.state === 'active' || k.state === 'next')) {
        const bootstrap = { ...change, ...first.cause };
        await this.insertNextKey(tx, bootstrap, at, first.key);
        live.push(
          await this.transition(
            tx,
            bootstrap,
            at,
            first.key.kid,
            'promote',
            { token_ttl_ms: first.tokenTtlMs },
            { from: 'next' },
          ),
        );
        changed = true;
      }
      // The JWKS cache-control and the key ring's token lifetime follow the policy.
      if (changed) await notifyKeyChange(tx, change.keySetId);
      return live;
    });
  }

  /** Generates a key pair in the custody the key set's policy names and stores it as the `next` key. */
  async addNextKey(change: KeyChange, algorithm: SigningAlgorithm): Promise<KeyTimeline> {
    const { rows } = await this.pool.query<{ custody: CustodySettings | null }>(
      `SELECT policy->'custody' AS custody FROM key_sets WHERE id = $1`,
      [change.keySetId],
    );
    // Generated before the transaction: generation is CPU work or a round trip, and must not hold the key set's lock.
    return this.#withNewKey(change.keySetId, algorithm, rows[0]?.custody ?? undefined, (key) =>
      this.#addNextKey(change, key),
    );
  }

  async #addNextKey(change: KeyChange, key: NewKey): Promise<KeyTimeline> {
    return this.applyChange(change, 'generate', async (tx, at) => {
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
      await this.insertNextKey(tx, change, at, key);
      const timeline: KeyTimeline = { kid: key.kid, alg: key.alg, state: 'next', createdAt: at };
      return timeline;
    });
  }

  /**
   * Generates a key in `settings`' custody and hands it to `store`; a key that `store` did not keep
   * (the transaction failed, the change was a replay, the key set had keys already) is destroyed in its
   * custody again, so that a KMS or a token gathers no keys keyturn does not know.
   */
  async #withNewKey<T>(
    keySetId: string,
    algorithm: SigningAlgorithm,
    settings: CustodySettings | undefined,
    store: (key: NewKey) => Promise<T>,
  ): Promise<T> {
    const custody = await this.custody.get(settings);
    const key: NewKey = { ...(await custody.generate(algorithm, { keySetId })), custody: settings ?? SEALED };
    let result: T;
    try {
      result = await store(key);
    } catch (error) {
      await this.#dropUnstored(key, keySetId);
      throw error;
    }
    if (!key.stored) await this.#dropUnstored(key, keySetId);
    return result;
  }

  async #dropUnstored(key: NewKey, keySetId: string): Promise<void> {
    if (key.custody.backend === 'sealed') return; // nothing outside this process holds it
    try {
      // A commit that failed on the way back may have stored it all the same: such a key is kept.
      const { rowCount } = await this.pool.query('SELECT 1 FROM signing_keys WHERE key_set_id = $1 AND kid = $2', [
        keySetId,
        key.kid,
      ]);
      if (rowCount === 0) await (await this.custody.get(key.custody)).destroy({ ...key, keySetId });
    } catch (error) {
      // Left in custody for an operator to remove: KMS tags name its key set and kid, a PKCS#11 label its key set.
      this.#onOrphanedKey?.({ keySetId, kid: key.kid, custody: key.custody, handle: key.handle, error });
    }
  }

  /** Stores a generated key as the `next` key, with its `generated` audit event. */
  private async insertNextKey(tx: PoolClient, change: KeyChange, at: number, key: NewKey): Promise<void> {
    const sealed = key.custody.backend === 'sealed';
    await tx.query(
      `INSERT INTO signing_keys (key_set_id, kid, alg, state, public_jwk, private_key, kek_id, custody, custody_handle, created_at)
       VALUES ($1, $2, $3, 'next', $4, $5, $6, $7, $8, $9)`,
      [
        change.keySetId,
        key.kid,
        key.alg,
        JSON.stringify(key.publicJwk),
        key.sealed?.sealed ?? null,
        key.sealed?.kekId ?? null,
        JSON.stringify(key.custody),
        sealed ? null : key.handle,
        new Date(at),
      ],
    );
    await recordWritten(tx, change.keySetId, key.kid);
    await appendAuditEvent(tx, {
      ...change,
      at,
      kid: key.kid,
      event: 'generated',
      toState: 'next',
      details: sealed
        ? { alg: key.alg, kekId: key.sealed?.kekId }
        : { alg: key.alg, custody: key.custody.backend, handle: key.handle },
    });
    key.stored = true;
  }

  /**
   * Records that the next key `kid` is listed at every JWKS URL (`urls`) as of now, and that it may
   * sign once `waitMs` has passed since, and not before `notBefore`.
   */
  async markListed(
    change: KeyChange,
    kid: string,
    listing: { waitMs: number; notBefore: number; urls: string[] },
  ): Promise<KeyTimeline> {
    return this.applyChange(change, 'publish', async (tx, at) => {
      await this.lockKeyIn(tx, change, kid, ['next'], 'record the listing of');
      const promotableAt = Math.max(at + listing.waitMs, listing.notBefore);
      await tx.query('UPDATE signing_keys SET listed_at = $3, promotable_at = $4 WHERE key_set_id = $1 AND kid = $2', [
        change.keySetId,
        kid,
        new Date(at),
        new Date(promotableAt),
      ]);
      const listed = await recordWritten(tx, change.keySetId, kid);
      await appendAuditEvent(tx, {
        ...change,
        at,
        kid,
        event: 'published',
        details: { urls: listing.urls, promotableAt: new Date(promotableAt).toISOString() },
      });
      return listed;
    });
  }

  /**
   * Makes the next key `kid` active, signing tokens of up to `tokenTtlMs`, and moves the key active
   * until now, if any, into its grace period for `demotedGraceMs`.
   */
  async promoteNextKey(
    change: KeyChange,
    kid: string,
    windows: { tokenTtlMs: number; demotedGraceMs: number },
  ): Promise<Promotion> {
    return this.applyChange(change, 'promote', async (tx, at) => {
      const active = await tx.query<{ kid: string }>(
        `SELECT kid FROM signing_keys WHERE key_set_id = $1 AND state = 'active'`,
        [change.keySetId],
      );
      const demotedKid = active.rows[0]?.kid ?? null;
      await this.lockKeyIn(tx, change, kid, KEY_TRANSITIONS.promote.from, 'promote');
      // Demote first: the one-active index would refuse the promotion otherwise.
      const demoted =
        demotedKid === null
          ? null
          : await this.demote(tx, change, at, { kid: demotedKid, graceMs: windows.demotedGraceMs }, { from: 'active' });
      return {
        active: await this.transition(
          tx,
          change,
          at,
          kid,
          'promote',
          { token_ttl_ms: windows.tokenTtlMs },
          { from: 'next' },
        ),
        demoted,
      };
    });
  }

  /** Takes a next key that never signed out of the JWKS (its algorithm is no longer the policy's): it retires. */
  async withdrawKey(change: KeyChange, kid: string): Promise<KeyTimeline> {
    return this.applyChange(change, 'withdraw', async (tx, at) => {
      return this.transition(tx, change, at, kid, 'withdraw');
    });
  }

  /**
   * Starts a key set's wind-down: the given active and next keys move into their grace period (they
   * retire and are destroyed on schedule) and the set is marked decommissioned. Returns those keys.
   */
  async windDown(change: KeyChange, demotions: Demotion[]): Promise<KeyTimeline[]> {
    return this.applyChange(change, 'wind-down', async (tx, at) => {
      const demoted: KeyTimeline[] = [];
      for (const demotion of demotions) {
        demoted.push(await this.demote(tx, change, at, demotion));
      }
      await tx.query('UPDATE key_sets SET decommissioned_at = $2 WHERE id = $1', [change.keySetId, new Date(at)]);
      await appendAuditEvent(tx, { ...change, at, event: 'decommissioned' });
      return demoted;
    });
  }

  /** Takes a decommissioned key set back into service; its keys already winding down run out as planned. */
  async recommission(change: KeyChange): Promise<void> {
    await this.applyChange(change, 'recommission', async (tx, at) => {
      await tx.query('UPDATE key_sets SET decommissioned_at = NULL WHERE id = $1', [change.keySetId]);
      await appendAuditEvent(tx, { ...change, at, event: 'recommissioned' });
      return null;
    });
  }

  /**
   * Records a new policy and the key windows it moves (never earlier: see windowsAfterPolicyChange),
   * with the fields before and after in the audit event. Returns the live keys.
   */
  async recordPolicy(change: KeyChange, policy: KeySetPolicy, windows: KeyWindows[]): Promise<KeyTimeline[]> {
    return this.applyChange(change, 'policy', async (tx, at) => {
      const { rows } = await tx.query<{ policy: KeySetPolicy }>('SELECT policy FROM key_sets WHERE id = $1', [
        change.keySetId,
      ]);
      const previous = rows[0].policy;
      await tx.query('UPDATE key_sets SET policy = $2, updated_at = now() WHERE id = $1', [
        change.keySetId,
        JSON.stringify(policy),
      ]);
      for (const w of windows) {
        await tx.query(
          `UPDATE signing_keys SET promotable_at = COALESCE($3, promotable_at), token_ttl_ms = COALESCE($4, token_ttl_ms),
             grace_ends_at = COALESCE($5, grace_ends_at) WHERE key_set_id = $1 AND kid = $2`,
          [
            change.keySetId,
            w.kid,
            w.promotableAt === undefined ? null : new Date(w.promotableAt),
            w.tokenTtlMs ?? null,
            w.graceEndsAt === undefined ? null : new Date(w.graceEndsAt),
          ],
        );
        await recordWritten(tx, change.keySetId, w.kid);
      }
      const fields = changedPolicyFields(previous, policy);
      await appendAuditEvent(tx, {
        ...change,
        at,
        event: 'policy_changed',
        details: { fields, policy, previous, windows },
      });
      return (await tx.query(LIVE_KEYS, [change.keySetId])).rows.map(toStoredKey).map(toKeyTimeline);
    });
  }

  /** Records an operator action that changes no key (a pause, a resume, a rotation asked for). */
  async recordOperatorAction(
    change: KeyChange,
    action: OperatorAction,
    details: Record<string, unknown> = {},
  ): Promise<void> {
    await this.applyChange(change, action, async (tx, at) => {
      await appendAuditEvent(tx, { ...change, at, event: action, details });
      return null;
    });
  }

  /** A grace key stops verifying: it leaves the JWKS. */
  async retireKey(change: KeyChange, kid: string): Promise<KeyTimeline> {
    return this.applyChange(change, 'retire', async (tx, at) => {
      return this.transition(tx, change, at, kid, 'retire');
    });
  }

  /**
   * Erases a retired key's private part; its metadata and audit trail stay. A key held in a KMS or on a
   * token is destroyed there first: the row says destroyed only once its custody has done so.
   */
  async destroyKey(change: KeyChange, kid: string): Promise<void> {
    const released = await this.#releaseFromCustody(change.keySetId, kid, [
      ...KEY_TRANSITIONS.destroy.from,
      'destroyed',
    ]);
    await this.applyChange(change, 'destroy', async (tx, at) => {
      await this.transition(tx, change, at, kid, 'destroy');
      if (released) await appendAuditEvent(tx, { ...change, at, kid, event: 'custody_destroyed', details: released });
      return null;
    });
  }

  /** Takes a key out of service at once: out of the JWKS, private part erased. Returns the state it left. */
  async revokeKey(change: KeyChange, kid: string): Promise<{ previousState: LiveKeyState }> {
    // Out of service first, whatever its custody says: a KMS or a token that cannot be reached must not
    // keep a revoked key signing. Then destroyed there too; a retry of a failed release repeats both.
    const revoked = await this.#revoke(change, kid);
    const released = await this.#releaseFromCustody(change.keySetId, kid, ['revoked']);
    if (released) {
      await inTransaction(this.pool, async (tx) => {
        await lockKeySet(tx, change.keySetId);
        const at = await this.clock();
        const { rowCount } = await tx.query(
          'UPDATE signing_keys SET custody_released_at = $3 WHERE key_set_id = $1 AND kid = $2 AND custody_released_at IS NULL',
          [change.keySetId, kid, new Date(at)],
        );
        if (rowCount === 0) return; // a retry found it released already
        await recordWritten(tx, change.keySetId, kid);
        await appendAuditEvent(tx, { ...change, at, kid, event: 'custody_destroyed', details: released });
      });
    }
    return revoked;
  }

  /**
   * Destroys the key's private half in its KMS or token if the key is in one of `states` and is held
   * there still; answers which custody and handle it did that in, for the audit trail. A sealed key's
   * private part goes with its row's final transition instead.
   */
  async #releaseFromCustody(
    keySetId: string,
    kid: string,
    states: readonly KeyState[],
  ): Promise<{ custody: string; handle: string } | undefined> {
    const { rows } = await this.pool.query<{
      state: KeyState;
      alg: SigningAlgorithm;
      custody: CustodySettings;
      custody_handle: string;
    }>(
      `SELECT state, alg, custody, custody_handle FROM signing_keys
        WHERE key_set_id = $1 AND kid = $2 AND custody_handle IS NOT NULL AND custody_released_at IS NULL`,
      [keySetId, kid],
    );
    const key = rows[0];
    if (key === undefined || !states.includes(key.state)) return undefined;
    await (await this.custody.get(key.custody)).destroy({ keySetId, kid, alg: key.alg, handle: key.custody_handle });
    return { custody: key.custody.backend, handle: key.custody_handle };
  }

  async #revoke(change: KeyChange, kid: string): Promise<{ previousState: LiveKeyState }> {
    return this.applyChange(change, 'revoke', async (tx, at) => {
      const previousState = await this.lockKeyIn(tx, change, kid, KEY_TRANSITIONS.revoke.from, 'revoke');
      await this.transition(
        tx,
        change,
        at,
        kid,
        'revoke',
        { revocation_reason: change.reason },
        { from: previousState },
      );
      return { previousState };
    });
  }

  private async applyChange<T>(
    change: KeyChange,
    kind: string,
    apply: (tx: PoolClient, at: number) => Promise<T>,
  ): Promise<T> {
    return inTransaction(this.pool, async (tx) => {
      await lockKeySet(tx, change.keySetId);
      const done = await tx.query<{ result: T }>(
        'SELECT result FROM key_operations WHERE operation_id = $1 AND key_set_id = $2',
        [change.operationId, change.keySetId],
      );
      if (done.rowCount) return done.rows[0].result;
      // Read with the key set locked: no change of this key set can commit between the stamp and this one's commit.
      const result = await apply(tx, await this.clock());
      await tx.query('INSERT INTO key_operations (operation_id, key_set_id, kind, result) VALUES ($1, $2, $3, $4)', [
        change.operationId,
        change.keySetId,
        kind,
        JSON.stringify(result),
      ]);
      await notifyKeyChange(tx, change.keySetId);
      return result;
    });
  }

  /** Locks the key's row and checks it is in one of `allowed` (else ERR_KEY_STATE_CONFLICT naming `action`); returns its state. */
  private async lockKeyIn<S extends KeyState>(
    tx: PoolClient,
    change: KeyChange,
    kid: string,
    allowed: readonly S[],
    action: string,
  ): Promise<S> {
    const { rows } = await tx.query<{ state: KeyState }>(
      'SELECT state FROM signing_keys WHERE key_set_id = $1 AND kid = $2 FOR UPDATE',
      [change.keySetId, kid],
    );
    if (rows.length === 0) {
      throw new KeyturnError('ERR_KID_UNKNOWN', `key set "${change.keySetId}" has no key "${kid}"`, {
        keySetId: change.keySetId,
        kid,
      });
    }
    const state = rows[0].state;
    if (!(allowed as readonly KeyState[]).includes(state)) {
      throw new KeyturnError(
        'ERR_KEY_STATE_CONFLICT',
        `cannot ${action} key "${kid}" of key set "${change.keySetId}": it is ${state}, and ${action} needs ${allowed.join(' or ')}`,
        { keySetId: change.keySetId, kid },
      );
    }
    return state as S;
  }

  /** Moves a key into its grace period: it verifies until `graceMs` from now. */
  private async demote(
    tx: PoolClient,
    change: KeyChange,
    at: number,
    demotion: Demotion,
    known?: { from: KeyState },
  ): Promise<KeyTimeline> {
    return this.transition(
      tx,
      change,
      at,
      demotion.kid,
      'demote',
      { grace_ends_at: new Date(at + demotion.graceMs) },
      known,
    );
  }

  /**
   * Performs the lifecycle transition `name` (KEY_TRANSITIONS) on key `kid`: checks and locks its state
   * (unless the caller has, passing `known.from`), stamps `at` in the column of the state it enters (and
   * `columns` beside it), and records the transition's audit event. A key entering a final state loses
   * its private part in the same statement.
   */
  private async transition(
    tx: PoolClient,
    change: KeyChange,
    at: number,
    kid: string,
    name: KeyTransition,
    columns: Record<string, unknown> = {},
    known?: { from: KeyState },
  ): Promise<KeyTimeline> {
    const { from: allowed, to } = KEY_TRANSITIONS[name];
    const from = known?.from ?? (await this.lockKeyIn(tx, change, kid, allowed, name));
    let erase = (FINAL_STATES as readonly KeyState[]).includes(to) ? ', private_key = NULL, kek_id = NULL' : '';
    // destroyKey has destroyed a custody key in its KMS or token before this.
    if (to === 'destroyed')
      erase +=
        ', custody_released_at = CASE WHEN custody_handle IS NOT NULL THEN coalesce(custody_released_at, $4) END';
    const names = Object.keys(columns);
    const more = names.map((column, i) => `, ${column} = $${i + 5}`).join('');
    await tx.query(
      `UPDATE signing_keys SET state = $3, ${enteredAtColumn(to)} = $4${erase}${more} WHERE key_set_id = $1 AND kid = $2`,
      [change.keySetId, kid, to, new Date(at), ...Object.values(columns)],
    );
    const moved = await recordWritten(tx, change.keySetId, kid);
    await appendAuditEvent(tx, { ...change, at, kid, event: TRANSITION_EVENTS[name], fromState: from, toState: to });
    return moved;
  }
}

/**
 * Records the key's row as keyturn has just written it (migration 008), so that a later change by
 * anything else shows as a fingerprint that no longer matches (see fleet-reading.ts); returns the key as written.
 */
async function recordWritten(tx: PoolClient, keySetId: string, kid: string): Promise<KeyTimeline> {
  const { rows } = await tx.query(
    `UPDATE signing_keys k SET written_fingerprint = keyturn_key_fingerprint(k) WHERE key_set_id = $1 AND kid = $2 RETURNING ${KEY_COLUMNS}`,
    [keySetId, kid],
  );
  return toKeyTimeline(toStoredKey(rows[0]));
}
