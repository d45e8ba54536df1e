import type { Incident } from './incidents';
import type { KeyTimeline, ScheduledTransition } from './lifecycle';
import type { KeySetPolicy, PolicyCeilings, PolicyPatch } from './policy';

/** Why a key changed state; recorded with every audit event. */
export type ChangeTrigger = 'bootstrap' | 'scheduled' | 'manual' | 'revocation';

/** Who asked for a command and why, for the audit trail. */
interface Requested {
  id: string;
  requestedBy: string;
  reason: string;
  /** Someone waits for the outcome (an Update); otherwise (a signal) a failed attempt is tried again after the backoff. */
  awaited: boolean;
}

/** An operator's request, which the main loop carries out in turn. */
export type KeySetCommand = Requested &
  (
    | { type: 'rotate'; immediately: boolean }
    | { type: 'revoke'; kid: string }
    | { type: 'updatePolicy'; patch: PolicyPatch }
    | { type: 'pause' }
    | { type: 'resume' }
    | { type: 'decommission' }
    | { type: 'recommission' }
  );

/** The step that failed last and what it said; cleared when a step succeeds. */
export interface LastError {
  step: string;
  message: string;
  at: number;
  /** Consecutive failures, each one after the activity's own retries gave up. */
  failures: number;
}

/** A forced rotation not yet done: the next key signs once it is promotable (or at once when `immediately`). */
export interface PendingRotation {
  requestedAt: number;
  requestedBy: string;
  reason: string;
  immediately: boolean;
}

/** The propagation gate's wait for the next key: since when, how often it asked, when it asks and alerts again. */
export interface PublicationWait {
  kid: string;
  since: number;
  checks: number;
  nextCheckAt: number;
  /** From when a check that finds the key still missing raises (or repeats) the alert. */
  alertAt: number;
}

/**
 * Everything a key set workflow knows, JSON-safe so that it crosses continue-as-new intact
 * (plain arrays and numbers: a Map would arrive as `{}`).
 */
export interface KeySetState {
  keySetId: string;
  policy: KeySetPolicy;
  /** The deployment's limits, as the worker said when the keys were last read. */
  ceilings: PolicyCeilings;
  /** False until the policy the workflow was started with has been checked against the rules and the ceilings. */
  policyChecked: boolean;
  /** Live keys only; destroyed and revoked keys stay in PostgreSQL and the audit trail. */
  keys: KeyTimeline[];
  /** False until the keys have been read from PostgreSQL, and again after a failure. */
  loaded: boolean;
  paused: { reason: string; since: number; requestedBy: string } | null;
  /** Set once the key set winds down. */
  decommissioned: { reason: string; since: number } | null;
  commands: KeySetCommand[];
  rotation: PendingRotation | null;
  publication: PublicationWait | null;
  /**
   * After `jwksMaxAge` was lowered: until then a verifier may still hold a JWKS cached under the old,
   * longer max-age, so no key listed before then may sign before it.
   */
  staleCachesUntil: number | null;
  lastError: LastError | null;
  /** After a failure, scheduled work waits until then. */
  retryAt: number | null;
  /** Incidents announced and not yet resolved. */
  incidents: Incident[];
}

/** What `getState` answers; times are epoch milliseconds. */
export interface KeySetStatus {
  keySetId: string;
  policy: KeySetPolicy;
  paused: KeySetState['paused'];
  decommissioned: KeySetState['decommissioned'];
  keys: KeyTimeline[];
  nextTransition: ScheduledTransition | null;
  rotation: PendingRotation | null;
  lastError: LastError | null;
  pendingCommands: number;
  /** The step running now, if any. */
  inFlight: string | null;
}
