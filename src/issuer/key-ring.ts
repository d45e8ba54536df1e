import { inspect } from 'node:util';
import { Pool } from 'pg';
import type { KekRing } from '../crypto/kek';
import { formatDuration, parseDuration } from '../domain/duration';
import { KeyturnError } from '../domain/errors';
import { DEFAULT_CEILINGS, policyTimings } from '../domain/policy';
import { createLogger, type Logger } from '../observability/logger';
import { connectionConfigOf, subscribeToKeyChanges, type KeyEvents } from '../store/key-events';
import { keySetVersion, listKeySetVersions } from '../store/key-set-versions';
import { KeyStore } from '../store/key-store';
import { TokenSigner } from './token-signer';

export interface KeyRingOptions {
  /** A pool to share; the ring also opens one dedicated connection to LISTEN on. */
  pool?: Pool;
  /** Or a database to open a small pool on, ended by close(). */
  databaseUrl?: string;
  /** The KEKs that open the stored private keys. */
  kekRing: KekRing;
  /** Key sets to load now, so that open() fails early on an unknown one; others load on first use. */
  keySetIds?: readonly string[];
  logger?: Logger;
  /** Interval of the polling fallback behind LISTEN/NOTIFY, in milliseconds (default 5 s). */
  pollIntervalMs?: number;
  /**
   * The deployment's KEYTURN_MAX_TOKEN_TTL_CEILING (default 1 day): no token lives longer, whatever a
   * key set's policy says (a policy may have been changed by anyone who reached Temporal or the database).
   */
  maxTokenTtlCeilingMs?: number;
}

/** Claims of a token to sign; `iat` and `exp` are the ring's to set. */
export type TokenClaims = Record<string, unknown>;

export interface SignOptions {
  /**
   * How long the token is valid: a duration such as `15m` or `90s`, or a number of seconds (the unit
   * of `iat` and `exp`). Default and ceiling: the key set's `maxTokenTtl`.
   */
  ttl?: string | number;
}

/** What a key set's slot holds once loaded: its signer (none while it has no active key) and its TTL ceiling. */
interface LoadedKeySet {
  signer: TokenSigner | undefined;
  /** The policy's maxTokenTtl, or the deployment's ceiling when that is lower (`ceilingApplies`). */
  maxTokenTtlMs: number;
  ceilingApplies: boolean;
  /** When PostgreSQL last confirmed the key set's state (the ring's clock): a load, or a poll finding no change. */
  confirmedAt: number;
}

interface KeySetSlot {
  current: LoadedKeySet | undefined;
  loading: Promise<void> | undefined;
  /** Bumped by every change notice: a load started before it must not install what it read. */
  generation: number;
  /** The key set's version as of the last completed load, for the polling fallback. */
  version: string | undefined;
}

/**
 * The issuer's key ring: signs JWTs with each key set's active key, straight from PostgreSQL.
 *
 * A change notice for a key set (LISTEN/NOTIFY, or the poll finding a new version) drops its key
 * first and then reloads it; signing waits for the reload. So a promoted key signs within a
 * database round trip of the notice, and a revoked key signs nothing once the notice is in.
 * The private keys live only in KeyObjects behind private fields: `JSON.stringify` and
 * `util.inspect` of a ring show key set ids, kids and algorithms.
 */
export class KeyRing {
  readonly #slots = new Map<string, KeySetSlot>();
  readonly #keyStore: KeyStore;
  readonly #pool: Pool;
  readonly #ownPool: Pool | undefined;
  readonly #logger: Logger;
  readonly #ceilingMs: number;
  #events: KeyEvents | undefined;
  #closed = false;

  private constructor(pool: Pool, ownPool: Pool | undefined, kekRing: KekRing, logger: Logger, ceilingMs: number) {
    this.#ceilingMs = ceilingMs;
    this.#pool = pool;
    this.#ownPool = ownPool;
    this.#keyStore = new KeyStore(pool, kekRing);
    this.#logger = logger;
  }

  /**
   * Connects, starts listening for key changes, and loads `keySetIds`. Throws ERR_KEYSET_NOT_FOUND for
   * a key set that is not registered; one without an active key yet loads, and signs once it has one.
   */
  static async open(options: KeyRingOptions): Promise<KeyRing> {
    if ((options.pool === undefined) === (options.databaseUrl === undefined)) {
      throw new TypeError('KeyRing.open needs either a pool or a databaseUrl');
    }
    const logger = options.logger ?? createLogger({ name: 'keyturn-key-ring' });
    const ownPool = options.databaseUrl === undefined ? undefined : new Pool({ connectionString: options.databaseUrl, max: 4 });
    // An idle pooled connection dying emits 'error'; unhandled, it would take the issuer down.
    ownPool?.on('error', (error) => logger.warn({ err: error }, 'an idle PostgreSQL connection failed; it will be replaced'));
    const ring = new KeyRing(options.pool ?? ownPool!, ownPool, options.kekRing, logger, options.maxTokenTtlCeilingMs ?? DEFAULT_CEILINGS.maxTokenTtlMs);
    try {
      // Listening before loading: a change committed between the two cannot go unnoticed.
      ring.#events = await subscribeToKeyChanges({
        connection: connectionConfigOf(ring.#pool),
        onChange: (keySetId) => ring.#invalidate(keySetId),
        checkAll: () => ring.#checkAll(),
        logger,
        pollIntervalMs: options.pollIntervalMs,
        applicationName: 'keyturn-key-ring',
      });
      await Promise.all((options.keySetIds ?? []).map((keySetId) => ring.#whenLoaded(keySetId)));
    } catch (error) {
      await ring.close();
      throw error;
    }
    return ring;
  }

  /**
   * A compact JWT of `claims` plus `iat` and `exp`, signed with the key set's active key; the header
   * is `{ alg, kid, typ: 'JWT' }`. Throws ERR_TOKEN_TTL_TOO_LONG for a ttl above the policy's
   * maxTokenTtl, ERR_NO_ACTIVE_KEY while the key set has no active key, ERR_KEYSET_NOT_FOUND for an
   * unknown key set, and a TypeError for claims that set `iat` or `exp` themselves.
   */
  async sign(keySetId: string, claims: TokenClaims, options: SignOptions = {}): Promise<string> {
    if (this.#closed) throw new TypeError('this KeyRing is closed');
    if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) {
      throw new TypeError('claims must be a plain object');
    }
    if (Object.hasOwn(claims, 'iat') || Object.hasOwn(claims, 'exp')) {
      throw new TypeError('claims must not set iat or exp: the key ring sets them; choose the lifetime with the ttl option');
    }
    // The hot path is synchronous up to here: a loaded key set costs no await before signing.
    const loaded = this.#slots.get(keySetId)?.current ?? (await this.#whenLoaded(keySetId));
    const signer = loaded.signer;
    if (signer === undefined) {
      throw new KeyturnError('ERR_NO_ACTIVE_KEY', `key set "${keySetId}" has no active key to sign with yet`, { keySetId });
    }
    const ttlMs = options.ttl === undefined ? loaded.maxTokenTtlMs : ttlToMs(options.ttl);
    if (ttlMs > loaded.maxTokenTtlMs) {
      const limit = formatDuration(loaded.maxTokenTtlMs);
      const what = loaded.ceilingApplies ? `this deployment's KEYTURN_MAX_TOKEN_TTL_CEILING ${limit}` : `the maxTokenTtl ${limit} of key set "${keySetId}"`;
      throw new KeyturnError(
        'ERR_TOKEN_TTL_TOO_LONG',
        `ttl ${formatDuration(ttlMs)} exceeds ${what}; ` +
          'a longer-lived token could outlive its key in the JWKS',
        { keySetId, field: 'ttl' },
      );
    }
    const now = Date.now();
    // The key may have been demoted right after the ring last knew it active, and its grace period
    // lasts maxTokenTtl plus the clock-skew margin from then at the least: a token that expires within
    // maxTokenTtl of that moment verifies for its whole life on every clock within the margin. While
    // the ring listens for changes it hears of a demotion within milliseconds (the margin covers them).
    const knownAt = this.#events?.listening ? now : loaded.confirmedAt;
    const expMs = Math.min(now + ttlMs, knownAt + loaded.maxTokenTtlMs);
    if (expMs - now < 1000) {
      throw new KeyturnError(
        'ERR_KEY_RING_STALE',
        `the key ring has not confirmed the active key of key set "${keySetId}" with PostgreSQL since ${new Date(loaded.confirmedAt).toISOString()}; ` +
          'a token signed now could outlive the key: check the database connection',
        { keySetId },
      );
    }
    // Rounded down, so that a token never outlives now + ttl (which the grace period is sized for).
    return signer.sign(claims, { iat: Math.floor(now / 1000), exp: Math.floor(expMs / 1000) });
  }

  /** The kid `sign` uses for the key set right now; undefined if not loaded or without an active key. */
  activeKid(keySetId: string): string | undefined {
    return this.#slots.get(keySetId)?.current?.signer?.kid;
  }

  /** Stops listening and polling, drops every key, and ends the pool if the ring opened it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#events?.close();
    this.#slots.clear();
    await this.#ownPool?.end();
  }

  toJSON(): { keySets: { keySetId: string; kid: string | null; alg: string | null }[] } {
    return {
      keySets: [...this.#slots].map(([keySetId, slot]) => ({
        keySetId,
        kid: slot.current?.signer?.kid ?? null,
        alg: slot.current?.signer?.alg ?? null,
      })),
    };
  }

  [inspect.custom](): string {
    const keySets = this.toJSON().keySets.map((k) => `${k.keySetId}: ${k.kid === null ? 'no key' : `${k.alg} ${k.kid}`}`);
    return `KeyRing { ${this.#closed ? 'closed' : keySets.join(', ')} }`;
  }

  /** The key set as loaded, loading it (again) as long as change notices keep superseding the load. */
  async #whenLoaded(keySetId: string): Promise<LoadedKeySet> {
    for (;;) {
      if (this.#closed) throw new TypeError('this KeyRing is closed');
      let slot = this.#slots.get(keySetId);
      if (slot === undefined) {
        slot = { current: undefined, loading: undefined, generation: 0, version: undefined };
        this.#slots.set(keySetId, slot);
      }
      if (slot.current !== undefined) return slot.current;
      await (slot.loading ?? this.#load(keySetId, slot));
    }
  }

  /** A change notice: the key goes first, then the fresh one is fetched. */
  #invalidate(keySetId: string): void {
    const slot = this.#slots.get(keySetId);
    if (slot === undefined || this.#closed) return; // a key set this ring does not sign for
    slot.current = undefined;
    slot.generation += 1;
    void this.#load(keySetId, slot).catch(() => undefined); // a signer waiting on it sees the error
  }

  #load(keySetId: string, slot: KeySetSlot): Promise<void> {
    const generation = slot.generation;
    const loading = (async () => {
      const readAt = Date.now();
      // The version first: a change committed after it shows as a newer version at the next poll.
      const version = await keySetVersion(this.#pool, keySetId);
      const policy = version === undefined ? undefined : await this.#keyStore.getPolicy(keySetId);
      if (policy === undefined) {
        throw new KeyturnError('ERR_KEYSET_NOT_FOUND', `key set "${keySetId}" is not registered`, { keySetId });
      }
      const active = await this.#keyStore.openActiveKey(keySetId);
      if (slot.generation !== generation || this.#closed) return; // superseded: a newer load is under way
      const previousKid = slot.current?.signer?.kid;
      const policyTtlMs = policyTimings(policy).maxTokenTtlMs;
      slot.current = {
        signer: active && new TokenSigner(active),
        maxTokenTtlMs: Math.min(policyTtlMs, this.#ceilingMs),
        ceilingApplies: this.#ceilingMs < policyTtlMs,
        confirmedAt: readAt,
      };
      slot.version = version;
      if (active?.kid !== previousKid) {
        this.#logger.info({ keySetId, kid: active?.kid ?? null }, active ? 'key ring signs with a new key' : 'key set has no active key');
      }
    })();
    slot.loading = loading;
    const settled = () => {
      if (slot.loading === loading) slot.loading = undefined;
    };
    loading.then(settled, (error: unknown) => {
      settled();
      // Unknown key sets are not kept: made-up ids must not grow the ring.
      if (error instanceof KeyturnError && error.code === 'ERR_KEYSET_NOT_FOUND' && slot.generation === generation) {
        if (this.#slots.get(keySetId) === slot) this.#slots.delete(keySetId);
      } else {
        this.#logger.warn({ err: error, keySetId }, 'cannot load the active key of a key set');
      }
    });
    return loading;
  }

  /**
   * The polling fallback: every key set whose version moved since its load is treated as notified;
   * one that has not moved is confirmed as of the poll.
   */
  async #checkAll(): Promise<void> {
    if (this.#slots.size === 0) return;
    const readAt = Date.now();
    const versions = await listKeySetVersions(this.#pool);
    for (const [keySetId, slot] of this.#slots) {
      if (slot.current === undefined) continue;
      if (versions.get(keySetId) !== slot.version) {
        this.#logger.debug({ keySetId }, 'poll found a key change that no notification announced');
        this.#invalidate(keySetId);
      } else {
        slot.current.confirmedAt = Math.max(slot.current.confirmedAt, readAt);
      }
    }
  }
}

/** A ttl in milliseconds: a duration string, or a number of seconds. Tokens count whole seconds. */
export function ttlToMs(ttl: string | number): number {
  const ms = typeof ttl === 'number' ? ttl * 1000 : parseDuration(ttl, 'ttl');
  if (!Number.isFinite(ms) || ms < 1000) {
    throw new TypeError(`ttl must be at least one second (tokens count whole seconds), got ${String(ttl)}`);
  }
  return ms;
}
