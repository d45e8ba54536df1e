import { timingSafeEqual } from 'node:crypto';
import type { Pool } from 'pg';
import type { Rate } from '../domain/rate';
import type { Logger } from '../logger';
import { connectionConfigOf, subscribeToKeyChanges, type KeyEvents } from '../store/key-events';
import { loadLiveSignerClients, SIGNER_CLIENTS_CHANNEL, type SignerClientRecord } from '../store/signer-clients';
import { hashClientSecret } from './client-secret';
import { TokenBucket } from './token-bucket';

/** A client as the signer holds it: what it may sign for, its pinned claims, and its token bucket. */
export interface SignerClient {
  readonly name: string;
  readonly keySetIds: ReadonlySet<string>;
  /** Its pinned claims, each with its value's JSON, to compare a request's value against. */
  readonly pinned: readonly { claim: string; value: unknown; json: string }[];
  readonly expiresAt: number | null;
  readonly bucket: TokenBucket;
  readonly secretHash: Buffer | null;
}

export interface ClientRegistryOptions {
  /** Needs SELECT on signer_clients and LISTEN. */
  pool: Pool;
  logger: Logger;
  /** Each client's token bucket unless the client has a rate of its own (KEYTURN_SIGNER_RATE). */
  defaultRate: Rate;
  /** Interval of the polling fallback behind LISTEN/NOTIFY (default 5 s). */
  pollIntervalMs?: number;
}

/** What {@link ClientRegistry.authenticateBearer} or {@link ClientRegistry.authenticateCertificate} found. */
export type Authentication =
  { outcome: 'client'; client: SignerClient } | { outcome: 'unknown' | 'expired' | 'stale'; client?: undefined };

/**
 * How long the registry may go without confirming the clients with PostgreSQL before it refuses
 * everyone (a client revoked meanwhile would still be let in).
 */
const STALENESS_LIMIT_MS = 60_000;

/**
 * The signing clients, in memory: a request is authenticated by a Map look-up of its secret's hash
 * (or its certificate's subject), with no database round trip. A change notice (LISTEN/NOTIFY, the
 * payload naming the client) drops that client at once and then reloads every client; a poll reloads
 * them too, in case a notice was lost.
 */
export class ClientRegistry {
  #byHash = new Map<string, SignerClient>();
  #bySubject = new Map<string, SignerClient>();
  #confirmedAt = 0;
  #reloading: Promise<void> | undefined;
  #reloadAgain = false;
  #events: KeyEvents | undefined;

  private constructor(private readonly options: ClientRegistryOptions) {}

  /** Listens for changes, then loads the clients; throws if they cannot be read (a missing grant, say). */
  static async open(options: ClientRegistryOptions): Promise<ClientRegistry> {
    const registry = new ClientRegistry(options);
    registry.#events = await subscribeToKeyChanges({
      connection: connectionConfigOf(options.pool),
      channel: SIGNER_CLIENTS_CHANNEL,
      onChange: (name) => registry.#changed(name),
      checkAll: () => registry.reload(),
      logger: options.logger,
      pollIntervalMs: options.pollIntervalMs,
      applicationName: 'keyturn-signer-clients',
    });
    try {
      await registry.reload();
    } catch (error) {
      await registry.close();
      throw error;
    }
    return registry;
  }

  /** The client an `Authorization: Bearer <secret>` header names, if any. */
  authenticateBearer(secret: string, now = Date.now()): Authentication {
    const hash = hashClientSecret(secret);
    const client = this.#byHash.get(hash.toString('hex'));
    // The look-up compares hashes, which tell nothing of a secret's bytes; the stored hash is compared
    // in constant time all the same, so no timing reveals how much of it a guess got right.
    if (client === undefined || client.secretHash === null || !timingSafeEqual(client.secretHash, hash))
      return this.#unknown(now);
    return this.#judge(client, now);
  }

  /** The client a verified client certificate's subject (as {@link normaliseSubject} writes it) maps to, if any. */
  authenticateCertificate(subject: string, now = Date.now()): Authentication {
    const client = this.#bySubject.get(subject);
    return client === undefined ? this.#unknown(now) : this.#judge(client, now);
  }

  /** Reads every live client and swaps them in; buckets of clients whose rate did not change carry over. */
  reload(): Promise<void> {
    if (this.#reloading !== undefined) {
      this.#reloadAgain = true;
      return this.#reloading;
    }
    this.#reloading = (async () => {
      try {
        do {
          this.#reloadAgain = false;
          const readAt = Date.now();
          const records = await loadLiveSignerClients(this.options.pool);
          this.#install(records);
          this.#confirmedAt = readAt;
        } while (this.#reloadAgain);
      } finally {
        this.#reloading = undefined;
      }
    })();
    return this.#reloading;
  }

  async close(): Promise<void> {
    await this.#events?.close();
    await this.#reloading?.catch(() => undefined);
    this.#byHash.clear();
    this.#bySubject.clear();
  }

  /** A notice: the client goes first (a revocation takes effect before the reload's round trip), then all reload. */
  #changed(name: string): Promise<void> {
    for (const map of [this.#byHash, this.#bySubject]) {
      for (const [key, client] of map) if (client.name === name) map.delete(key);
    }
    return this.reload();
  }

  #install(records: SignerClientRecord[]): void {
    const previous = new Map([...this.#byHash.values(), ...this.#bySubject.values()].map((c) => [c.name, c]));
    const byHash = new Map<string, SignerClient>();
    const bySubject = new Map<string, SignerClient>();
    for (const record of records) {
      const rate = record.rate ?? this.options.defaultRate;
      const before = previous.get(record.name);
      const sameRate = before?.bucket.rate.perSecond === rate.perSecond && before.bucket.rate.burst === rate.burst;
      const client: SignerClient = {
        name: record.name,
        keySetIds: new Set(record.keySetIds),
        pinned: Object.entries(record.pinnedClaims).map(([claim, value]) => ({
          claim,
          value,
          json: JSON.stringify(value),
        })),
        expiresAt: record.expiresAt,
        bucket: sameRate ? before.bucket : new TokenBucket(rate),
        secretHash: record.secretHash,
      };
      if (record.secretHash !== null) byHash.set(record.secretHash.toString('hex'), client);
      if (record.certSubject !== null) bySubject.set(normaliseSubject(record.certSubject), client);
    }
    this.#byHash = byHash;
    this.#bySubject = bySubject;
  }

  #judge(client: SignerClient, now: number): Authentication {
    if (this.#isStale(now)) return { outcome: 'stale' };
    if (client.expiresAt !== null && now >= client.expiresAt) return { outcome: 'expired' };
    return { outcome: 'client', client };
  }

  #unknown(now: number): Authentication {
    return { outcome: this.#isStale(now) ? 'stale' : 'unknown' };
  }

  /** While listening, what was read since the connection came up is current; else it ages from the last read. */
  #isStale(now: number): boolean {
    const knownAt = this.#events?.knownAt(this.#confirmedAt, now) ?? this.#confirmedAt;
    return now - knownAt > STALENESS_LIMIT_MS;
  }
}

/**
 * A certificate subject in one spelling: its attributes as `TYPE=value` joined by commas, in the
 * certificate's order, whether written with commas (`CN=a, O=b`) or newlines (Node's X509Certificate).
 */
export function normaliseSubject(subject: string): string {
  return subject
    .split(/[\n,]/)
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .join(',');
}
