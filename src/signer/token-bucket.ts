import type { Rate } from '../domain/rate';

/**
 * A token bucket: holds up to `burst` requests, refilled at `perSecond`. Refilled lazily on each take,
 * so an idle client costs nothing.
 */
export class TokenBucket {
  #tokens: number;
  #updatedAt: number;

  constructor(
    readonly rate: Rate,
    now = performance.now(),
  ) {
    this.#tokens = rate.burst;
    this.#updatedAt = now;
  }

  /** Takes one request's token: 0 if there was one, else the milliseconds until there will be. */
  take(now = performance.now()): number {
    const { perSecond, burst } = this.rate;
    this.#tokens = Math.min(burst, this.#tokens + ((now - this.#updatedAt) * perSecond) / 1000);
    this.#updatedAt = now;
    if (this.#tokens >= 1) {
      this.#tokens -= 1;
      return 0;
    }
    return ((1 - this.#tokens) * 1000) / perSecond;
  }
}
