import type { Pool } from 'pg';
import type { KeySetPolicy } from '../../src/domain/policy';
import { readTimedTrail, windowViolations } from './lifecycle-windows';
import type { TokenTraffic } from './token-traffic';

/**
 * Everything wrong with a key set after a fault, in words: tokens `traffic` saw rejected, windows the
 * audit trail shows broken, keys duplicated, lost or diverging from the trail, other than exactly one
 * active key (none once `woundDown`). Empty when all is well; otherwise the trail follows.
 */
export async function keySetProblems(
  pool: Pool,
  keySetId: string,
  policy: KeySetPolicy,
  traffic: TokenTraffic,
  { woundDown = false }: { woundDown?: boolean } = {},
): Promise<string[]> {
  // One snapshot for the trail and the keys: a key set that goes on rotating commits between two reads.
  const client = await pool.connect();
  let trail, keys;
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    trail = await readTimedTrail(client, keySetId);
    keys = (
      await client.query<{ kid: string; state: string }>('SELECT kid, state FROM signing_keys WHERE key_set_id = $1', [
        keySetId,
      ])
    ).rows;
    await client.query('COMMIT');
  } finally {
    client.release();
  }
  const problems = [
    ...traffic.rejections.filter((r) => r.startsWith(`${keySetId}:`)),
    ...windowViolations(trail, policy, traffic.lastExpiry),
  ];
  const active = keys.filter((k) => k.state === 'active');
  if (active.length !== (woundDown ? 0 : 1))
    problems.push(`${active.length} active keys: ${active.map((k) => k.kid).join(', ')}`);
  for (const key of keys) {
    const last = trail.filter((e) => e.kid === key.kid && e.toState !== null).at(-1);
    if (last?.toState !== key.state)
      problems.push(`${key.kid} is ${key.state}, but its last audit event took it to ${last?.toState ?? 'nothing'}`);
  }
  for (const e of trail.filter((e) => e.event === 'generated' && !keys.some((k) => k.kid === e.kid)))
    problems.push(`${e.kid} was generated but is not stored`);
  if (problems.length === 0) return [];
  const start = trail[0]?.occurredAt ?? 0;
  const lines = trail.map(
    (e) =>
      `  ${e.event} ${e.kid ?? ''} ${e.fromState ?? ''}→${e.toState ?? ''}: +${e.occurredAt - start} ms (its transaction began at +${e.recordedAt - start} ms)`,
  );
  return [...problems, 'audit trail (commit times, from its first event):', ...lines];
}
