import { createHash } from 'node:crypto';
import type { Pool } from 'pg';
import { assertPublicOnly, toPublicJwk, type PublicJwk } from '../crypto/generate';
import { kidMatches } from '../crypto/kid';
import { isSigningAlgorithm, type SigningAlgorithm } from '../domain/algorithms';
import { parseDuration } from '../domain/duration';
import type { Logger } from '../logger';
import { listKeySetVersions } from '../store/key-set-versions';
import { getPublishedKeySet, listPublishedJwks, type PublishedKeySet } from '../store/published-keys';
import type { JwksMetrics } from './metrics';

/** A key set's JWKS, built once per change and served from memory. */
export interface CachedJwks {
  keySetId: string;
  /** `{"keys":[...]}`: the next, active and grace keys, public members only. */
  body: Buffer;
  /** Strong ETag: the quoted SHA-256 of the body, so equal bodies share it across servers and restarts. */
  etag: string;
  /** `public, max-age=<jwksMaxAge in seconds>` from the key set's policy. */
  cacheControl: string;
  /** The policy's jwksMaxAge: also how long the server may serve this JWKS without confirming it (its staleness limit). */
  jwksMaxAgeMs: number;
  kids: string[];
  /** The policy's algorithm and those of the published keys (they differ while an algorithm change rolls out). */
  algorithms: SigningAlgorithm[];
  /** The `issuer` a policy may carry; undefined when it names none. */
  issuer: string | undefined;
}

export interface JwksCacheOptions {
  /** Reads the views of published keys only (src/store/published-keys.ts). */
  pool: Pool;
  logger: Logger;
  /** Where keys left out for not matching their kid are counted. */
  metrics: Pick<JwksMetrics, 'keysRefused'>;
}

/** How long an id found nowhere is answered "not found" without asking the database again. */
const MISS_TTL_MS = 5_000;
/** At most this many such ids are remembered; the oldest are forgotten first. */
const MAX_REMEMBERED_MISSES = 10_000;
/** At most this many database look-ups of ids not in the cache run at once; beyond, "not found". */
const MAX_CONCURRENT_LOOKUPS = 16;

/**
 * Rebuilds a check runs at once (the pool queues what exceeds its connections anyway). Not all at
 * once: the start's 10,000 rebuilds begun together held 20,000 queued queries across many young-
 * generation collections, and V8 then allocated in the old space, for good, at allocation sites
 * Node's HTTP path shares with them; every request's garbage then outlived the young generation
 * (a third of it promoted, a full collection a second under load: docs/benchmarks.md, 2026-12-01).
 */
const MAX_CONCURRENT_REBUILDS = 8;

/**
 * The JWKS of every key set, prebuilt. `refresh(id)` rebuilds one key set (on its change
 * notification); `checkAll()` compares every key set's version with the database (at start and as
 * the polling fallback). Memory grows with the key sets in the database, never with the ids asked
 * for: misses are remembered briefly in a bounded map, and look-ups of unknown ids are rationed.
 */
export class JwksCache {
  readonly #entries = new Map<string, CachedJwks>();
  /** Versions seen by the last successful check, per key set. */
  readonly #versions = new Map<string, string>();
  /** When PostgreSQL last confirmed each key set's JWKS (a rebuild, or a check finding its version unchanged). */
  readonly #confirmedAt = new Map<string, number>();
  /** Key sets in memory whose JWKS is known to be out of date: since when a rebuild is due and has not succeeded. */
  readonly #outdatedSince = new Map<string, number>();
  /** Ids found nowhere, with when to ask again; insertion order is age order. */
  readonly #misses = new Map<string, number>();
  readonly #refreshing = new Map<string, Promise<void>>();
  readonly #dirty = new Set<string>();
  readonly #options: JwksCacheOptions;
  #lookups = 0;
  #loaded = false;
  #checkedAt: number | undefined;

  constructor(options: JwksCacheOptions) {
    this.#options = options;
  }

  /** True once a check has found every key set in memory. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /** When the last check that reached PostgreSQL read the key sets' versions; undefined before the first. */
  get checkedAt(): number | undefined {
    return this.#checkedAt;
  }

  /** The key set's JWKS if it is in memory; the hot path. */
  peek(keySetId: string): CachedJwks | undefined {
    return this.#entries.get(keySetId);
  }

  /**
   * Every JWKS in memory with when PostgreSQL last confirmed it, and since when it is known to be out
   * of date (a change whose rebuild has not succeeded), to tell how old the server's view is.
   */
  confirmations(): {
    keySetId: string;
    confirmedAt: number;
    outdatedSince: number | undefined;
    jwksMaxAgeMs: number;
  }[] {
    return [...this.#entries.values()].map((jwks) => ({
      keySetId: jwks.keySetId,
      confirmedAt: this.#confirmedAt.get(jwks.keySetId) ?? 0,
      outdatedSince: this.#outdatedSince.get(jwks.keySetId),
      jwksMaxAgeMs: jwks.jwksMaxAgeMs,
    }));
  }

  /**
   * The key set's JWKS, asking the database for an id not in memory (a key set registered since the
   * last check). Undefined for an unknown key set. Rejects only when the database cannot be asked.
   */
  async lookup(keySetId: string): Promise<CachedJwks | undefined> {
    const cached = this.#entries.get(keySetId);
    if (cached !== undefined) return cached;
    const askAgainAt = this.#misses.get(keySetId);
    if (askAgainAt !== undefined && askAgainAt > Date.now()) return undefined;
    // A flood of made-up ids must not become a flood of queries.
    if (this.#lookups >= MAX_CONCURRENT_LOOKUPS) return undefined;
    this.#lookups += 1;
    try {
      await this.refresh(keySetId);
    } finally {
      this.#lookups -= 1;
    }
    const found = this.#entries.get(keySetId);
    if (found === undefined) this.#rememberMiss(keySetId);
    return found;
  }

  /**
   * Rebuilds one key set's JWKS from the database. Calls during a rebuild coalesce into one more
   * rebuild after it, so the last change is never lost and rebuilds never finish out of order.
   */
  refresh(keySetId: string): Promise<void> {
    // Only ids in memory: a flood of made-up ids during an outage must not grow the map.
    if (this.#entries.has(keySetId) && !this.#outdatedSince.has(keySetId))
      this.#outdatedSince.set(keySetId, Date.now());
    const running = this.#refreshing.get(keySetId);
    if (running !== undefined) {
      this.#dirty.add(keySetId);
      return running;
    }
    const run = (async () => {
      try {
        do {
          this.#dirty.delete(keySetId);
          await this.#rebuild(keySetId);
        } while (this.#dirty.has(keySetId));
        this.#outdatedSince.delete(keySetId);
      } finally {
        this.#dirty.delete(keySetId);
        this.#refreshing.delete(keySetId);
      }
    })();
    this.#refreshing.set(keySetId, run);
    return run;
  }

  /**
   * Rebuilds every key set whose version changed since the last check and drops those gone from the
   * database. One failing key set keeps its previous JWKS and is retried on the next check.
   */
  async checkAll(): Promise<void> {
    const readAt = Date.now();
    const versions = await listKeySetVersions(this.#options.pool);
    this.#checkedAt = Math.max(this.#checkedAt ?? readAt, readAt);
    for (const keySetId of [...this.#entries.keys()]) {
      if (!versions.has(keySetId)) this.#forget(keySetId);
    }
    const changed = [...versions].filter(([keySetId, version]) => this.#versions.get(keySetId) !== version);
    for (const [keySetId, version] of versions) {
      if (this.#versions.get(keySetId) === version) this.#confirm(keySetId, readAt);
    }
    // (client/map-bounded.ts is a layer above this one, and stops at the first failure.)
    let next = 0;
    const rebuildInTurn = async () => {
      while (next < changed.length) {
        const [keySetId, version] = changed[next++];
        try {
          await this.refresh(keySetId);
          this.#versions.set(keySetId, version);
        } catch (error) {
          this.#options.logger.error({ err: error, keySetId }, 'cannot rebuild the JWKS of a key set');
        }
      }
    };
    await Promise.all(Array.from({ length: MAX_CONCURRENT_REBUILDS }, rebuildInTurn));
    // Ready once every key set has a JWKS; it stays so, lest one broken key set take the others offline.
    if ([...versions.keys()].every((keySetId) => this.#entries.has(keySetId))) this.#loaded = true;
  }

  async #rebuild(keySetId: string): Promise<void> {
    const { pool, logger, metrics } = this.#options;
    const readAt = Date.now();
    const keySet = await getPublishedKeySet(pool, keySetId);
    if (keySet === undefined) {
      this.#forget(keySetId);
      return;
    }
    const jwks = await listPublishedJwks(pool, keySetId);
    const previous = this.#entries.get(keySetId);
    const { jwks: next, refused } = buildJwks(keySet, jwks);
    metrics.keysRefused(keySetId, refused.length);
    for (const kid of refused) {
      // The kid and key set only: what the key holds is not for logs.
      logger.error(
        { keySetId, kid },
        'a published key is not the one its kid names (RFC 7638 thumbprint): left out of the JWKS',
      );
    }
    this.#entries.set(keySetId, next);
    this.#confirm(keySetId, readAt);
    this.#misses.delete(keySetId);
    if (previous?.etag !== next.etag || previous.cacheControl !== next.cacheControl) {
      logger.info({ keySetId, kids: next.kids, etag: next.etag }, 'JWKS rebuilt');
    }
  }

  #forget(keySetId: string): void {
    this.#entries.delete(keySetId);
    this.#versions.delete(keySetId);
    this.#confirmedAt.delete(keySetId);
    this.#outdatedSince.delete(keySetId);
  }

  #confirm(keySetId: string, readAt: number): void {
    this.#confirmedAt.set(keySetId, Math.max(this.#confirmedAt.get(keySetId) ?? readAt, readAt));
  }

  #rememberMiss(keySetId: string): void {
    this.#misses.delete(keySetId);
    this.#misses.set(keySetId, Date.now() + MISS_TTL_MS);
    while (this.#misses.size > MAX_REMEMBERED_MISSES) {
      this.#misses.delete(this.#misses.keys().next().value as string);
    }
  }
}

/**
 * The served form of a key set's JWKS. Each stored key is checked for private members and then
 * rebuilt from the public members of its key type (an allow-list), so a bad row fails the build
 * instead of reaching a response. A key whose kid is not the RFC 7638 thumbprint of its public key
 * is left out (`refused`): a verifier would trust that key for tokens signed under another's kid.
 */
function buildJwks(keySet: PublishedKeySet, stored: readonly PublicJwk[]): { jwks: CachedJwks; refused: string[] } {
  const { keySetId } = keySet;
  const refused: string[] = [];
  const keys = stored.flatMap((jwk) => {
    assertPublicOnly(jwk);
    if (typeof jwk.kid !== 'string' || !isSigningAlgorithm(jwk.alg)) {
      throw new TypeError(`a published key of key set "${keySetId}" lacks a kid or a supported alg`);
    }
    if (!kidMatches(jwk, jwk.kid)) {
      refused.push(jwk.kid);
      return [];
    }
    return [toPublicJwk(jwk, { kid: jwk.kid, alg: jwk.alg })];
  });
  const body = Buffer.from(JSON.stringify({ keys }), 'utf8');
  const jwksMaxAgeMs = parseDuration(keySet.jwksMaxAge, 'jwksMaxAge');
  const jwks = {
    keySetId,
    body,
    etag: `"${createHash('sha256').update(body).digest('base64url')}"`,
    cacheControl: `public, max-age=${Math.floor(jwksMaxAgeMs / 1000)}`,
    jwksMaxAgeMs,
    kids: keys.map((k) => k.kid),
    algorithms: [...new Set([keySet.algorithm, ...keys.map((k) => k.alg)])],
    issuer: keySet.issuer,
  };
  return { jwks, refused };
}
