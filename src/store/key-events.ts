import { Client, type ClientConfig, type Notification, type Pool } from 'pg';
import type { Logger } from '../logger';
import { KEY_CHANGES_CHANNEL } from './key-set-changes';

/** Default interval of the polling fallback. */
const DEFAULT_POLL_INTERVAL_MS = 5_000;

/** Reconnect delays double from the first to the last, with jitter so that many processes spread out. */
const RECONNECT_FIRST_MS = 100;
const RECONNECT_MAX_MS = 5_000;

/** A LISTEN connection that cannot answer `SELECT 1` within this is taken for dead and replaced. */
const HEARTBEAT_TIMEOUT_MS = 5_000;

export interface KeyEventsOptions {
  /** How to reach PostgreSQL; a dedicated connection is opened from it (see {@link connectionConfigOf}). */
  connection: ClientConfig;
  /**
   * Called with the payload of every notification on `channel`: on KEY_CHANGES_CHANNEL, the key set
   * id of a committed key change. Rejections are logged.
   */
  onChange(keySetId: string): void | Promise<void>;
  /**
   * The repair: compare everything watched with the database. Called every `pollIntervalMs` and
   * after each reconnect, so a notification lost while disconnected is made up for.
   */
  checkAll(): Promise<void>;
  logger: Logger;
  pollIntervalMs?: number;
  /** `application_name` of the LISTEN connection, to tell it apart in pg_stat_activity. */
  applicationName?: string;
  /** The channel to LISTEN on, a constant of keyturn's (never input): default {@link KEY_CHANGES_CHANNEL}. */
  channel?: string;
}

/** A running subscription to key changes. */
export interface KeyEvents {
  /** True while the LISTEN connection is up; polling goes on either way. */
  readonly listening: boolean;
  /**
   * Until when a view of the database read at `confirmedAt` (a load, or a poll finding nothing
   * changed) is known to be current: `now` if the LISTEN connection has been up since before that
   * read, since every change after it would have been announced; else `confirmedAt` itself (a
   * change may have gone unannounced while the connection was down, until a poll confirms again).
   */
  knownAt(confirmedAt: number, now?: number): number;
  /** Stops listening and polling; waits for a poll in progress so the caller may end its pool after. */
  close(): Promise<void>;
}

/**
 * Subscribes to key changes: a dedicated connection LISTENs on `channel` (a pooled connection would
 * be handed to others and lose the LISTEN), reconnecting with backoff when it drops; a poll repairs
 * whatever a lost notification would have told.
 *
 * Resolves once the first connection attempt is over, listening or not: a caller that loads its state
 * after this cannot miss a change committed in between, and an unreachable database does not keep a
 * process from starting (the reconnects and the poll catch up once it is back).
 */
export async function subscribeToKeyChanges(options: KeyEventsOptions): Promise<KeyEvents> {
  const subscription = new KeyChangeSubscription(options);
  await subscription.start();
  return subscription;
}

/** The connection settings of a pool, for a dedicated connection to the same database. */
export function connectionConfigOf(pool: Pool): ClientConfig {
  // The pool keeps its constructor options; Client ignores the pool-only ones (max, idleTimeoutMillis…).
  return { ...pool.options };
}

class KeyChangeSubscription implements KeyEvents {
  #client: Client | undefined;
  /** When the LISTEN of the current connection took effect; undefined while there is none. */
  #listeningSince: number | undefined;
  #closed = false;
  #failedAttempts = 0;
  #reconnectTimer: NodeJS.Timeout | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #poll: Promise<void> | undefined;
  #pollAgain = false;

  constructor(private readonly options: KeyEventsOptions) {}

  get #channel(): string {
    return this.options.channel ?? KEY_CHANGES_CHANNEL;
  }

  get listening(): boolean {
    return this.#client !== undefined;
  }

  knownAt(confirmedAt: number, now = Date.now()): number {
    return this.#listeningSince !== undefined && confirmedAt >= this.#listeningSince ? now : confirmedAt;
  }

  async start(): Promise<void> {
    await this.#connect(false);
    this.#pollTimer = setInterval(() => this.#requestPoll(), this.options.pollIntervalMs ?? DEFAULT_POLL_INTERVAL_MS);
    // Background upkeep must not keep a process alive on its own; the caller's close() ends it.
    this.#pollTimer.unref();
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#pollTimer);
    clearTimeout(this.#reconnectTimer);
    const client = this.#client;
    this.#client = undefined;
    this.#listeningSince = undefined;
    await client?.end().catch(() => undefined);
    await this.#poll;
  }

  async #connect(isReconnect: boolean): Promise<void> {
    const client = new Client({
      ...this.options.connection,
      application_name: this.options.applicationName ?? 'keyturn-key-events',
      keepAlive: true,
      query_timeout: HEARTBEAT_TIMEOUT_MS,
    });
    // An 'error' without a listener would crash the process; a lost connection is routine here.
    client.on('error', (error) => this.#lost(client, error));
    client.on('end', () => this.#lost(client));
    client.on('notification', (message) => this.#notified(message));
    try {
      await client.connect();
      // The channel is a constant identifier: nothing from outside reaches this statement.
      await client.query(`LISTEN ${this.#channel}`);
    } catch (error) {
      await client.end().catch(() => undefined);
      if (this.#closed) return;
      this.options.logger.warn(
        { err: error, attempt: this.#failedAttempts + 1 },
        'cannot LISTEN for key changes; retrying',
      );
      this.#scheduleReconnect();
      return;
    }
    if (this.#closed) {
      await client.end().catch(() => undefined);
      return;
    }
    this.#client = client;
    this.#listeningSince = Date.now();
    this.#failedAttempts = 0;
    if (isReconnect) {
      this.options.logger.info('listening for key changes again; checking for changes missed meanwhile');
      this.#requestPoll();
    }
  }

  #lost(client: Client, error?: Error): void {
    // Events of a connection being set up or already replaced are not ours to act on.
    if (this.#client !== client) return;
    this.#client = undefined;
    this.#listeningSince = undefined;
    // Destroyed rather than ended: a dead peer would never acknowledge a polite goodbye.
    client.connection.stream.destroy();
    if (this.#closed) return;
    this.options.logger.warn({ err: error }, 'lost the LISTEN connection for key changes; reconnecting');
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#closed || this.#reconnectTimer !== undefined) return;
    const ceiling = Math.min(RECONNECT_MAX_MS, RECONNECT_FIRST_MS * 2 ** this.#failedAttempts);
    this.#failedAttempts += 1;
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      void this.#connect(true);
    }, delay);
    this.#reconnectTimer.unref();
  }

  #notified(message: Notification): void {
    if (message.channel !== this.#channel || !message.payload) return;
    const keySetId = message.payload;
    const failed = (error: unknown) =>
      this.options.logger.error({ err: error, keySetId }, 'handling a key change notification failed');
    try {
      const result = this.options.onChange(keySetId);
      if (result instanceof Promise) result.catch(failed);
    } catch (error) {
      failed(error);
    }
  }

  /**
   * Runs the repair now, or right after the one in progress: that one may have read the database
   * before the change it is asked to repair (e.g. before a reconnect's LISTEN was in place).
   */
  #requestPoll(): void {
    if (this.#closed) return;
    if (this.#poll !== undefined) {
      this.#pollAgain = true;
      return;
    }
    this.#poll = (async () => {
      do {
        this.#pollAgain = false;
        await this.#heartbeat();
        try {
          await this.options.checkAll();
        } catch (error) {
          this.options.logger.warn({ err: error }, 'polling for key changes failed; will try again');
        }
      } while (this.#pollAgain && !this.#closed);
    })().finally(() => (this.#poll = undefined));
  }

  /** A connection can die without telling (a dropped NAT entry, a proxy): ask it something. */
  async #heartbeat(): Promise<void> {
    const client = this.#client;
    if (client === undefined) return;
    try {
      await client.query('SELECT 1');
    } catch (error) {
      this.#lost(client, error instanceof Error ? error : new Error(String(error)));
    }
  }
}
