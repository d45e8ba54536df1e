import { roughDuration } from '../domain/describe';
import { propagationIncident, propagationIncidentKid } from '../domain/incidents';
import { listingWaitMs } from '../domain/lifecycle';
import type { KeyChange } from '../store/key-store';
import { changeKeys } from './activity-proxies';
import { raiseAlert } from './alerts';
import type { KeySetMachine } from './key-set-machine';

/**
 * The propagation gate, one look at a time: is the next key listed at every JWKS URL (the policy's
 * `publishedAt`, else the deployment's own)? Once it is, the listing is recorded and the key may sign
 * `jwksMaxAge` later (`prepublish` when it brings a new algorithm), when every verifier's cache holds
 * it. Until then the machine asks again with backoff, and once the key holds up its promotion and has
 * been missing for `jwksMaxAge`, an alert says the promotion waits. Between looks the main loop
 * sleeps, serves messages, retires and destroys keys, and continues as new when its history grows: a
 * wait of any length costs nothing else.
 */
export async function checkPublication(
  machine: KeySetMachine,
  kid: string,
  change: Omit<KeyChange, 'operationId'>,
): Promise<void> {
  const next = machine.key('next');
  if (next?.kid !== kid) return;
  const { missing, listed } = await changeKeys('confirmPublication', `is ${kid} listed at every JWKS URL?`, {
    ...change,
    kid,
    urls: machine.policy.publishedAt,
    waitMs: listingWaitMs(next, machine.key('active'), machine.timings),
    notBefore: machine.staleCachesUntil,
  });
  const incident = propagationIncident(kid);
  if (listed !== undefined) {
    machine.keyListed(listed);
    if (machine.incident(incident)) {
      await raiseAlert(machine, {
        incident,
        status: 'resolved',
        step: 'propagation',
        kid,
        summary: `next key ${kid} is published everywhere`,
      });
    }
    return;
  }
  const now = Date.now();
  const wait = machine.publicationPending(next, now);
  if (now < wait.alertAt) return;
  const remindAt = await raiseAlert(machine, {
    incident,
    status: 'firing',
    step: 'propagation',
    kid,
    summary: `next key ${kid} of key set "${machine.keySetId}" is not published after ${roughDuration(now - wait.since)}; its promotion waits`,
    error: missing.map((m) => `${m.url}: ${m.reason}`).join('; '),
  });
  if (remindAt !== null) machine.publicationAlerted(remindAt);
}

/**
 * Resolves the propagation incident of a key the gate no longer waits for: it was promoted at once
 * after a revocation, revoked, or withdrawn. Only incidents kept in the state are concerned.
 */
export async function endGateWaitsOvertaken(machine: KeySetMachine): Promise<void> {
  const next = machine.key('next');
  for (const { key } of machine.openIncidents) {
    const kid = propagationIncidentKid(key);
    if (kid === undefined || (kid === next?.kid && next.listedAt === undefined)) continue;
    const state = machine.state.keys.find((k) => k.kid === kid)?.state;
    const why =
      state === 'active'
        ? 'it was promoted at once after a revocation'
        : state === 'retired'
          ? 'it was withdrawn'
          : state === 'next'
            ? 'it is listed now'
            : 'it was revoked';
    await raiseAlert(machine, {
      incident: key,
      status: 'resolved',
      step: 'propagation',
      kid,
      summary: `next key ${kid} no longer waits to be published: ${why}`,
    });
  }
}
