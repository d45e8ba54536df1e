import { condition, patched } from '@temporalio/workflow';
import { roughDuration } from '../domain/describe';
import { propagationIncident, propagationIncidentKid } from '../domain/incidents';
import { policyTimings } from '../domain/policy';
import { publicationActivities } from './activity-proxies';
import { raiseAlert } from './alerts';
import type { KeySetMachine } from './keyset-machine';

/** The patch that introduced the propagation gate: histories from before it replay without it. */
const PROPAGATION_GATE = 'propagation-gate';

/**
 * The propagation gate: a key must be listed at every JWKS URL (the policy's `publishedAt`, else the
 * deployment's own) before it signs. Asks again with backoff, alerts once it has waited longer than
 * `jwksMaxAge` (and again whenever a reminder is due), and gives up the wait (false) when a
 * revocation arrives. A first key and an emergency replacement do not pass through it.
 */
export async function awaitPublication(machine: KeySetMachine, kid: string): Promise<boolean> {
  if (!patched(PROPAGATION_GATE)) return true;
  const { jwksMaxAgeMs } = policyTimings(machine.policy);
  const incident = propagationIncident(kid);
  const since = Date.now();
  let delayMs = 100;
  // Back after a revocation with the key still waiting: its incident goes on (a repeat is not announced).
  let alerted = machine.incident(incident) !== null;
  let remindAt: number | null = alerted ? since : null;
  for (;;) {
    const { missing } = await publicationActivities.checkPublication({ keySetId: machine.keySetId, kid, urls: machine.policy.publishedAt });
    if (missing.length === 0) {
      if (alerted) await raiseAlert(machine, { incident, status: 'resolved', step: 'propagation', kid, summary: `next key ${kid} is published everywhere` });
      return true;
    }
    const now = Date.now();
    if (alerted ? remindAt !== null && now >= remindAt : now - since >= jwksMaxAgeMs) {
      alerted = true;
      remindAt = await raiseAlert(machine, {
        incident,
        status: 'firing',
        step: 'propagation',
        kid,
        summary: `next key ${kid} of key set "${machine.keySetId}" is not published after ${roughDuration(now - since)}; its promotion waits`,
        error: missing.map((m) => `${m.url}: ${m.reason}`).join('; '),
      });
    }
    if (await condition(() => machine.revocationPending, delayMs, { summary: `wait for ${kid} to be published` })) return false;
    delayMs = Math.min(delayMs * 2, 60_000);
  }
}

/**
 * Resolves the propagation incident of a key that no longer waits at the gate because a revocation
 * promoted it (or revoked it) without the gate. Only incidents kept in the state are concerned.
 */
export async function endGateWaitsOvertaken(machine: KeySetMachine): Promise<void> {
  const next = machine.key('next')?.kid;
  for (const { key } of machine.openIncidents) {
    const kid = propagationIncidentKid(key);
    if (kid === undefined || kid === next) continue;
    const why = machine.key('active')?.kid === kid ? 'it was promoted at once after a revocation' : 'it was revoked';
    await raiseAlert(machine, { incident: key, status: 'resolved', step: 'propagation', kid, summary: `next key ${kid} no longer waits to be published: ${why}` });
  }
}
