/**
 * The key set workflow's messages. Clients import this file (and the types it names) only, never
 * the workflow code itself.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { KeySetState, KeySetStatus } from '../domain/keyset-state';
import type { LiveKeyState } from '../domain/lifecycle';
import type { Violation } from '../domain/invariants';
import type { KeySetPolicy } from '../domain/policy';

export const KEYSET_WORKFLOW_TYPE = 'keySetWorkflow';

/** The one workflow per key set: Temporal refuses a second with the same id. */
export function keySetWorkflowId(keySetId: string): string {
  return `keyset/${keySetId}`;
}

export interface RotationRequest {
  reason?: string;
  /** Who asked, for the audit trail (an operator's name, a script). */
  requestedBy?: string;
}

export interface RotationResult {
  activeKid: string;
  /** The key that was active before and now verifies through its grace period. */
  previousKid: string | null;
}

export interface RevocationRequest {
  kid: string;
  reason: string;
  requestedBy?: string;
}

export interface RevocationResult {
  revokedKid: string;
  previousState: LiveKeyState;
  /** The key active after the revocation (a new one when the active key was revoked). */
  activeKid: string | null;
}

export interface PauseRequest {
  reason: string;
}

/** Rotate at once, fire and forget; a failed attempt is retried with backoff. */
export const requestRotationSignal = defineSignal<[RotationRequest]>('requestRotation');
/** Rotate at once and answer with the key that is then active. */
export const rotateUpdate = defineUpdate<RotationResult, [RotationRequest]>('rotate');
/** Take a key out of the JWKS and erase its private part at once; an active key is replaced first thing. */
export const revokeKeyUpdate = defineUpdate<RevocationResult, [RevocationRequest]>('revokeKey');
/** Stop scheduled transitions; operator commands still run. */
export const pauseSignal = defineSignal<[PauseRequest]>('pause');
export const resumeSignal = defineSignal<[]>('resume');
/** Change some policy fields; answers with the whole policy now in force. */
export const updatePolicyUpdate = defineUpdate<KeySetPolicy, [Partial<KeySetPolicy>]>('updatePolicy');
export const getStateQuery = defineQuery<KeySetStatus>('getState');

export interface DecommissionRequest {
  reason: string;
  requestedBy?: string;
}

/**
 * Winds the key set down: no new key is generated, the active and next keys move into their grace
 * period, every key then retires and is destroyed on its usual schedule, and the workflow completes.
 * No key is cut short. Answers once the wind-down has begun.
 */
export const decommissionUpdate = defineUpdate<void, [DecommissionRequest]>('decommission');

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
}

export interface KeySetWorkflowInput {
  keySetId: string;
  policy: KeySetPolicy;
  /** Carried across continue-as-new; absent on the first run. */
  state?: KeySetState;
  /** Continue as new after this many history events (tests set it low); Temporal's suggestion applies too. */
  maxHistoryEvents?: number;
}
