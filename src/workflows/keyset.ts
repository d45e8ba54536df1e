import {
  ActivityFailure,
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  isCancellation,
  log,
  patched,
  setHandler,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { KeyChange } from '../store/key-store';
import { KeyturnError } from '../domain/errors';
import { STEP_FAILURE_INCIDENT } from '../domain/incidents';
import type { ChangeTrigger, KeySetCommand } from '../domain/keyset-state';
import type { KeyTimeline, ScheduledTransition } from '../domain/lifecycle';
import { utc } from '../domain/describe';
import { changedPolicyFields } from '../domain/policy';
import { changeKeys } from './activity-proxies';
import { ALERT_INCIDENTS, raiseAlert } from './alerts';
import { awaitPublication, endGateWaitsOvertaken } from './propagation-gate';
import { showState, type ShownState } from './web-ui';
import { KeySetMachine, initialState } from './keyset-machine';
import {
  decommissionUpdate,
  getStateQuery,
  pauseSignal,
  requestRotationSignal,
  resumeSignal,
  revokeKeyUpdate,
  rotateUpdate,
  updatePolicyUpdate,
  type KeySetWorkflowInput,
  type RevocationResult,
  type RotationRequest,
  type RotationResult,
} from './messages';

/** How a command ended, for the Update handler waiting on it. */
type Outcome = { ok: true; value: unknown } | { ok: false; failure: ApplicationFailure };

/** The actor recorded for changes keyturn makes on its own schedule. */
const SCHEDULER = 'keyturn';

/**
 * One key set's whole life. It sleeps until the next transition, performs it through activities,
 * and serves operator messages in between. All changes of state happen in this main loop, one at a
 * time; handlers only queue commands and wait for their outcome.
 */
export async function keySetWorkflow(input: KeySetWorkflowInput): Promise<void> {
  const machine = new KeySetMachine(input.state ?? initialState(input.keySetId, input.policy));
  const outcomes = new Map<string, Outcome>();
  const shown: ShownState = {};

  const queueRotation = (request: RotationRequest | undefined, viaSignal: boolean): string => {
    const id = uuid4();
    const reason = request?.reason?.trim() || 'forced rotation';
    machine.enqueue({ id, type: 'rotate', reason, requestedBy: request?.requestedBy ?? 'operator', viaSignal });
    return id;
  };
  const outcomeOf = async <T>(commandId: string): Promise<T> => {
    await condition(() => outcomes.has(commandId));
    const outcome = outcomes.get(commandId)!;
    outcomes.delete(commandId);
    if (!outcome.ok) throw outcome.failure;
    return outcome.value as T;
  };

  // --- Message handlers ---
  setHandler(getStateQuery, () => machine.status(Date.now()));

  setHandler(requestRotationSignal, (request) => {
    queueRotation(request, true);
  });

  setHandler(rotateUpdate, (request) => outcomeOf<RotationResult>(queueRotation(request, false)), {
    validator: (_request: RotationRequest) => asUpdateRejection(() => machine.assertNotWindingDown('rotate')),
  });

  setHandler(
    revokeKeyUpdate,
    (request) => {
      const id = uuid4();
      machine.enqueue({ id, type: 'revoke', kid: request.kid, reason: request.reason, requestedBy: request.requestedBy ?? 'operator' });
      return outcomeOf<RevocationResult>(id);
    },
    { validator: (request) => asUpdateRejection(() => machine.assertRevocable(request)) },
  );

  setHandler(
    decommissionUpdate,
    (request) => {
      const id = uuid4();
      machine.enqueue({ id, type: 'decommission', reason: request.reason, requestedBy: request.requestedBy ?? 'operator' });
      return outcomeOf<void>(id);
    },
    { validator: (request) => asUpdateRejection(() => machine.assertReason(request?.reason, 'decommission')) },
  );

  setHandler(pauseSignal, (request) => machine.pause(request?.reason || 'no reason given', Date.now()));
  setHandler(resumeSignal, () => machine.resume());

  setHandler(
    updatePolicyUpdate,
    async (patch) => {
      // Checked again: another update may have changed the policy since the validator ran.
      const policy = asUpdateRejection(() => machine.policyWith(patch));
      if (changedPolicyFields(machine.policy, policy).length > 0) {
        await changeKeys('registerKeySet', 'record the new policy', { ...changeBy(machine, 'manual', 'operator', 'policy updated'), policy });
        machine.setPolicy(policy);
      }
      return policy;
    },
    { validator: (patch) => asUpdateRejection(() => machine.policyWith(patch)) },
  );

  // --- Main loop ---
  for (;;) {
    const step = machine.nextStep(Date.now());
    if (step.type === 'load') {
      await attempt(machine, 'load', async () => {
        const policy = machine.policy;
        machine.loaded(
          await changeKeys('registerKeySet', 'load the keys from PostgreSQL', { ...changeBy(machine, 'scheduled', SCHEDULER, 'workflow started'), policy }),
        );
      });
    } else if (step.type === 'command') {
      await runCommand(machine, step.command, outcomes);
    } else if (step.type === 'transition') {
      const { transition } = step;
      await attempt(machine, transition.kind, () => performTransition(machine, transition), 'kid' in transition ? transition.kid : undefined);
    } else if (step.type === 'complete') {
      await condition(allHandlersFinished);
      showState(machine, shown);
      return;
    } else {
      showState(machine, shown);
      const revision = machine.revision;
      const readyToContinue = () => shouldContinueAsNew(input) && allHandlersFinished();
      if (readyToContinue()) {
        await continueAsNew<typeof keySetWorkflow>({ ...input, policy: machine.policy, state: machine.state });
      }
      const timeout = step.until === undefined ? undefined : Math.max(step.until - Date.now(), 1);
      const wakeUp = () => machine.revision !== revision || readyToContinue();
      if (timeout === undefined) await condition(wakeUp);
      else await condition(wakeUp, timeout, { summary: `sleep until ${utc(step.until!)}` });
    }
  }
}

async function performTransition(machine: KeySetMachine, transition: ScheduledTransition): Promise<void> {
  const { prepublish, rotationPeriod, gracePeriod, retirement } = machine.policy;
  switch (transition.kind) {
    case 'bootstrap':
      await promoteNextKeyNow(machine, 'bootstrap', SCHEDULER, 'no key could sign');
      return;
    case 'generateNext':
      await generateNextKey(machine, 'scheduled', SCHEDULER, `published ${prepublish} before the active key's ${rotationPeriod} end`);
      return;
    case 'promote':
      // Held for a revocation: the main loop runs it and comes back to this promotion.
      if (await awaitPublication(machine, transition.kid)) {
        await promoteKey(machine, transition.kid, 'scheduled', SCHEDULER, `active key's ${rotationPeriod} rotation period ended`);
      }
      return;
    case 'retire': {
      const change = changeBy(machine, 'scheduled', SCHEDULER, `${gracePeriod} grace period ended`);
      await changeKeys('retireKey', `retire ${transition.kid}: grace period over`, { ...change, kid: transition.kid });
      machine.keyRetired(transition.kid, change.at);
      return;
    }
    case 'destroy':
      await changeKeys('destroyKey', `destroy ${transition.kid}: erase its private part`, {
        ...changeBy(machine, 'scheduled', SCHEDULER, `${retirement} retirement ended`),
        kid: transition.kid,
      });
      machine.keyRemoved(transition.kid);
      return;
  }
}

async function runCommand(machine: KeySetMachine, command: KeySetCommand, outcomes: Map<string, Outcome>): Promise<void> {
  const viaSignal = command.type === 'rotate' && command.viaSignal;
  const finish = (outcome: Outcome) => {
    machine.complete(command.id);
    if (!viaSignal) outcomes.set(command.id, outcome);
  };
  try {
    // The key set may have moved on since the message was accepted.
    if (command.type === 'revoke') machine.assertRevocable(command);
    if (command.type === 'rotate') machine.assertNotWindingDown('rotate');
  } catch (error) {
    finish({ ok: false, failure: toApplicationFailure(error as KeyturnError) });
    return;
  }
  const outcome = await attempt(
    machine,
    command.type,
    (): Promise<unknown> => {
      switch (command.type) {
        case 'rotate':
          return rotateWhenPublished(machine, command);
        case 'revoke':
          return revoke(machine, command);
        case 'decommission':
          return windDown(machine, command);
      }
    },
    command.type === 'revoke' ? command.kid : undefined,
  );
  // A signalled rotation nobody waits for stays queued and is tried again after the backoff; a
  // rotation held at the gate for a revocation stays queued and runs after it.
  if ((!outcome.ok && viaSignal) || (outcome.ok && outcome.value === HELD_FOR_REVOCATION)) return;
  finish(outcome);
}

/** Demotes the active and next keys into grace; the main loop then lets every key run out. */
async function windDown(machine: KeySetMachine, command: Extract<KeySetCommand, { type: 'decommission' }>): Promise<void> {
  if (machine.windingDown) return;
  const change = changeBy(machine, 'manual', command.requestedBy, command.reason);
  const demoted = await changeKeys('windDown', 'decommission: active and next keys into their grace period', change);
  machine.woundDown(command.reason, demoted, change.at);
}

async function revoke(machine: KeySetMachine, command: Extract<KeySetCommand, { type: 'revoke' }>): Promise<RevocationResult> {
  const change = changeBy(machine, 'revocation', command.requestedBy, command.reason);
  const { previousState } = await changeKeys('revokeKey', `revoke ${command.kid}: ${command.reason}`, { ...change, kid: command.kid });
  machine.keyRemoved(command.kid);
  const activeKid =
    previousState === 'active'
      ? // Emergency: the next key (or a new one) signs at once, without waiting out jwksMaxAge.
        (await promoteNextKeyNow(machine, 'revocation', command.requestedBy, `replaces revoked key ${command.kid}`)).activeKid
      : (machine.key('active')?.kid ?? null);
  await endGateWaitsOvertaken(machine);
  return { revokedKid: command.kid, previousState, activeKid };
}

/** What a gated promotion answers when a revocation arrived while it waited. */
const HELD_FOR_REVOCATION = 'held for a revocation';

/** A forced rotation: the next key (generated first if there is none) is promoted once it is published. */
async function rotateWhenPublished(
  machine: KeySetMachine,
  command: Extract<KeySetCommand, { type: 'rotate' }>,
): Promise<RotationResult | typeof HELD_FOR_REVOCATION> {
  const next = machine.key('next') ?? (await generateNextKey(machine, 'manual', command.requestedBy, command.reason));
  if (!(await awaitPublication(machine, next.kid))) return HELD_FOR_REVOCATION;
  return promoteKey(machine, next.kid, 'manual', command.requestedBy, command.reason);
}

/** Promotes the next key at once, generating it first if there is none. */
async function promoteNextKeyNow(machine: KeySetMachine, trigger: ChangeTrigger, actor: string, reason: string): Promise<RotationResult> {
  const next = machine.key('next') ?? (await generateNextKey(machine, trigger, actor, reason));
  return promoteKey(machine, next.kid, trigger, actor, reason);
}

async function promoteKey(machine: KeySetMachine, kid: string, trigger: ChangeTrigger, actor: string, reason: string): Promise<RotationResult> {
  const change = changeBy(machine, trigger, actor, reason);
  const { activeKid, demotedKid } = await changeKeys('promoteNextKey', `promote ${kid} to active`, { ...change, kid });
  machine.keyPromoted(activeKid, demotedKid, change.at);
  return { activeKid, previousKid: demotedKid };
}

async function generateNextKey(machine: KeySetMachine, trigger: ChangeTrigger, actor: string, reason: string): Promise<KeyTimeline> {
  const { algorithm } = machine.policy;
  const key = await changeKeys('generateNextKey', `generate and publish a next ${algorithm} key`, {
    ...changeBy(machine, trigger, actor, reason),
    algorithm,
  });
  machine.keyGenerated(key);
  return key;
}

/**
 * Runs one step (about `kid`, when it concerns one key). When its activities give up, the failure is
 * recorded, alerted and backed off instead of failing the workflow: rotation resumes once PostgreSQL
 * (or whatever failed) is back. A run of failures is one incident, resolved by the first success.
 */
async function attempt<T>(machine: KeySetMachine, step: string, work: () => Promise<T>, kid?: string): Promise<Outcome> {
  machine.inFlight = step;
  const about = kid === undefined ? {} : { kid };
  try {
    const value = await work();
    if (step === 'load' && failedWorkComesNext(machine)) return { ok: true, value };
    const recovered = machine.succeeded();
    if (recovered) {
      await raiseAlert(machine, {
        incident: STEP_FAILURE_INCIDENT,
        status: 'resolved',
        step: recovered.step,
        ...about,
        summary: `key set "${machine.keySetId}" recovered: ${step} succeeded`,
      });
    }
    return { ok: true, value };
  } catch (error) {
    if (!(error instanceof ActivityFailure) || isCancellation(error)) throw error;
    const cause = error.cause instanceof ApplicationFailure ? error.cause : undefined;
    const message = error.cause?.message ?? error.message;
    const lastError = machine.failed(step, message, Date.now());
    log.warn('key set step failed', { keySetId: machine.keySetId, step, failures: lastError.failures, error: message });
    await raiseAlert(machine, {
      incident: STEP_FAILURE_INCIDENT,
      status: 'firing',
      step,
      ...about,
      summary: `key set "${machine.keySetId}": ${step} failed ${lastError.failures} time(s) in a row; retrying after a backoff`,
      error: message,
      // keyturn's own error codes pick the message's hint; other failure types name only a JavaScript class.
      ...(cause?.type?.startsWith('ERR_') ? { code: cause.type } : {}),
      failures: lastError.failures,
    });
    return {
      ok: false,
      failure: ApplicationFailure.create({
        type: cause?.type ?? 'ERR_STEP_FAILED',
        message: `${step} of key set "${machine.keySetId}" failed: ${message}`,
        nonRetryable: true,
      }),
    };
  } finally {
    machine.inFlight = null;
  }
}

/**
 * After a failure the keys are read again before anything else: that read succeeding is no recovery
 * while work is due right after it, so the run of failures (and its incident) goes on until that work
 * succeeds, or nothing is due. Before ALERT_INCIDENTS the read ended the run, so a step failing behind
 * a working read (a missing KEK) never backed off beyond a minute and alerted and resolved every time.
 */
function failedWorkComesNext(machine: KeySetMachine): boolean {
  return machine.state.lastError !== null && machine.nextStep(Date.now()).type !== 'wait' && patched(ALERT_INCIDENTS);
}

/** A change on the workflow's clock, with an operation id that makes its activity idempotent. */
function changeBy(machine: KeySetMachine, trigger: ChangeTrigger, actor: string, reason: string): KeyChange {
  return { operationId: uuid4(), keySetId: machine.keySetId, at: Date.now(), trigger, actor, reason };
}

function shouldContinueAsNew(input: KeySetWorkflowInput): boolean {
  const info = workflowInfo();
  return info.continueAsNewSuggested || (input.maxHistoryEvents !== undefined && info.historyLength >= input.maxHistoryEvents);
}

/** Runs `check`; a KeyturnError it throws becomes the ApplicationFailure an Update caller receives. */
function asUpdateRejection<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    throw error instanceof KeyturnError ? toApplicationFailure(error) : error;
  }
}

function toApplicationFailure(error: KeyturnError): ApplicationFailure {
  return ApplicationFailure.create({
    type: error.code,
    message: error.message,
    nonRetryable: true,
    details: [{ keySetId: error.keySetId, kid: error.kid, field: error.field }],
  });
}
