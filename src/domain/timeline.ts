import { graceMs, type KeyTimeline } from './lifecycle';
import type { PolicyTimings } from './policy';

/**
 * A key set's keys laid out in time, for a chart: each key's next, active, grace and retired periods,
 * as recorded where they have happened and as the policy plans them where they have not. The plan
 * follows the lifecycle's rules without the things no one can know ahead (a rotation asked for, a
 * slow JWKS listing, a revocation): the active key signs for the rotation period, its successor is
 * generated `prepublish` before that ends, a demoted key verifies for its grace, a retired one is
 * kept for `retirement`.
 */

export const TIMELINE_PHASES = ['next', 'active', 'grace', 'retired'] as const;
export type TimelinePhase = (typeof TIMELINE_PHASES)[number];

export interface TimelinePeriod {
  phase: TimelinePhase;
  start: number;
  end: number;
  /** Not happened yet: a period after now, or the part after now of the one a key is in. */
  planned: boolean;
}

export interface TimelineRow {
  /** The key's kid; undefined for the key the policy will generate next, which has none yet. */
  kid: string | undefined;
  periods: TimelinePeriod[];
}

/** The rows of a key set's keys, oldest first, and one for the key it will generate next when none is waiting. */
export function keySetTimeline(keys: readonly KeyTimeline[], timings: PolicyTimings, now: number): TimelineRow[] {
  const sorted = [...keys].sort((a, b) => a.createdAt - b.createdAt);
  const active = sorted.find((key) => key.state === 'active');
  // When the active key's rotation period ends: the next key is promoted then (or once it may sign).
  const activeEndsAt =
    active === undefined
      ? undefined
      : Math.max((active.activatedAt ?? active.createdAt) + timings.rotationPeriodMs, now);
  const rows: TimelineRow[] = sorted.map((key) => ({
    kid: key.kid,
    periods: splitAtNow(keyPeriods(key, timings, now, activeEndsAt), now),
  }));
  if (activeEndsAt !== undefined && !sorted.some((key) => key.state === 'next')) {
    const createdAt = Math.max(activeEndsAt - timings.prepublishMs, now);
    const successor = plannedKey(createdAt, Math.max(activeEndsAt, createdAt + timings.jwksMaxAgeMs), timings);
    rows.push({ kid: undefined, periods: successor });
  }
  return rows;
}

/** One key's four periods, from its recorded times and, where a time is not reached yet, the plan. */
function keyPeriods(
  key: KeyTimeline,
  timings: PolicyTimings,
  now: number,
  activeEndsAt: number | undefined,
): TimelinePeriod[] {
  const activatedAt =
    key.activatedAt ??
    // A next key: promoted once the active key's period ends and it may sign, whichever is later.
    Math.max(activeEndsAt ?? now, key.promotableAt ?? key.createdAt + timings.jwksMaxAgeMs, now);
  const demotedAt = key.demotedAt ?? Math.max(activatedAt + timings.rotationPeriodMs, now);
  const retiredAt = key.retiredAt ?? Math.max(key.graceEndsAt ?? demotedAt + graceMs(key, timings), now);
  const periods: TimelinePeriod[] = [
    { phase: 'next', start: key.createdAt, end: activatedAt, planned: false },
    { phase: 'active', start: activatedAt, end: demotedAt, planned: false },
    { phase: 'grace', start: demotedAt, end: retiredAt, planned: false },
    { phase: 'retired', start: retiredAt, end: retiredAt + timings.retirementMs, planned: false },
  ];
  // A key promoted at once (bootstrap) was never a next key: an empty period is no period.
  return periods.filter((period) => period.end > period.start);
}

/** A key not generated yet: listed from `createdAt`, signing from `activatedAt`, then the policy's periods. */
function plannedKey(createdAt: number, activatedAt: number, timings: PolicyTimings): TimelinePeriod[] {
  const demotedAt = activatedAt + timings.rotationPeriodMs;
  const retiredAt = demotedAt + graceMs({}, timings);
  return [
    { phase: 'next', start: createdAt, end: activatedAt, planned: true },
    { phase: 'active', start: activatedAt, end: demotedAt, planned: true },
    { phase: 'grace', start: demotedAt, end: retiredAt, planned: true },
    { phase: 'retired', start: retiredAt, end: retiredAt + timings.retirementMs, planned: true },
  ];
}

/** Periods before now are past, after now planned; the one that spans now is cut in two. */
function splitAtNow(periods: TimelinePeriod[], now: number): TimelinePeriod[] {
  return periods.flatMap((period) => {
    if (period.end <= now) return [{ ...period, planned: false }];
    if (period.start >= now) return [{ ...period, planned: true }];
    return [
      { ...period, end: now, planned: false },
      { ...period, start: now, planned: true },
    ];
  });
}
