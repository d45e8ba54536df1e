import { KeyturnError } from './errors';

const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
type Unit = keyof typeof UNIT_MS;

// Largest unit first, so that formatting picks the shortest exact spelling.
const UNITS_DESCENDING: Unit[] = ['d', 'h', 'm', 's', 'ms'];
const DURATION = /^(\d+)(ms|s|m|h|d)$/;

/**
 * The longest duration: 100 years. Times planned from a policy (a few durations added to now) then stay
 * valid dates for JavaScript, PostgreSQL and Temporal's timestamps, which end at year 9999.
 */
const MAX_DURATION_MS = 36_500 * UNIT_MS.d;

export const DURATION_HINT = 'write a whole number and a unit, at most 36500d, e.g. 30d, 12h, 15m, 90s, 500ms';

/**
 * A policy duration such as `30d`, `12h`, `15m`, `90s` or `500ms` in milliseconds, or undefined when
 * `value` is not one. One whole number and one unit, so a value reads the same in YAML, logs and the Web UI.
 */
export function durationToMs(value: unknown): number | undefined {
  const match = typeof value === 'string' ? DURATION.exec(value.trim()) : null;
  if (match === null) return undefined;
  const ms = Number(match[1]) * UNIT_MS[match[2] as Unit];
  return ms <= MAX_DURATION_MS ? ms : undefined;
}

/** Like durationToMs, but throws ERR_DURATION_INVALID naming `field`. */
export function parseDuration(value: unknown, field = 'duration'): number {
  const ms = durationToMs(value);
  if (ms === undefined) {
    throw new KeyturnError(
      'ERR_DURATION_INVALID',
      `${field}: ${JSON.stringify(value)} is not a duration; ${DURATION_HINT}`,
      {
        field,
      },
    );
  }
  return ms;
}

/** Formats milliseconds in the largest unit that divides them exactly (`2592000000` → `30d`). */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new TypeError(`formatDuration expects a non-negative whole number of milliseconds, got ${ms}`);
  }
  const unit = UNITS_DESCENDING.find((u) => ms % UNIT_MS[u] === 0 && ms >= UNIT_MS[u]) ?? 'ms';
  return `${ms / UNIT_MS[unit]}${unit}`;
}
