import { KeyturnError } from '../domain/errors';
import { checkKeySetId } from '../domain/key-set-id';
import type { Incident } from '../domain/incidents';
import type {
  KeySetCommand,
  KeySetState,
  KeySetStatus,
  LastError,
  PendingRotation,
  PublicationWait,
} from '../domain/key-set-state';
import {
  REVOCABLE_STATES,
  listingWaitMs,
  nextTransition,
  type KeyTimeline,
  type ScheduledTransition,
} from '../domain/lifecycle';
import {
  DEFAULT_CEILINGS,
  policyTimings,
  validatePolicy,
  type KeySetPolicy,
  type PolicyCeilings,
  type PolicyPatch,
  type PolicyTimings,
} from '../domain/policy';
import type { Promotion } from '../store/key-store';
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

/**
 * How long the propagation gate waits before asking again, after `checks` answers that the key is not
 * listed everywhere yet, `waitedMs` into the wait: quickly at first (our own JWKS lists a key within
 * milliseconds: 100 ms doubling to a second), then a tenth of the time waited so far, at most an hour,
 * so that a key is seen soon after it is listed, and a wait of days asks a few hundred times, not thousands.
 */
export function publicationCheckDelayMs(checks: number, waitedMs: number): number {
  const early = Math.min(100 * 2 ** Math.min(checks - 1, 4), 1_000);
  return Math.min(3_600_000, Math.max(early, waitedMs / 10));
}

export function initialState(keySetId: string, policy: KeySetPolicy): KeySetState {
  return {
    keySetId,
    policy,
    ceilings: DEFAULT_CEILINGS,
    policyChecked: false,
    keys: [],
    loaded: false,
    paused: null,
    decommissioned: null,
    commands: [],
    rotation: null,
    publication: null,
    staleCachesUntil: null,
    lastError: null,
    retryAt: null,
    incidents: [],
  };
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

  get timings(): PolicyTimings {
    return policyTimings(this.s.policy);
  }

  key(state: KeyTimeline['state']): KeyTimeline | undefined {
    return this.s.keys.find((k) => k.state === state);
  }

  /** True once the key set is decommissioned: nothing new is generated or promoted. */
  get windingDown(): boolean {
    return this.s.decommissioned !== null;
  }

  nextStep(now: number): Step {
    const retryAt = this.s.retryAt ?? 0;
    const backingOff = retryAt > now;
    // Revocations first: they are emergencies. Commands someone waits for (Updates) skip the
    // backoff too; a signal's command waits for it like scheduled work.
    const urgent = this.s.commands.find((c) => c.type === 'revoke') ?? this.s.commands.find((c) => c.awaited);
    if (!this.s.loaded) return backingOff && !urgent ? { type: 'wait', until: retryAt } : { type: 'load' };
    const command = urgent ?? (backingOff ? undefined : this.s.commands[0]);
    if (command) return { type: 'command', command };
    const commandDue = this.s.commands.length > 0 ? retryAt : Infinity;
    if (this.windingDown && this.s.keys.length === 0 && this.s.commands.length === 0) return { type: 'complete' };
    const transition = this.transitionAt(now);
    const transitionDue = transition === undefined ? Infinity : Math.max(transition.at, retryAt);
    if (transition !== undefined && transitionDue <= now) return { type: 'transition', transition };
    const until = Math.min(commandDue, transitionDue);
    return until === Infinity ? { type: 'wait' } : { type: 'wait', until };
  }

  status(now: number): KeySetStatus {
    const step = this.s.loaded ? this.transitionAt(now) : undefined;
    return {
      keySetId: this.s.keySetId,
      policy: this.s.policy,
      paused: this.s.paused,
      decommissioned: this.s.decommissioned,
      keys: this.s.keys.map((k) => ({ ...k })),
      nextTransition: step ? { ...step, at: Math.max(step.at, this.s.retryAt ?? 0) } : null,
      rotation: this.s.rotation,
      lastError: this.s.lastError,
      pendingCommands: this.s.commands.length,
      inFlight: this.inFlight,
    };
  }

  /**
   * The transition due next. A pause holds scheduled work; a rotation someone asked for still goes
   * ahead (its next key is generated, checked and promoted), but nothing is retired or destroyed.
   */
  private transitionAt(now: number): ScheduledTransition | undefined {
    if (this.s.paused && this.s.rotation === null) return undefined;
    const keys = this.s.paused ? this.s.keys.filter((k) => k.state === 'active' || k.state === 'next') : this.s.keys;
    const wait = this.s.publication;
    return nextTransition(keys, {
      timings: this.timings,
      algorithm: this.s.policy.algorithm,
      now,
      windingDown: this.windingDown,
      rotation: this.s.rotation,
      publicationCheckAt: wait !== null && wait.kid === this.key('next')?.kid ? wait.nextCheckAt : undefined,
    });
  }

  // --- operator commands ---

  enqueue(command: KeySetCommand): void {
    this.s.commands.push(command);
    this.changed();
  }

  /** Drops a command once it has run (or failed for good). */
  complete(commandId: string): void {
    this.s.commands = this.s.commands.filter((c) => c.id !== commandId);
    this.changed();
  }

  /**
   * The whole policy that `patch` would put in force, within the deployment's ceilings; throws a
   * PolicyError naming every bad field.
   */
  policyWith(patch: PolicyPatch): KeySetPolicy {
    return validatePolicy(patch, { keySetId: this.s.keySetId, base: this.s.policy, ceilings: this.s.ceilings });
  }

  /** The worker's limits, read with the keys. */
  ceilingsAre(ceilings: PolicyCeilings): void {
    this.s.ceilings = ceilings;
    this.changed();
  }

  /**
   * Checks the id and the policy a new key set was started with, as `apply` checks a file's (every
   * field known, every rule kept, within the ceilings), and puts the policy in force normalised;
   * throws a KeyturnError naming the field.
   */
  checkStartPolicy(): void {
    checkKeySetId(this.s.keySetId, 'keySetId');
    this.s.policy = validatePolicy(this.s.policy, { keySetId: this.s.keySetId, ceilings: this.s.ceilings });
    this.s.policyChecked = true;
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
  assertRevocable(request: Pick<RevocationRequest, 'kid' | 'reason'>): KeyTimeline {
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
      throw new KeyturnError(
        'ERR_KEYSET_DECOMMISSIONED',
        `cannot ${action}: key set "${this.s.keySetId}" is decommissioned and winding down`,
        {
          keySetId: this.s.keySetId,
        },
      );
    }
  }

  /**
   * When the next key can sign at the earliest: its recorded `promotableAt` once listed everywhere,
   * else the soonest its listing could make it (from its generation), and not before `now`.
   */
  signsAt(next: KeyTimeline, now: number): number {
    return Math.max(now, this.earliestSigning(next));
  }

  private earliestSigning(next: KeyTimeline): number {
    return (
      next.promotableAt ??
      Math.max(next.createdAt + listingWaitMs(next, this.key('active'), this.timings), this.s.staleCachesUntil ?? 0)
    );
  }

  /**
   * When the key set next rotates, as far as it is known: the end of the active key's rotation
   * period (or when a rotation was asked for), later if its next key may not sign before, later
   * still while a failing step backs off; at once with no active key. Undefined while nothing is due
   * to rotate: paused or winding down. It moves only when the plan does (a promotion, a rotation asked
   * for, a policy change, a pause, a failure, a listing that came late), not at every transition:
   * what the NextTransitionAt search attribute shows. A time in the past is a rotation overdue.
   */
  nextRotationAt(now: number): number | undefined {
    if (this.windingDown || (this.s.paused !== null && this.s.rotation === null)) return undefined;
    const active = this.key('active');
    const next = this.key('next');
    const retryAt = this.s.retryAt ?? 0;
    if (active === undefined) return Math.max(now, retryAt);
    const due =
      this.s.rotation?.requestedAt ?? (active.activatedAt ?? active.createdAt) + this.timings.rotationPeriodMs;
    const signs = next === undefined || this.s.rotation?.immediately ? due : Math.max(due, this.earliestSigning(next));
    return Math.max(signs, retryAt);
  }

  /** A load finds the first key made with it: the workflow knows no key, nothing holds it back, and no earlier attempt failed. */
  get expectsFirstKey(): boolean {
    return this.s.keys.length === 0 && !this.windingDown && this.s.paused === null && this.s.lastError === null;
  }

  // --- what the activities did ---

  loaded(keys: KeyTimeline[]): void {
    this.s.keys = keys;
    this.s.loaded = true;
    if (this.s.publication !== null && this.key('next')?.kid !== this.s.publication.kid) this.s.publication = null;
    this.changed();
  }

  keyGenerated(key: KeyTimeline): void {
    this.put(key);
  }

  /**
   * The gate found the next key missing somewhere: it asks again later. Returns the wait, whose
   * `alertAt` says when a missing key is worth an alert: once it holds up the promotion (the active
   * key's period is over, or a rotation was asked for), and has been missing for `jwksMaxAge`.
   */
  publicationPending(next: KeyTimeline, now: number): PublicationWait {
    const wait = this.s.publication?.kid === next.kid ? this.s.publication : null;
    const since = wait?.since ?? next.createdAt;
    const checks = (wait?.checks ?? 0) + 1;
    const active = this.key('active');
    const dueAt =
      this.s.rotation?.requestedAt ??
      (active === undefined ? now : (active.activatedAt ?? active.createdAt) + this.timings.rotationPeriodMs);
    const alertAt = wait?.alertAt ?? Math.max(since + this.timings.jwksMaxAgeMs, dueAt);
    this.s.publication = {
      kid: next.kid,
      since,
      checks,
      nextCheckAt: now + publicationCheckDelayMs(checks, now - since),
      alertAt,
    };
    this.changed();
    return this.s.publication;
  }

  /** The gate's alert went out; a repeat is due at `remindAt`. */
  publicationAlerted(remindAt: number): void {
    if (this.s.publication === null) return;
    this.s.publication.alertAt = remindAt;
    this.changed();
  }

  /** The next key is listed everywhere; from `promotableAt` it may sign. */
  keyListed(key: KeyTimeline): void {
    this.s.publication = null;
    this.put(key);
  }

  /** The time the next listing may not sign before: after a lower `jwksMaxAge`, older caches must expire first. */
  get staleCachesUntil(): number {
    return this.s.staleCachesUntil ?? 0;
  }

  keyPromoted({ active, demoted }: Promotion): void {
    this.s.rotation = null;
    this.s.publication = null;
    this.put(active);
    if (demoted !== null) this.put(demoted);
  }

  keyWithdrawn(key: KeyTimeline): void {
    this.s.publication = null;
    this.put(key);
  }

  keyRetired(key: KeyTimeline): void {
    this.put(key);
  }

  /** The key is destroyed or revoked: it leaves the workflow's state (PostgreSQL keeps its record). */
  keyRemoved(kid: string): void {
    this.s.keys = this.s.keys.filter((k) => k.kid !== kid);
    if (this.s.publication?.kid === kid) this.s.publication = null;
    this.changed();
  }

  rotationRequested(rotation: PendingRotation): void {
    this.s.rotation = rotation;
    this.changed();
  }

  /** The wind-down began: the given keys are now in their grace period. */
  woundDown(reason: string, demoted: KeyTimeline[], at: number): void {
    for (const key of demoted) this.put(key);
    this.s.decommissioned = { reason, since: at };
    this.s.rotation = null;
    this.s.publication = null;
    this.changed();
  }

  recommissioned(): void {
    this.s.decommissioned = null;
    this.changed();
  }

  /**
   * A new policy is recorded, with the keys as it left them. A lower `jwksMaxAge` does not shorten
   * what verifiers already cached: until those caches expire, no newly listed key signs.
   */
  policyChanged(policy: KeySetPolicy, keys: KeyTimeline[], now: number): void {
    const before = this.timings.jwksMaxAgeMs;
    this.s.policy = policy;
    if (this.timings.jwksMaxAgeMs < before) this.s.staleCachesUntil = Math.max(this.staleCachesUntil, now + before);
    this.s.keys = keys;
    this.changed();
  }

  paused(pause: NonNullable<KeySetState['paused']>): void {
    this.s.paused = pause;
    this.changed();
  }

  resumed(): void {
    this.s.paused = null;
    this.changed();
  }

  /** Incidents announced and not yet resolved. */
  get openIncidents(): readonly Incident[] {
    return this.s.incidents;
  }

  /** The open incident `key`, if one was announced and not resolved. */
  incident(key: string): Incident | null {
    return this.s.incidents.find((i) => i.key === key) ?? null;
  }

  /** Keeps `incident` as the open incident `key`, or forgets it (null) once resolved. */
  setIncident(key: string, incident: Incident | null): void {
    const others = this.s.incidents.filter((i) => i.key !== key);
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

  /** Replaces the key with the same kid, or adds it. */
  private put(key: KeyTimeline): void {
    const index = this.s.keys.findIndex((k) => k.kid === key.kid);
    if (index === -1) this.s.keys.push(key);
    else this.s.keys[index] = key;
    this.changed();
  }

  private changed(): void {
    this.revision++;
  }
}
