import type { Pool } from 'pg';
import type { Logger } from '../logger';
import { recordSignerDenials, type SignerDenial } from '../store/signer-clients';

/** Distinct (key set, client, code) lines held between flushes; more are counted in the log only. */
const MAX_PENDING = 1_000;

/**
 * Records the signer's denials in the audit trail of the key set each request named, summed over a
 * window (default a minute): a client hammering the service with refused requests writes one event
 * per window and reason, not one per request. What a request asked to sign is never recorded.
 */
export class DenialAudit {
  readonly #pending = new Map<string, SignerDenial>();
  #overflow = 0;
  readonly #timer: NodeJS.Timeout;
  #flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly pool: Pool,
    private readonly logger: Logger,
    windowMs = 60_000,
  ) {
    this.#timer = setInterval(() => void this.flush(), windowMs);
    this.#timer.unref();
  }

  /** Counts one refused request for `keySetId` (as the request named it) by `client` (null: unauthenticated). */
  deny(keySetId: string, client: string | null, code: string): void {
    const key = `${keySetId}\u0000${client ?? ''}\u0000${code}`;
    const now = Date.now();
    const pending = this.#pending.get(key);
    if (pending !== undefined) {
      pending.count += 1;
      pending.lastAt = now;
    } else if (this.#pending.size < MAX_PENDING) {
      this.#pending.set(key, { keySetId, client, code, count: 1, firstAt: now, lastAt: now });
    } else {
      this.#overflow += 1;
    }
  }

  /** Writes what was counted since the last flush; a failure is logged, and those counts are lost to the trail. */
  flush(): Promise<void> {
    const denials = [...this.#pending.values()];
    const overflow = this.#overflow;
    this.#pending.clear();
    this.#overflow = 0;
    if (overflow > 0) {
      this.logger.warn({ overflow }, 'signer denials beyond what one audit window holds: counted in the log only');
    }
    this.#flushing = this.#flushing.then(() =>
      recordSignerDenials(this.pool, denials, 'keyturn-signer').catch((error: unknown) =>
        this.logger.error({ err: error, denials: denials.length }, 'cannot record signer denials in the audit trail'),
      ),
    );
    return this.#flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.flush();
  }
}
