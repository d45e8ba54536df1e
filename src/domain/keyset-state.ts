import type { Incident } from './incidents';
import type { KeyTimeline, ScheduledTransition } from './lifecycle';
import type { KeySetPolicy } from './policy';

/** Why a key changed state; recorded with every audit event. */
export type ChangeTrigger = 'bootstrap' | 'scheduled' | 'manual' | 'revocation';

/** An operator's request that the main loop carries out in order. */
export type KeySetCommand =
  | { id: string; type: 'rotate'; reason: string; requestedBy: string; viaSignal: boolean }
  | { id: string; type: 'revoke'; kid: string; reason: string; requestedBy: string }
  | { id: string; type: 'decommission'; reason: string; requestedBy: string };

/** The step that failed last and what it said; cleared when a step succeeds. */
export interface LastError {
  step: string;
  message: string;
  at: number;
  /** Consecutive failures, each one after the activity's own retries gave up. */
  failures: number;
}

/**
 * Everything a key set workflow knows, JSON-safe so that it crosses continue-as-new intact
 * (plain arrays and numbers: a Map would arrive as `{}`).
 */
export interface KeySetState {
  keySetId: string;
  policy: KeySetPolicy;
  /** Live keys only; destroyed and revoked keys stay in PostgreSQL and the audit trail. */
  keys: KeyTimeline[];
  /** False until the keys have been read from PostgreSQL by this workflow's first run. */
  loaded: boolean;
  paused: { reason: string; since: number } | null;
  /** Set once the key set winds down; absent in states saved before decommissioning existed. */
  decommissioned?: { reason: string; since: number } | null;
  commands: KeySetCommand[];
  lastError: LastError | null;
  /** After a failure, scheduled work waits until then. */
  retryAt: number | null;
  /** Incidents announced and not yet resolved; absent in states saved before alerts had incidents. */
  incidents?: Incident[];
}

/** What `getState` answers; times are epoch milliseconds. */
export interface KeySetStatus {
  keySetId: string;
  policy: KeySetPolicy;
  paused: KeySetState['paused'];
  decommissioned: { reason: string; since: number } | null;
  keys: KeyTimeline[];
  nextTransition: ScheduledTransition | null;
  lastError: LastError | null;
  pendingCommands: number;
  /** The step running now, if any. */
  inFlight: string | null;
}
