import { inspect } from 'node:util';
import type { Pool } from 'pg';
import type { Registry } from 'prom-client';
import type { KekRing } from '../crypto/kek';
import { assertKidOf } from '../crypto/kid';
import { assertSignsAsPublished } from '../crypto/signature-check';
import { CustodyRegistry } from '../custody/custody-registry';
import { roughDuration } from '../domain/describe';
import { formatDuration, parseDuration } from '../domain/duration';
import { KeyturnError } from '../domain/errors';
import { keySetIssuer, type DeploymentIssuer } from '../domain/issuer';
import { DEFAULT_CEILINGS, policyTimings } from '../domain/policy';
import { reportKeyViewAges, type KeyViewAge } from '../observability/key-view-age';
import { createLogger, type Logger } from '../logger';
import { createPool } from '../runtime/database-pool';
import { connectionConfigOf, subscribeToKeyChanges, type KeyEvents } from '../store/key-events';
import { keySetVersion, listKeySetVersions } from '../store/key-set-versions';
import { getPolicy } from '../store/key-set-registry';
import { readActiveKey } from '../store/signing-keys';
import { TokenSigner } from './token-signer';

/**
 * What {@link KeyRing.open} connects to and how the ring behaves; `pool` or `databaseUrl`, and `kekRing`,
 * are required. `publicUrl` or `issuer` (DeploymentIssuer) tell the ring the `iss` of key sets whose
 * policy names no issuer: without either, it signs only for key sets whose policy does.
 */
export interface KeyRingOptions extends DeploymentIssuer {
  /** A pool to share; the ring also opens one dedicated connection to LISTEN on. */
  pool?: Pool;
  /** Or a database to open a small pool on, ended by close(). */
  databaseUrl?: string;
  /** The KEKs that open the stored (sealed) private keys. */
  kekRing: KekRing;
  /**
   * The custody backends that sign with keys held outside PostgreSQL (AWS KMS, PKCS#11), shared with
   * the caller (who closes it); by default the ring makes its own from `kekRing` and the environment.
   */
  custody?: CustodyRegistry;
  /** Key sets to load now, so that open() fails early on an unknown one; others load on first use. */
  keySetIds?: readonly string[];
  /** Default: info and above, as JSON lines on stderr (a program's stdout stays its own). */
  logger?: Logger;
  /** Interval of the polling fallback behind LISTEN/NOTIFY, in milliseconds (default 5 s). */
  pollIntervalMs?: number;
  /**
   * How long the ring may go without confirming a key set's keys with PostgreSQL before `sign`
   * refuses (ERR_KEY_RING_STALE): a duration such as `5m`. Default: each key set's `jwksMaxAge`.
   */
  stalenessLimit?: string;
  /**
   * The deployment's KEYTURN_MAX_TOKEN_TTL_CEILING (default 1 day): no token lives longer, whatever a
   * key set's policy says (a policy may have been changed by anyone who reached Temporal or the database).
   */
  maxTokenTtlCeilingMs?: number;
  /** Where to report `keyturn_key_view_age_seconds{view="key_ring"}`, the age of the ring's knowledge of each key set. */
  registry?: Registry;
}

/** Claims of a token to sign; `iat` and `exp` are the ring's to set, and `iss` too (a claimed one must be the key set's). */
export type TokenClaims = Record<string, unknown>;

/** Options of one {@link KeyRing.sign}. */
export interface SignOptions {
  /**
   * How long the token is valid: a duration such as `15m` or `90s`, or a number of seconds (the unit
   * of `iat` and `exp`). Default and ceiling: the key set's `maxTokenTtl`.
   */
  ttl?: string | number;
}

/** What a key set's slot holds once loaded: its signer (none while it has no active key), its TTL ceiling and staleness limit. */
interface LoadedKeySet {
  signer: TokenSigner | undefined;
  /** The policy's maxTokenTtl, or the deployment's ceiling when that is lower (`ceilingApplies`). */
  maxTokenTtlMs: number;
  ceilingApplies: boolean;
  stalenessLimitMs: number;
  /** Where the staleness limit comes from, for the refusal's message. */
  stalenessLimitSource: string;
  /** The `iss` of the key set's tokens (keySetIssuer); undefined when the ring cannot tell it. */
  issuer: string | undefined;
  /** Where the issuer comes from, for the refusal's message. */
  issuerSource: string;
  /** The `"iss":…,` member added to claims that carry no `iss`. */
  issuerMember: string;
  /**
   * The members `sign` adds, for the last `iat` and `exp` (whole seconds): most tokens signed in one
   * second share them, so they are not made again for each.
   */
  registered: { iat: number; exp: number; times: string; withIssuer: string };
}

interface KeySetSlot {
  current: LoadedKeySet | undefined;
  loading: Promise<void> | undefined;
  /** Bumped by every change notice: a load started before it must not install what it read. */
  generation: number;
  /** The key set's version as of the last completed load, for the polling fallback. */
  version: string | undefined;
  /**
   * When PostgreSQL last confirmed the key set's state (the ring's clock): a load, or a poll finding
   * no change. Kept while a change notice reloads the key: it is how old the ring's knowledge is.
   */
  confirmedAt: number | undefined;
  /** Why the last load failed, while no key is loaded: `sign` refuses with it until `retryAt`, without asking the database. */
  failure: { error: Error; failures: number; retryAt: number } | undefined;
}

/** A loaded slot, as `sign` needs it. */
type LoadedSlot = KeySetSlot & { current: LoadedKeySet; confirmedAt: number };

/** Delays before a failed load is tried again: doubling from the first to the last. */
const RELOAD_FIRST_MS = 100;
const RELOAD_MAX_MS = 5_000;

/**
 * The issuer's key ring: signs JWTs with each key set's active key, straight from PostgreSQL.
 *
 * A change notice for a key set (LISTEN/NOTIFY, or the poll finding a new version) drops its key
 * first and then reloads it; signing waits for the reload. So a promoted key signs within a
 * database round trip of the notice, and a revoked key signs nothing once the notice is in.
 * The private keys live only in KeyObjects behind private fields: `JSON.stringify` and
 * `util.inspect` of a ring show key set ids, kids and algorithms.
 *
 * It fails closed: a key whose kid is not the thumbprint of its public key never signs, and a key
 * set whose keys the ring has not confirmed with PostgreSQL for longer than its staleness limit
 * signs nothing (a key revoked meanwhile would still sign). A load that fails is not tried again
 * on every `sign`, but after a backoff, or as soon as a poll reaches the database.
 */
export class KeyRing {
  readonly #slots = new Map<string, KeySetSlot>();
  readonly #custody: CustodyRegistry;
  readonly #ownCustody: CustodyRegistry | undefined;
  readonly #pool: Pool;
  readonly #ownPool: Pool | undefined;
  readonly #logger: Logger;
  readonly #stalenessLimitMs: number | undefined;
  readonly #ceilingMs: number;
  readonly #deployment: DeploymentIssuer;
  #events: KeyEvents | undefined;
  #stopReporting: (() => void) | undefined;
  #closed = false;

  private constructor(
    pool: Pool,
    ownPool: Pool | undefined,
    custody: { shared: CustodyRegistry } | { own: CustodyRegistry },
    logger: Logger,
    stalenessLimitMs: number | undefined,
    ceilingMs: number,
    deployment: DeploymentIssuer,
  ) {
    this.#ceilingMs = ceilingMs;
    this.#deployment = deployment;
    this.#pool = pool;
    this.#ownPool = ownPool;
    this.#ownCustody = 'own' in custody ? custody.own : undefined;
    this.#custody = 'own' in custody ? custody.own : custody.shared;
    this.#logger = logger;
    this.#stalenessLimitMs = stalenessLimitMs;
  }

  /**
   * Connects, starts listening for key changes, and loads `keySetIds`. Throws ERR_KEYSET_NOT_FOUND for
   * a key set that is not registered; one without an active key yet loads, and signs once it has one.
   */
  static async open(options: KeyRingOptions): Promise<KeyRing> {
    if ((options.pool === undefined) === (options.databaseUrl === undefined)) {
      throw new TypeError('KeyRing.open needs either a pool or a databaseUrl');
    }
    const stalenessLimitMs =
      options.stalenessLimit === undefined ? undefined : parseDuration(options.stalenessLimit, 'stalenessLimit');
    const logger = options.logger ?? createLogger({ name: 'keyturn-key-ring', toStderr: true });
    // Loads and reloads only: a few connections, and the listener holds its own.
    const ownPool =
      options.databaseUrl === undefined
        ? undefined
        : createPool({ url: options.databaseUrl }, logger, { max: 4, connectionTimeoutMillis: 10_000 });
    const ring = new KeyRing(
      options.pool ?? ownPool!,
      ownPool,
      options.custody ? { shared: options.custody } : { own: new CustodyRegistry({ kekRing: options.kekRing }) },
      logger,
      stalenessLimitMs,
      options.maxTokenTtlCeilingMs ?? DEFAULT_CEILINGS.maxTokenTtlMs,
      { issuer: options.issuer, publicUrl: options.publicUrl, defaultKeySetId: options.defaultKeySetId },
    );
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
      if (options.registry !== undefined)
        ring.#stopReporting = reportKeyViewAges(options.registry, 'key_ring', () => ring.#viewAges());
    } catch (error) {
      await ring.close();
      throw error;
    }
    return ring;
  }

  /**
   * A compact JWT of `claims` plus `iss` (the key set's issuer, see keySetIssuer), `iat` and `exp`,
   * signed with the key set's active key; the header is `{ alg, kid, typ: 'JWT' }`. Throws
   * ERR_TOKEN_ISSUER_MISMATCH for claims whose `iss` is not the key set's issuer, ERR_TOKEN_ISSUER_UNKNOWN
   * when the ring cannot tell the key set's issuer (no policy issuer, and the ring was opened with neither
   * `issuer` nor `publicUrl`), ERR_TOKEN_TTL_TOO_LONG for a ttl above the policy's
   * maxTokenTtl, ERR_NO_ACTIVE_KEY while the key set has no active key, ERR_KEYSET_NOT_FOUND for an
   * unknown key set, ERR_KEY_RING_STALE when the ring has not confirmed the key set's keys within its
   * staleness limit (or no token could live a second), ERR_KEY_RING_UNAVAILABLE while its keys cannot
   * be loaded from PostgreSQL, ERR_KID_MISMATCH when the active key does not match its kid, and a
   * TypeError for claims that set `iat` or `exp` themselves or have a `toJSON` of their own.
   */
  sign(keySetId: string, claims: TokenClaims, options: SignOptions = {}): Promise<string> {
    // Not an async function: a loaded key set signs synchronously, and costs one settled promise.
    try {
      const cached = this.#checkedSlot(keySetId, claims);
      if (cached?.current === undefined) return this.#signOnceLoaded(keySetId, claims, options);
      return Promise.resolve(this.#signWith(keySetId, cached as LoadedSlot, claims, options));
    } catch (error) {
      return Promise.reject(error as Error);
    }
  }

  /** The key set's slot as it is (loaded or not), once the ring and the claims are fit to sign with. */
  #checkedSlot(keySetId: string, claims: TokenClaims): KeySetSlot | undefined {
    if (this.#closed) throw new TypeError('this KeyRing is closed');
    if (typeof claims !== 'object' || claims === null || Array.isArray(claims)) {
      throw new TypeError('claims must be a plain object');
    }
    if (Object.hasOwn(claims, 'iat') || Object.hasOwn(claims, 'exp')) {
      throw new TypeError(
        'claims must not set iat or exp: the key ring sets them; choose the lifetime with the ttl option',
      );
    }
    // What the checks here read must be what the token says: a toJSON could say anything else.
    if (typeof (claims as { toJSON?: unknown }).toJSON === 'function') {
      throw new TypeError('claims must serialise to a JSON object as they are: give a plain object, without toJSON');
    }
    return this.#slots.get(keySetId);
  }

  async #signOnceLoaded(keySetId: string, claims: TokenClaims, options: SignOptions): Promise<string> {
    return this.#signWith(keySetId, await this.#whenLoaded(keySetId), claims, options);
  }

  /** The token, signed by the loaded key set's active key if its checks allow (see sign). */
  #signWith(keySetId: string, slot: LoadedSlot, claims: TokenClaims, options: SignOptions): string | Promise<string> {
    const loaded = slot.current;
    const signer = loaded.signer;
    if (signer === undefined) {
      throw new KeyturnError('ERR_NO_ACTIVE_KEY', `key set "${keySetId}" has no active key to sign with yet`, {
        keySetId,
      });
    }
    const claimedIssuer = claims.iss;
    if (loaded.issuer === undefined || (claimedIssuer !== undefined && claimedIssuer !== loaded.issuer)) {
      throw issuerRefusal(keySetId, loaded, claimedIssuer);
    }
    const ttlMs = options.ttl === undefined ? loaded.maxTokenTtlMs : ttlToMs(options.ttl);
    if (ttlMs > loaded.maxTokenTtlMs) {
      const limit = formatDuration(loaded.maxTokenTtlMs);
      const what = loaded.ceilingApplies
        ? `this deployment's KEYTURN_MAX_TOKEN_TTL_CEILING ${limit}`
        : `the maxTokenTtl ${limit} of key set "${keySetId}"`;
      throw new KeyturnError(
        'ERR_TOKEN_TTL_TOO_LONG',
        `ttl ${formatDuration(ttlMs)} exceeds ${what}; ` + 'a longer-lived token could outlive its key in the JWKS',
        { keySetId, field: 'ttl' },
      );
    }
    const now = Date.now();
    // While the ring listens for changes, and has confirmed the key since the connection came up, it
    // hears of a demotion or revocation within milliseconds: its knowledge is current.
    const knownAt = this.#events?.knownAt(slot.confirmedAt, now) ?? slot.confirmedAt;
    if (now - knownAt > loaded.stalenessLimitMs) {
      throw staleKeyRing(
        keySetId,
        slot.confirmedAt,
        `longer than the staleness limit ${formatDuration(loaded.stalenessLimitMs)} (${loaded.stalenessLimitSource}): the key may have been revoked meanwhile`,
      );
    }
    // The key may have been demoted right after the ring last knew it active, and its grace period
    // lasts maxTokenTtl plus the clock-skew margin from then at the least: a token that expires within
    // maxTokenTtl of that moment verifies for its whole life on every clock within the margin.
    const expMs = Math.min(now + ttlMs, knownAt + loaded.maxTokenTtlMs);
    if (expMs - now < 1000) throw staleKeyRing(keySetId, slot.confirmedAt, 'a token signed now could outlive the key');
    // Rounded down, so that a token never outlives now + ttl (which the grace period is sized for).
    const iat = Math.floor(now / 1000);
    const exp = Math.floor(expMs / 1000);
    let registered = loaded.registered;
    if (registered.iat !== iat || registered.exp !== exp) {
      const times = `"iat":${iat},"exp":${exp}`;
      registered = loaded.registered = { iat, exp, times, withIssuer: loaded.issuerMember + times };
    }
    return signer.sign(claims, claimedIssuer === undefined ? registered.withIssuer : registered.times);
  }

  /** The kid `sign` uses for the key set right now; undefined if not loaded or without an active key. */
  activeKid(keySetId: string): string | undefined {
    return this.#slots.get(keySetId)?.current?.signer?.kid;
  }

  /** Stops listening and polling, drops every key, and ends the pool if the ring opened it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopReporting?.();
    await this.#events?.close();
    this.#slots.clear();
    await this.#ownCustody?.close();
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
    const keySets = this.toJSON().keySets.map(
      (k) => `${k.keySetId}: ${k.kid === null ? 'no key' : `${k.alg} ${k.kid}`}`,
    );
    return `KeyRing { ${this.#closed ? 'closed' : keySets.join(', ')} }`;
  }

  /**
   * The key set's slot once loaded, loading it (again) as long as change notices keep superseding the
   * load. After a failed load, the failure is thrown as it is until its backoff is over.
   */
  async #whenLoaded(keySetId: string): Promise<LoadedSlot> {
    for (;;) {
      if (this.#closed) throw new TypeError('this KeyRing is closed');
      let slot = this.#slots.get(keySetId);
      if (slot === undefined) {
        slot = {
          current: undefined,
          loading: undefined,
          generation: 0,
          version: undefined,
          confirmedAt: undefined,
          failure: undefined,
        };
        this.#slots.set(keySetId, slot);
      }
      if (slot.current !== undefined) return slot as LoadedSlot;
      if (slot.loading === undefined && slot.failure !== undefined && Date.now() < slot.failure.retryAt)
        throw slot.failure.error;
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
      let read;
      try {
        // The version first: a change committed after it shows as a newer version at the next poll.
        const version = await keySetVersion(this.#pool, keySetId);
        const policy = version === undefined ? undefined : await getPolicy(this.#pool, keySetId);
        if (policy === undefined) {
          throw new KeyturnError('ERR_KEYSET_NOT_FOUND', `key set "${keySetId}" is not registered`, { keySetId });
        }
        read = { version, policy, active: await readActiveKey(this.#pool, keySetId) };
      } catch (error) {
        throw unavailable(keySetId, error);
      }
      const { version, policy, active } = read;
      let signer: TokenSigner | undefined;
      if (active !== undefined) {
        assertKidOf(active.publicJwk, 'its stored public key', active.held);
        const { kid, alg } = active.held;
        const custody = await this.#custody.get(active.custody);
        const signature = await custody.signer(active.held);
        // A sealed key proved itself as it was opened (its private part's thumbprint); a KMS or token key
        // proves itself by a signature its stored public key verifies.
        if (!custody.privateKeysPassThroughKeyturn) {
          await assertSignsAsPublished(signature, { ...active.held, publicJwk: active.publicJwk });
        }
        signer = new TokenSigner({ kid, alg, signature });
      }
      if (slot.generation !== generation || this.#closed) return; // superseded: a newer load is under way
      const previousKid = slot.current?.signer?.kid;
      const timings = policyTimings(policy);
      const issuer = keySetIssuer(keySetId, policy.issuer, this.#deployment);
      slot.current = {
        signer,
        maxTokenTtlMs: Math.min(timings.maxTokenTtlMs, this.#ceilingMs),
        ceilingApplies: this.#ceilingMs < timings.maxTokenTtlMs,
        stalenessLimitMs: this.#stalenessLimitMs ?? timings.jwksMaxAgeMs,
        stalenessLimitSource:
          this.#stalenessLimitMs === undefined ? "the key set's jwksMaxAge" : "the key ring's stalenessLimit",
        issuer,
        issuerSource: policy.issuer
          ? "its policy's issuer"
          : this.#deployment.issuer
            ? "the deployment's issuer (KEYTURN_ISSUER)"
            : "its discovery document's URL under the public URL (KEYTURN_PUBLIC_URL)",
        issuerMember: issuer === undefined ? '' : `"iss":${JSON.stringify(issuer)},`,
        registered: { iat: -1, exp: -1, times: '', withIssuer: '' },
      };
      slot.confirmedAt = readAt;
      slot.failure = undefined;
      slot.version = version;
      if (signer?.kid !== previousKid) {
        this.#logger.info(
          { keySetId, kid: signer?.kid ?? null },
          active ? 'key ring signs with a new key' : 'key set has no active key',
        );
      }
    })();
    slot.loading = loading;
    const settled = () => {
      if (slot.loading === loading) slot.loading = undefined;
    };
    loading.then(settled, (error: unknown) => {
      settled();
      // A superseded load's failure says nothing of the load under way since.
      if (slot.generation !== generation || this.#closed) return;
      // Unknown key sets are not kept: made-up ids must not grow the ring.
      if (error instanceof KeyturnError && error.code === 'ERR_KEYSET_NOT_FOUND') {
        if (this.#slots.get(keySetId) === slot) this.#slots.delete(keySetId);
        return;
      }
      const failures = (slot.failure?.failures ?? 0) + 1;
      const retryInMs = Math.min(RELOAD_MAX_MS, RELOAD_FIRST_MS * 2 ** (failures - 1));
      slot.failure = { error: error as Error, failures, retryAt: Date.now() + retryInMs };
      const mismatch = error instanceof KeyturnError && error.code === 'ERR_KID_MISMATCH';
      this.#logger[mismatch ? 'error' : 'warn'](
        { err: error, keySetId, kid: mismatch ? error.kid : undefined, failures, retryInMs },
        'cannot load the active key of a key set',
      );
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
      if (slot.current === undefined) {
        // The database answers again: a load that failed is worth trying at once.
        if (slot.failure !== undefined && slot.loading === undefined && versions.has(keySetId)) {
          void this.#load(keySetId, slot).catch(() => undefined);
        }
        continue;
      }
      if (versions.get(keySetId) !== slot.version) {
        this.#logger.debug({ keySetId }, 'poll found a key change that no notification announced');
        this.#invalidate(keySetId);
      } else {
        slot.confirmedAt = Math.max(slot.confirmedAt ?? readAt, readAt);
      }
    }
  }

  /** How old the ring's knowledge of each key set is, for `keyturn_key_view_age_seconds`. */
  #viewAges(): KeyViewAge[] {
    const now = Date.now();
    return [...this.#slots]
      .filter((entry): entry is [string, KeySetSlot & { confirmedAt: number }] => entry[1].confirmedAt !== undefined)
      .map(([keySetId, slot]) => ({
        keySetId,
        ageMs: now - (this.#events?.knownAt(slot.confirmedAt, now) ?? slot.confirmedAt),
      }));
  }
}

/** The refusal of a key ring whose knowledge of a key set is too old; `why` ends its first sentence. */
function staleKeyRing(keySetId: string, confirmedAt: number, why: string): KeyturnError {
  return new KeyturnError(
    'ERR_KEY_RING_STALE',
    `the key ring has not confirmed the active key of key set "${keySetId}" with PostgreSQL since ${new Date(confirmedAt).toISOString()}, ` +
      `${roughDuration(Date.now() - confirmedAt)} ago, ${why}: check the database connection`,
    { keySetId },
  );
}

/** Why claims cannot be signed for a key set as to their `iss`: it differs from the key set's issuer, or the ring cannot tell that one. */
function issuerRefusal(keySetId: string, loaded: LoadedKeySet, claimed: unknown): KeyturnError {
  if (loaded.issuer === undefined) {
    return new KeyturnError(
      'ERR_TOKEN_ISSUER_UNKNOWN',
      `the key ring cannot tell the issuer (iss) of key set "${keySetId}": its policy names no issuer, and the ring was opened ` +
        "with neither an issuer nor the JWKS server's public URL: give KeyRing.open publicUrl (KEYTURN_PUBLIC_URL) or issuer " +
        "(KEYTURN_ISSUER), or set the key set's issuer in its policy",
      { keySetId, field: 'iss' },
    );
  }
  // Quoted when a string, at most 200 characters of it; else only its type (a BigInt or a cycle would not serialise).
  const shown =
    typeof claimed === 'string'
      ? JSON.stringify(claimed.length > 200 ? `${claimed.slice(0, 200)}…` : claimed)
      : claimed === null
        ? 'null'
        : `of type ${typeof claimed}`;
  return new KeyturnError(
    'ERR_TOKEN_ISSUER_MISMATCH',
    `the claims' iss ${shown} is not the issuer of key set "${keySetId}", ` +
      `${JSON.stringify(loaded.issuer)} (${loaded.issuerSource}), so nothing was signed: verifiers that discover the key set ` +
      'accept only its issuer; leave iss out (keyturn sets it), or sign with the key set whose issuer it is',
    { keySetId, field: 'iss' },
  );
}

/** A load's failure as `sign` reports it: keyturn's own errors as they are, a database error with what to check. */
function unavailable(keySetId: string, error: unknown): unknown {
  if (error instanceof KeyturnError) return error;
  return new KeyturnError(
    'ERR_KEY_RING_UNAVAILABLE',
    `the key ring cannot load the active key of key set "${keySetId}" from PostgreSQL (${error instanceof Error ? error.message : String(error)}): ` +
      'check the database connection; signing tries again after a backoff',
    { keySetId, cause: error },
  );
}

/** A ttl in milliseconds: a duration string, or a number of seconds. Tokens count whole seconds. */
export function ttlToMs(ttl: string | number): number {
  const ms = typeof ttl === 'number' ? ttl * 1000 : parseDuration(ttl, 'ttl');
  if (!Number.isFinite(ms) || ms < 1000) {
    throw new TypeError(`ttl must be at least one second (tokens count whole seconds), got ${String(ttl)}`);
  }
  return ms;
}
