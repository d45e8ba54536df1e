import type { Pool } from 'pg';
import { formatDuration } from '../domain/duration';
import { policyTimings } from '../domain/policy';
import { getPolicy } from '../store/key-set-registry';
import { listKeys } from '../store/stored-keys';

/** What `GET /v1/keysets/{id}` answers, for clients that cache: which key signs now, and until when at the earliest. */
export interface KeySetInfo {
  keySetId: string;
  /** The active key's kid and algorithm; null while the key set has none. */
  kid: string | null;
  alg: string | null;
  activatedAt: string | null;
  /** The published next key, which signs after the next rotation; null when there is none yet. */
  nextKid: string | null;
  /** The planned rotation (rotationPeriod after the active key's activation, not before the next key may sign). */
  nextRotationAt: string | null;
  /** The longest ttl a token of this key set may be given here. */
  maxTokenTtl: string;
}

/** The key set's signing state, read from PostgreSQL; undefined for a key set that is not registered. */
export async function readKeySetInfo(
  pool: Pool,
  keySetId: string,
  maxTokenTtlCeilingMs: number,
): Promise<KeySetInfo | undefined> {
  const policy = await getPolicy(pool, keySetId);
  if (policy === undefined) return undefined;
  const timings = policyTimings(policy);
  const keys = await listKeys(pool, keySetId);
  const active = keys.find((k) => k.state === 'active');
  const next = keys.find((k) => k.state === 'next');
  const iso = (ms: number | null | undefined) => (ms === null || ms === undefined ? null : new Date(ms).toISOString());
  const rotation =
    active?.activatedAt == null
      ? null
      : Math.max(active.activatedAt + timings.rotationPeriodMs, next?.promotableAt ?? 0);
  return {
    keySetId,
    kid: active?.kid ?? null,
    alg: active?.alg ?? null,
    activatedAt: iso(active?.activatedAt),
    nextKid: next?.kid ?? null,
    nextRotationAt: iso(rotation),
    maxTokenTtl: formatDuration(Math.min(timings.maxTokenTtlMs, maxTokenTtlCeilingMs)),
  };
}
