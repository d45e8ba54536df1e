/**
 * The key set workflow's messages. Clients import this file and search-attributes.ts (and the types
 * they name) only, never the workflow code itself.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { KeySetState, KeySetStatus } from '../domain/key-set-state';
import type { LiveKeyState } from '../domain/lifecycle';
import type { Violation } from '../domain/invariants';
import type { KeySetPolicy, PolicyPatch } from '../domain/policy';

export const KEYSET_WORKFLOW_TYPE = 'keySetWorkflow';

/** The one workflow per key set: Temporal refuses a second with the same id. */
export function keySetWorkflowId(keySetId: string): string {
  return `keyset/${keySetId}`;
}

/** A forced rotation: `rotate`, `requestRotation`. */
export interface RotationRequest {
  reason?: string;
  /** Who asked, for the audit trail (an operator's name, a script). */
  requestedBy?: string;
  /**
   * Promote at once, even a key verifiers may not have cached yet: they reject its tokens until their
   * cached JWKS expires. For when the active key must stop signing now and revoking it is not wanted.
   */
  immediately?: boolean;
}

/** What `rotate` answers: the key that will sign, and when. */
export interface RotationResult {
  /** The key that signs once the rotation is done. */
  kid: string;
  /**
   * When it signs (or signed): at once if it has been listed everywhere for `jwksMaxAge`, else once
   * it has. An estimate while its listing is not yet confirmed.
   */
  signsAt: number;
  /** Whether it signs already. */
  active: boolean;
  /** The key that signed before it, which verifies through its grace period once replaced. */
  previousKid: string | null;
  /** With `immediately`: until then, verifiers whose cached JWKS predates the key may reject its tokens. */
  rejectionWindowUntil?: number;
}

export interface RevocationRequest {
  kid: string;
  reason: string;
  requestedBy?: string;
}

/** What `revoke` answers. */
export interface RevocationResult {
  revokedKid: string;
  previousState: LiveKeyState;
  /** The key active after the revocation (a new one when the active key was revoked). */
  activeKid: string | null;
}

export interface PauseRequest {
  reason: string;
  requestedBy?: string;
}

export interface ResumeRequest {
  requestedBy?: string;
}

/** A change of some policy fields: `updatePolicy`. */
export interface PolicyUpdate {
  /** The fields to change; null removes an optional field (`issuer`, `publishedAt`). */
  patch: PolicyPatch;
  requestedBy?: string;
  reason?: string;
}

/** What `updatePolicy` answers. */
export interface PolicyUpdateResult {
  /** The whole policy now in force. */
  policy: KeySetPolicy;
  /** The policy before the update. */
  previous: KeySetPolicy;
  /** The fields that changed (none when the patch changed nothing). */
  changed: (keyof KeySetPolicy)[];
}

/** Why a key set winds down, and who asked: `decommission`. */
export interface DecommissionRequest {
  reason: string;
  requestedBy?: string;
}

/** Why a key set winding down goes back into service, and who asked: `recommission`. */
export interface RecommissionRequest {
  reason?: string;
  requestedBy?: string;
}

/**
 * Rotate, fire and forget: the next key signs once verifiers' caches hold it. Requests while one is
 * pending join it; a failed attempt is tried again after the backoff.
 */
export const requestRotationSignal = defineSignal<[RotationRequest]>('requestRotation');
/** Rotate and answer with the key that will sign and when (see RotationResult); requests while one is pending join it. */
export const rotateUpdate = defineUpdate<RotationResult, [RotationRequest]>('rotate');
/** Take a key out of the JWKS and erase its private part at once; an active key is replaced first thing. */
export const revokeKeyUpdate = defineUpdate<RevocationResult, [RevocationRequest]>('revokeKey');
/** Stop scheduled transitions; operator commands still run, and a rotation asked for still completes. */
export const pauseSignal = defineSignal<[PauseRequest]>('pause');
export const resumeSignal = defineSignal<[ResumeRequest?]>('resume');
/** Change some policy fields; answers with the whole policy now in force and what changed. */
export const updatePolicyUpdate = defineUpdate<PolicyUpdateResult, [PolicyUpdate]>('updatePolicy');
export const getStateQuery = defineQuery<KeySetStatus>('getState');

/**
 * Winds the key set down: no new key is generated, the active and next keys move into their grace
 * period, every key then retires and is destroyed on its usual schedule, and the workflow completes.
 * No key is cut short. Answers once the wind-down has begun.
 */
export const decommissionUpdate = defineUpdate<void, [DecommissionRequest]>('decommission');

/**
 * Takes a key set that is winding down back into service (`apply` lists it again): keys already
 * winding down run out as planned, and a new key is generated and signs at once, as for a new key set.
 */
export const recommissionUpdate = defineUpdate<void, [RecommissionRequest]>('recommission');

export const SUPERVISOR_WORKFLOW_TYPE = 'supervisorWorkflow';

/** Delivers one alert message to its channels; started by the alert activities, one per message. */
export const ALERT_DELIVERY_WORKFLOW_TYPE = 'alertDeliveryWorkflow';
/** The Temporal Schedule that runs the supervisor (the old design's five-minute beat). */
export const SUPERVISOR_SCHEDULE_ID = 'keyturn-supervisor';

/** What one supervisor run found and did. */
export interface SupervisionReport {
  keySets: number;
  /** Key sets whose workflow was not running and was started again. */
  restarted: string[];
  violations: Violation[];
  /** Key sets the round could not check (their workflow did not answer, say), with why. */
  failed: { keySetId: string; error: string }[];
}

export interface KeySetWorkflowInput {
  keySetId: string;
  policy: KeySetPolicy;
  /** Carried across continue-as-new; absent on the first run. */
  state?: KeySetState;
  /** Continue as new after this many history events (default 1,000; tests set it low); Temporal's suggestion applies too. */
  maxHistoryEvents?: number;
}
