/** A token bucket's settings: how many requests a second it refills, and how many it holds at most. */
export interface Rate {
  perSecond: number;
  burst: number;
}

const UNIT_SECONDS = { s: 1, m: 60, h: 3_600 } as const;
const RATE = /^(\d+)\/(s|m|h)$/;

export const RATE_HINT = 'write a whole number of requests per s, m or h, e.g. 100/s or 6000/m';

/**
 * A rate such as `100/s`, `6000/m` or `1000/h` as requests per second, or undefined when `value` is not
 * one (or is zero: a client that may sign nothing is a revoked one).
 */
export function rateToPerSecond(value: string): number | undefined {
  const match = RATE.exec(value.trim());
  if (match === null) return undefined;
  const perSecond = Number(match[1]) / UNIT_SECONDS[match[2] as keyof typeof UNIT_SECONDS];
  return perSecond > 0 && Number.isFinite(perSecond) ? perSecond : undefined;
}

/** The burst of a rate nobody chose one for: two seconds' worth, and at least one request. */
export function defaultBurst(perSecond: number): number {
  return Math.max(1, Math.ceil(perSecond * 2));
}
