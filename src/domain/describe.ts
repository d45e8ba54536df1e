import type { KeySetStatus } from './key-set-state';
import type { KeyTimeline, ScheduledTransition } from './lifecycle';
import type { KeySetPolicy } from './policy';

/** The one-line summary a key set's workflow carries from its start, e.g. in the Web UI's list. */
export function keySetSummary(keySetId: string, policy: KeySetPolicy): string {
  return `JWT key set ${keySetId} — ${policy.algorithm}, rotates every ${policy.rotationPeriod}`;
}

/** Each scheduled transition in words, for people reading status and the Web UI. */
export const TRANSITION_WORDS: Record<ScheduledTransition['kind'], string> = {
  bootstrap: 'generate and promote a first key',
  generateNext: 'generate and publish the next key',
  checkPublication: 'check that the next key is listed at every JWKS URL',
  promote: 'promote the next key',
  withdraw: 'withdraw the next key (its algorithm changed)',
  retire: 'retire a grace key',
  destroy: 'destroy a retired key',
};

/** Epoch milliseconds as a UTC timestamp to the second. */
export function utc(ms: number): string {
  return `${new Date(ms).toISOString().slice(0, 19).replace('T', ' ')} UTC`;
}

/** A length of time to the minute in its two largest units (`31d 2h`, `1h 5m`, `42m`), or seconds under a minute. */
export function roughDuration(ms: number): string {
  const minutes = Math.floor(ms / 60_000);
  const parts = [
    [Math.floor(minutes / 1440), 'd'],
    [Math.floor(minutes / 60) % 24, 'h'],
    [minutes % 60, 'm'],
  ] as const;
  const first = parts.findIndex(([n]) => n > 0);
  if (first === -1) return `${Math.max(0, Math.floor(ms / 1000))}s`;
  return parts
    .slice(first, first + 2)
    .filter(([n]) => n > 0)
    .map(([n, unit]) => `${n}${unit}`)
    .join(' ');
}

/**
 * A key set's state in words, for the workflow's current details (the Web UI shows them while
 * a worker runs): the keys and their times, the next transition, pause and last error, as a Markdown list.
 */
export function describeKeySet(status: KeySetStatus): string {
  const lines: string[] = [];
  const active = status.keys.find((k) => k.state === 'active');
  const next = status.keys.find((k) => k.state === 'next');
  lines.push(
    active
      ? `Active key: ${active.kid} (${active.alg}) since ${utc(active.activatedAt ?? active.createdAt)}`
      : 'Active key: none',
  );
  lines.push(next ? `Next key: ${next.kid}, ${describeNextKey(next)}` : 'Next key: none yet');
  for (const key of status.keys.filter((k) => k.state === 'grace')) {
    lines.push(
      `Grace key: ${key.kid}, verifies until ${key.graceEndsAt === undefined ? 'its grace period ends' : utc(key.graceEndsAt)}`,
    );
  }
  if (status.rotation) {
    const { requestedBy, requestedAt, reason, immediately } = status.rotation;
    lines.push(
      `Rotation asked for by ${requestedBy} at ${utc(requestedAt)} (${reason})${immediately ? ', at once' : ''}`,
    );
  }
  const retired = status.keys.filter((k) => k.state === 'retired').length;
  if (retired > 0) lines.push(`Retired keys awaiting destruction: ${retired}`);
  const transition = status.nextTransition;
  lines.push(
    transition
      ? `Next transition: ${TRANSITION_WORDS[transition.kind]}${'kid' in transition ? ` (${transition.kid})` : ''} at ${utc(transition.at)}`
      : 'Next transition: none scheduled',
  );
  lines.push(status.paused ? `Paused since ${utc(status.paused.since)}: ${status.paused.reason}` : 'Paused: no');
  lines.push(
    status.lastError
      ? `Last error: ${status.lastError.step} failed ${status.lastError.failures} time(s), last at ${utc(status.lastError.at)}: ${status.lastError.message}`
      : 'Last error: none',
  );
  lines.push(
    `Policy: ${Object.entries(status.policy)
      .map(([field, value]) => `${field} ${value}`)
      .join(', ')}`,
  );
  // The Web UI renders current details as Markdown: one list item per line.
  return lines.map((line) => `- ${line}`).join('\n');
}

/** Where a next key stands on its way to signing. */
function describeNextKey(next: KeyTimeline): string {
  const generated = `generated ${utc(next.createdAt)}`;
  if (next.listedAt === undefined) return `${generated}, waiting to be listed at every JWKS URL`;
  return `${generated}, listed everywhere ${utc(next.listedAt)}, may sign from ${utc(next.promotableAt ?? next.listedAt)}`;
}
