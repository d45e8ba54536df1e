import { KeyturnError } from '../domain/errors';
import type { Incident } from '../domain/incidents';
import type { KeySetCommand, KeySetState, KeySetStatus, LastError } from '../domain/keyset-state';
import { REVOCABLE_STATES, nextTransition, type KeyTimeline, type ScheduledTransition } from '../domain/lifecycle';
import { policyTimings, validatePolicy, type KeySetPolicy } from '../domain/policy';
import type { RevocationRequest } from './messages';

/** What the main loop does next. */
export type Step =
  | { type: 'load' }
  | { type: 'command'; command: KeySetCommand }
  | { type: 'transition'; transition: ScheduledTransition }
  /** Decommissioned and every key is gone: the workflow is done. */
  | { type: 'complete' }
  /** Nothing is due; wake at `until` (never, when undefined) or when a message changes the state. */
  | { type: 'wait'; until?: number };

const FIRST_BACKOFF_MS = 60_000;
const MAX_BACKOFF_MS = 3_600_000;

/** How long scheduled work waits after its `failures`-th consecutive failure: 1 min, doubling, at most 1 h. */
export function failureBackoffMs(failures: number): number {
  return Math.min(FIRST_BACKOFF_MS * 2 ** Math.max(0, failures - 1), MAX_BACKOFF_MS);
}

export function initialState(keySetId: string, policy: KeySetPolicy): KeySetState {
  return { keySetId, policy, keys: [], loaded: false, paused: null, commands: [], lastError: null, retryAt: null };
}

/**
 * A key set's state and the rules for changing it, with no I/O: the workflow asks it what to do,
 * performs that through activities, and tells it what happened. Every change bumps `revision`, which
 * is what the main loop's wait watches.
 */
export class KeySetMachine {
  revision = 0;
  /** The step whose activities are running, for `getState`. */
  inFlight: string | null = null;

  constructor(private readonly s: KeySetState) {}

  /** The JSON-safe state to carry into the next run. */
  get state(): KeySetState {
    return this.s;
  }

  get keySetId(): string {
    return this.s.keySetId;
  }

  get policy(): KeySetPolicy {
    return this.s.policy;
  }

  key(state: KeyTimeline['state']): KeyTimeline | undefined {
    return this.s.keys.find((k) => k.state === state);
  }

  nextStep(now: number): Step {
    const retryAt = this.s.retryAt ?? 0;
    const backingOff = retryAt > now;
    // Revocations first: they are emergencies. Commands someone waits for (Updates) skip the
    // backoff too; a signalled rotation waits for it like scheduled work.
    const urgent =
      this.s.commands.find((c) => c.type === 'revoke') ??
      this.s.commands.find((c) => c.type === 'decommission' || (c.type === 'rotate' && !c.viaSignal));
    if (!this.s.loaded) return backingOff && !urgent ? { type: 'wait', until: retryAt } : { type: 'load' };
    const command = urgent ?? (backingOff ? undefined : this.s.commands[0]);
    if (command) return { type: 'command', command };
    // A signalled rotation held back by the backoff is due when the backoff ends.
    const commandDue = this.s.commands.length > 0 ? retryAt : Infinity;
    if (this.windingDown && this.s.keys.length === 0 && this.s.commands.length === 0) return { type: 'complete' };
    const transition = this.s.paused ? undefined : this.transitionAt(now);
    const transitionDue = transition === undefined ? Infinity : Math.max(transition.at, retryAt);
    if (transition !== undefined && transitionDue <= now) return { type: 'transition', transition };
    const until = Math.min(commandDue, transitionDue);
    return until === Infinity ? { type: 'wait' } : { type: 'wait', until };
  }

  status(now: number): KeySetStatus {
    const step = this.s.loaded && !this.s.paused ? this.transitionAt(now) : undefined;
    return {
      keySetId: this.s.keySetId,
      policy: this.s.policy,
      paused: this.s.paused,
      decommissioned: this.s.decommissioned ?? null,
      keys: this.s.keys.map((k) => ({ ...k })),
      nextTransition: step ? { ...step, at: Math.max(step.at, this.s.retryAt ?? 0) } : null,
      lastError: this.s.lastError,
      pendingCommands: this.s.commands.length,
      inFlight: this.inFlight,
    };
  }

  /** A revocation is waiting: it goes before anything else, even a promotion held at the gate. */
  get revocationPending(): boolean {
    return this.s.commands.some((c) => c.type === 'revoke');
  }

  /** True once the key set is decommissioned: nothing new is generated or promoted. */
  get windingDown(): boolean {
    return Boolean(this.s.decommissioned);
  }

  private transitionAt(now: number): ScheduledTransition | undefined {
    return nextTransition(this.s.keys, policyTimings(this.s.policy), now, { windingDown: this.windingDown });
  }

  // --- operator messages ---

  enqueue(command: KeySetCommand): void {
    this.s.commands.push(command);
    this.changed();
  }

  /** Drops a command once it has run (or failed for good). */
  complete(commandId: string): void {
    this.s.commands = this.s.commands.filter((c) => c.id !== commandId);
    this.changed();
  }

  pause(reason: string, now: number): void {
    this.s.paused = { reason, since: now };
    this.changed();
  }

  resume(): void {
    this.s.paused = null;
    this.changed();
  }

  /** The whole policy that `patch` would put in force; throws a PolicyError naming every bad field. */
  policyWith(patch: unknown): KeySetPolicy {
    return validatePolicy(patch, { keySetId: this.s.keySetId, base: this.s.policy });
  }

  setPolicy(policy: KeySetPolicy): void {
    this.s.policy = policy;
    this.changed();
  }

  /** Throws unless `reason` says something: operator changes are recorded with why. */
  assertReason(reason: unknown, action: string): void {
    if (typeof reason !== 'string' || reason.trim() === '') {
      throw new KeyturnError('ERR_REASON_REQUIRED', `to ${action} of key set "${this.s.keySetId}" give a reason`, {
        keySetId: this.s.keySetId,
        field: 'reason',
      });
    }
  }

  /** Throws unless `request` names a live key of this set and gives a reason. */
  assertRevocable(request: RevocationRequest): KeyTimeline {
    this.assertReason(request?.reason, 'revoke a key');
    const key = this.s.keys.find((k) => k.kid === request.kid);
    if (key === undefined || !REVOCABLE_STATES.includes(key.state)) {
      throw new KeyturnError(
        'ERR_KID_UNKNOWN',
        `key set "${this.s.keySetId}" has no live key "${request.kid}"; \`keyturn status ${this.s.keySetId}\` lists its keys`,
        { keySetId: this.s.keySetId, kid: request.kid },
      );
    }
    return key;
  }

  /** Throws while the key set winds down: it takes no new keys. */
  assertNotWindingDown(action: string): void {
    if (this.windingDown) {
      throw new KeyturnError('ERR_KEYSET_DECOMMISSIONED', `cannot ${action}: key set "${this.s.keySetId}" is decommissioned and winding down`, {
        keySetId: this.s.keySetId,
      });
    }
  }

  // --- what the activities did ---

  loaded(keys: KeyTimeline[]): void {
    this.s.keys = keys;
    this.s.loaded = true;
    this.changed();
  }

  keyGenerated(key: KeyTimeline): void {
    this.s.keys.push(key);
    this.changed();
  }

  keyPromoted(kid: string, demotedKid: string | null, at: number): void {
    for (const key of this.s.keys) {
      if (key.kid === kid) Object.assign(key, { state: 'active', activatedAt: at });
      else if (key.kid === demotedKid) Object.assign(key, { state: 'grace', demotedAt: at });
    }
    this.changed();
  }

  /** The wind-down began: the given keys are now in their grace period. */
  woundDown(reason: string, demotedKids: string[], at: number): void {
    for (const key of this.s.keys) {
      if (demotedKids.includes(key.kid)) Object.assign(key, { state: 'grace', demotedAt: at });
    }
    this.s.decommissioned = { reason, since: at };
    this.changed();
  }

  keyRetired(kid: string, at: number): void {
    const key = this.s.keys.find((k) => k.kid === kid);
    if (key) Object.assign(key, { state: 'retired', retiredAt: at });
    this.changed();
  }

  /** The key is destroyed or revoked: it leaves the workflow's state (PostgreSQL keeps its record). */
  keyRemoved(kid: string): void {
    this.s.keys = this.s.keys.filter((k) => k.kid !== kid);
    this.changed();
  }

  /** Incidents announced and not yet resolved. */
  get openIncidents(): readonly Incident[] {
    return this.s.incidents ?? [];
  }

  /** The open incident `key`, if one was announced and not resolved. */
  incident(key: string): Incident | null {
    return this.s.incidents?.find((i) => i.key === key) ?? null;
  }

  /** Keeps `incident` as the open incident `key`, or forgets it (null) once resolved. */
  setIncident(key: string, incident: Incident | null): void {
    const others = (this.s.incidents ?? []).filter((i) => i.key !== key);
    this.s.incidents = incident === null ? others : [...others, incident];
    this.changed();
  }

  /** A step succeeded; returns the error it recovers from, if any, so that it can be reported resolved. */
  succeeded(): LastError | null {
    const recovered = this.s.lastError;
    this.s.lastError = null;
    this.s.retryAt = null;
    this.changed();
    return recovered;
  }

  /**
   * A step gave up after its retries. Scheduled work backs off, and the keys are read again from
   * PostgreSQL first, since a change may have committed although its activity reported a failure.
   */
  failed(step: string, message: string, now: number): LastError {
    const failures = (this.s.lastError?.failures ?? 0) + 1;
    this.s.lastError = { step, message, at: now, failures };
    this.s.retryAt = now + failureBackoffMs(failures);
    this.s.loaded = false;
    this.changed();
    return this.s.lastError;
  }

  private changed(): void {
    this.revision++;
  }
}
