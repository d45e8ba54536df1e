import { condition, patched } from '@temporalio/workflow';
import { policyTimings } from '../domain/policy';
import { publicationActivities } from './activity-proxies';
import { raiseAlert } from './alerts';
import type { KeySetMachine } from './keyset-machine';

/** The patch that introduced the propagation gate: histories from before it replay without it. */
const PROPAGATION_GATE = 'propagation-gate';

/**
 * The propagation gate: a key must be listed at every JWKS URL (the policy's `publishedAt`, else the
 * deployment's own) before it signs. Asks again with backoff, alerts once it has waited longer than
 * `jwksMaxAge`, and gives up the wait (false) when a revocation arrives. A first key and an
 * emergency replacement do not pass through it.
 */
export async function awaitPublication(machine: KeySetMachine, kid: string): Promise<boolean> {
  if (!patched(PROPAGATION_GATE)) return true;
  const { jwksMaxAgeMs } = policyTimings(machine.policy);
  const since = Date.now();
  let delayMs = 100;
  let alerted = false;
  for (;;) {
    const { missing } = await publicationActivities.checkPublication({ keySetId: machine.keySetId, kid, urls: machine.policy.publishedAt });
    if (missing.length === 0) {
      if (alerted) await raiseAlert(machine, { status: 'resolved', step: 'propagation', summary: `next key ${kid} is published everywhere` });
      return true;
    }
    if (!alerted && Date.now() - since >= jwksMaxAgeMs) {
      alerted = true;
      await raiseAlert(machine, {
        status: 'firing',
        step: 'propagation',
        summary: `next key ${kid} of key set "${machine.keySetId}" is not published after ${machine.policy.jwksMaxAge}; its promotion waits`,
        error: missing.map((m) => `${m.url}: ${m.reason}`).join('; '),
      });
    }
    if (await condition(() => machine.revocationPending, delayMs, { summary: `wait for ${kid} to be published` })) return false;
    delayMs = Math.min(delayMs * 2, 60_000);
  }
}
