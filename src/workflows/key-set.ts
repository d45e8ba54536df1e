import {
  allHandlersFinished,
  condition,
  makeContinueAsNewFunc,
  patched,
  setHandler,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { LoadedKeySet } from '../activities/key-activities';
import { KeyturnError } from '../domain/errors';
import type { ChangeTrigger, KeySetCommand } from '../domain/key-set-state';
import {
  graceMs,
  listingWaitMs,
  windowsAfterPolicyChange,
  type KeyTimeline,
  type ScheduledTransition,
} from '../domain/lifecycle';
import { utc } from '../domain/describe';
import { changedPolicyFields, policyTimings } from '../domain/policy';
import type { KeyChange } from '../store/key-store';
import { changeKeys, deploymentActivities } from './activity-proxies';
import { CommandQueue, checked, toApplicationFailure } from './command-queue';
import { KeySetMachine, initialState } from './key-set-machine';
import {
  decommissionUpdate,
  getStateQuery,
  pauseSignal,
  recommissionUpdate,
  requestRotationSignal,
  resumeSignal,
  revokeKeyUpdate,
  rotateUpdate,
  updatePolicyUpdate,
  type KeySetWorkflowInput,
  type PolicyUpdateResult,
  type RevocationResult,
  type RotationRequest,
  type RotationResult,
} from './messages';
import { checkPublication, endGateWaitsOvertaken } from './propagation-gate';
import { attempt } from './step-failures';
import { showState, type ShownState } from './web-ui';

/** Who changes the key set and why; each activity it goes to gets an operation id of its own. */
type Cause = Omit<KeyChange, 'operationId'>;

/** The actor recorded for changes keyturn makes on its own schedule. */
const SCHEDULER = 'keyturn';
/** Who asked, when a message does not say. */
const OPERATOR = 'operator';

/** A run continues as new after this many history events, whatever it waits for (a gate wait of days included). */
export const DEFAULT_MAX_HISTORY_EVENTS = 1_000;

/**
 * One key set's whole life. It sleeps until the next transition, performs it through activities,
 * and serves operator messages in between. Every change of state happens in this main loop, one at a
 * time: message handlers only check what they can and queue a command.
 */
export async function keySetWorkflow(input: KeySetWorkflowInput): Promise<void> {
  const machine = new KeySetMachine(input.state ?? initialState(input.keySetId, input.policy));
  const commands = new CommandQueue(machine);
  const shown: ShownState = {};

  // --- Messages ---
  setHandler(getStateQuery, () => machine.status(Date.now()));
  setHandler(requestRotationSignal, (request) => commands.post(rotation(request)));
  setHandler(rotateUpdate, (request) => commands.submit<RotationResult>(rotation(request)), {
    validator: (_request: RotationRequest) => checked(() => machine.assertNotWindingDown('rotate')),
  });
  setHandler(
    revokeKeyUpdate,
    (request) => commands.submit<RevocationResult>({ type: 'revoke', ...requested(request), kid: request.kid }),
    {
      validator: (request) => checked(() => machine.assertRevocable(request)),
    },
  );
  setHandler(
    updatePolicyUpdate,
    (update) =>
      commands.submit<PolicyUpdateResult>({
        type: 'updatePolicy',
        ...requested(update, 'policy updated'),
        patch: update.patch,
      }),
    {
      validator: (update) => checked(() => machine.policyWith(update?.patch)),
    },
  );
  setHandler(pauseSignal, (request) => commands.post({ type: 'pause', ...requested(request, 'no reason given') }));
  setHandler(resumeSignal, (request) => commands.post({ type: 'resume', ...requested(request, 'resumed') }));
  setHandler(decommissionUpdate, (request) => commands.submit<void>({ type: 'decommission', ...requested(request) }), {
    validator: (request) => checked(() => machine.assertReason(request?.reason, 'decommission')),
  });
  setHandler(recommissionUpdate, (request) =>
    commands.submit<void>({ type: 'recommission', ...requested(request, 'listed again') }),
  );

  // --- The lifecycle ---
  for (;;) {
    const step = machine.nextStep(Date.now());
    if (step.type === 'load') {
      await attempt(machine, 'load', () => load(machine));
    } else if (step.type === 'command') {
      await perform(machine, step.command, commands);
    } else if (step.type === 'transition') {
      const { transition } = step;
      await attempt(
        machine,
        transition.kind,
        () => performTransition(machine, transition),
        'kid' in transition ? transition.kid : undefined,
      );
    } else if (step.type === 'complete') {
      await condition(allHandlersFinished);
      showState(machine, shown);
      return;
    } else {
      showState(machine, shown);
      const revision = machine.revision;
      const readyToContinue = () => historyIsLong(input) && allHandlersFinished();
      if (readyToContinue()) {
        // The search attributes go along by name: not every server carries them into the next run by itself.
        const next = makeContinueAsNewFunc<typeof keySetWorkflow>({
          typedSearchAttributes: workflowInfo().typedSearchAttributes,
        });
        await next({ ...input, policy: machine.policy, state: machine.state });
      }
      const wakeUp = () => machine.revision !== revision || readyToContinue();
      if (step.until === undefined) await condition(wakeUp);
      else await condition(wakeUp, Math.max(step.until - Date.now(), 1), { summary: `sleep until ${utc(step.until)}` });
    }
  }
}

/** Patch: the load is one activity, with the ceilings and a new key set's first key (see load). */
const LOAD_IN_ONE_ACTIVITY = 'load-in-one-activity';
/** Patch: a scheduled next key is watched for its listing in the activity that generates it (see generateNextKey). */
const LISTING_WATCHED_AT_GENERATION = 'listing-watched-at-generation';

/**
 * Reads the deployment's ceilings and the keys from PostgreSQL, registering the key set and its
 * policy on a first run, in one activity and one transaction; a key set with no key gets its first
 * one, generated and active, in the same transaction (with no active key a key signs at once, see
 * lifecycle.ts). Whoever can reach Temporal can start this workflow: a policy it was started with
 * outside the rules or the ceilings fails it, naming the field, before anything is written.
 */
async function load(machine: KeySetMachine): Promise<void> {
  const cause = changeBy(machine, 'scheduled', SCHEDULER, 'workflow started');
  if (!patched(LOAD_IN_ONE_ACTIVITY)) return loadInSteps(machine, cause);
  const bootstrap = machine.expectsFirstKey
    ? { ...changeBy(machine, 'bootstrap', SCHEDULER, 'no key could sign'), operationId: uuid4() }
    : undefined;
  const loaded = await changeKeys(
    'registerKeySet',
    bootstrap ? 'load the keys from PostgreSQL, and make the first key' : 'load the keys from PostgreSQL',
    {
      ...cause,
      policy: machine.policy,
      inService: !machine.windingDown,
      checkPolicy: !machine.state.policyChecked,
      ...(bootstrap && { bootstrap }),
    },
  );
  machine.ceilingsAre(loaded.ceilings);
  if (!machine.state.policyChecked) checked(() => machine.checkStartPolicy());
  machine.loaded(loaded.keys!);
}

/** The load as workflows that began it before LOAD_IN_ONE_ACTIVITY perform it: ceilings, then keys. */
async function loadInSteps(machine: KeySetMachine, cause: Cause): Promise<void> {
  machine.ceilingsAre(await deploymentActivities.deploymentCeilings());
  if (!machine.state.policyChecked) checked(() => machine.checkStartPolicy());
  const loaded: KeyTimeline[] | LoadedKeySet = await changeKeys('registerKeySet', 'load the keys from PostgreSQL', {
    ...cause,
    policy: machine.policy,
    inService: !machine.windingDown,
  });
  // Histories hold the list this activity returned before; a worker of today answers with the keys in an object.
  machine.loaded(Array.isArray(loaded) ? loaded : loaded.keys!);
}

async function performTransition(machine: KeySetMachine, transition: ScheduledTransition): Promise<void> {
  const { prepublish, rotationPeriod, gracePeriod, retirement } = machine.policy;
  const rotation = machine.state.rotation;
  const scheduled = (reason: string) => changeBy(machine, 'scheduled', SCHEDULER, reason);
  const asked = rotation ? changeBy(machine, 'manual', rotation.requestedBy, rotation.reason) : undefined;
  switch (transition.kind) {
    case 'bootstrap': {
      const cause = changeBy(machine, 'bootstrap', SCHEDULER, 'no key could sign');
      await promoteKey(machine, await generateNextKey(machine, cause), cause);
      return;
    }
    case 'generateNext':
      await generateNextKey(
        machine,
        asked ?? scheduled(`published ${prepublish} before the active key's ${rotationPeriod} end`),
        { watchListing: true },
      );
      return;
    case 'checkPublication':
      await checkPublication(machine, transition.kid, asked ?? scheduled('propagation gate'));
      return;
    case 'promote': {
      // With no active key nothing signs: the next key is promoted at once, listed everywhere or not.
      const emergency = machine.key('active') === undefined;
      await promoteKey(
        machine,
        machine.key('next')!,
        asked ?? scheduled(emergency ? 'no key could sign' : `active key's ${rotationPeriod} rotation period ended`),
      );
      if (emergency) await endGateWaitsOvertaken(machine);
      return;
    }
    case 'withdraw':
      machine.keyWithdrawn(
        await changeKeys(
          'withdrawKey',
          `withdraw ${transition.kid}: the policy's algorithm is now ${machine.policy.algorithm}`,
          {
            ...scheduled(`algorithm changed to ${machine.policy.algorithm}`),
            kid: transition.kid,
          },
        ),
      );
      await endGateWaitsOvertaken(machine);
      return;
    case 'retire':
      machine.keyRetired(
        await changeKeys('retireKey', `retire ${transition.kid}: grace period over`, {
          ...scheduled(`${gracePeriod} grace period ended`),
          kid: transition.kid,
        }),
      );
      return;
    case 'destroy':
      await changeKeys('destroyKey', `destroy ${transition.kid}: erase its private part`, {
        ...scheduled(`${retirement} retirement ended`),
        kid: transition.kid,
      });
      machine.keyRemoved(transition.kid);
      return;
  }
}

/** Performs an operator command: checked again (the key set may have moved on since it was queued), then carried out. */
async function perform(machine: KeySetMachine, command: KeySetCommand, commands: CommandQueue): Promise<void> {
  try {
    if (command.type === 'revoke') machine.assertRevocable(command);
    if (command.type === 'rotate') machine.assertNotWindingDown('rotate');
    if (command.type === 'updatePolicy') machine.policyWith(command.patch);
  } catch (error) {
    if (!(error instanceof KeyturnError)) throw error;
    commands.settle(command, { ok: false, failure: toApplicationFailure(error) });
    return;
  }
  const change = changeBy(
    machine,
    command.type === 'revoke' ? 'revocation' : 'manual',
    command.requestedBy,
    command.reason,
  );
  const outcome = await attempt(
    machine,
    command.type,
    () => carryOut(machine, command, change),
    command.type === 'revoke' ? command.kid : undefined,
  );
  // A signal's command that failed stays queued and is tried again after the backoff.
  if (outcome.ok || command.awaited) commands.settle(command, outcome);
}

async function carryOut(machine: KeySetMachine, command: KeySetCommand, change: Cause): Promise<unknown> {
  switch (command.type) {
    case 'rotate':
      return rotate(machine, command.immediately, change);
    case 'revoke':
      return revoke(machine, command.kid, change);
    case 'updatePolicy': {
      const previous = machine.policy;
      const policy = machine.policyWith(command.patch);
      const changed = changedPolicyFields(previous, policy);
      if (changed.length === 0) return { policy, previous, changed };
      const windows = windowsAfterPolicyChange(machine.state.keys, policyTimings(policy));
      const keys = await changeKeys('recordPolicy', `record the new policy (${changed.join(', ')})`, {
        ...change,
        policy,
        windows,
      });
      machine.policyChanged(policy, keys, Date.now());
      return { policy, previous, changed };
    }
    case 'pause':
      await changeKeys('recordOperatorAction', `pause: ${command.reason}`, { ...change, action: 'paused' });
      machine.paused({ reason: command.reason, since: Date.now(), requestedBy: command.requestedBy });
      return;
    case 'resume':
      await changeKeys('recordOperatorAction', 'resume', { ...change, action: 'resumed' });
      machine.resumed();
      return;
    case 'decommission':
      return windDown(machine, change);
    case 'recommission':
      if (!machine.windingDown) return;
      await changeKeys('recommission', 'take the key set back into service', change);
      machine.recommissioned();
      return;
  }
}

/**
 * A forced rotation, which never makes a verifier reject a token unless asked to: the next key
 * (generated now if there is none) signs once it has been listed everywhere for `jwksMaxAge`, at once
 * if it already has, and at once with `immediately`. A rotation asked for while one is pending joins it.
 */
async function rotate(machine: KeySetMachine, immediately: boolean, change: Cause): Promise<RotationResult> {
  const pending = machine.state.rotation;
  const previousKid = machine.key('active')?.kid ?? null;
  if (pending !== null && (pending.immediately || !immediately)) {
    const next = machine.key('next');
    if (next !== undefined)
      return { kid: next.kid, signsAt: machine.signsAt(next, Date.now()), active: false, previousKid };
  }
  await changeKeys('recordOperatorAction', `rotation asked for: ${change.reason}`, {
    ...change,
    action: 'rotation_requested',
    details: { immediately },
  });
  let next = machine.key('next');
  if (next !== undefined && next.alg !== machine.policy.algorithm) {
    machine.keyWithdrawn(
      await changeKeys('withdrawKey', `withdraw ${next.kid}: a new key in ${machine.policy.algorithm} replaces it`, {
        ...change,
        kid: next.kid,
      }),
    );
    next = undefined;
  }
  if (next === undefined) {
    next = await generateNextKey(machine, change, { watchListing: true });
    // Asked at once, the gate usually finds the key listed already: the answer then says exactly when it signs.
    if (next.promotableAt === undefined && machine.state.publication === null)
      await checkPublication(machine, next.kid, change);
    next = machine.key('next')!;
  }
  const now = Date.now();
  if (immediately || (next.promotableAt !== undefined && next.promotableAt <= now)) {
    // Verifiers whose cached JWKS predates the key reject its tokens until it would have been promotable.
    const safeFrom = machine.signsAt(next, now);
    const active = await promoteKey(machine, next, change);
    return {
      kid: next.kid,
      signsAt: active.activatedAt!,
      active: true,
      previousKid,
      ...(safeFrom > now && { rejectionWindowUntil: safeFrom }),
    };
  }
  machine.rotationRequested({ requestedAt: now, requestedBy: change.actor, reason: change.reason, immediately: false });
  return { kid: next.kid, signsAt: machine.signsAt(next, now), active: false, previousKid };
}

async function revoke(machine: KeySetMachine, kid: string, change: Cause): Promise<RevocationResult> {
  const { previousState } = await changeKeys('revokeKey', `revoke ${kid}: ${change.reason}`, { ...change, kid });
  machine.keyRemoved(kid);
  let activeKid = machine.key('active')?.kid ?? null;
  if (previousState === 'active') {
    // Emergency: the next key (or a new one) signs at once, without waiting out jwksMaxAge.
    const replacement =
      machine.key('next') ?? (await generateNextKey(machine, { ...change, reason: `replaces revoked key ${kid}` }));
    activeKid = (await promoteKey(machine, replacement, { ...change, reason: `replaces revoked key ${kid}` })).kid;
  }
  await endGateWaitsOvertaken(machine);
  return { revokedKid: kid, previousState, activeKid };
}

/** Demotes the active and next keys into grace; the main loop then lets every key run out. */
async function windDown(machine: KeySetMachine, change: Cause): Promise<void> {
  if (machine.windingDown) return;
  const demotions = machine.state.keys
    .filter((k) => k.state === 'active' || k.state === 'next')
    .map((k) => ({ kid: k.kid, graceMs: graceMs(k, machine.timings) }));
  const demoted = await changeKeys('windDown', 'decommission: active and next keys into their grace period', {
    ...change,
    demotions,
  });
  machine.woundDown(change.reason, demoted, Date.now());
}

/** Makes `next` the active key; the key active until now verifies through its grace period. */
async function promoteKey(machine: KeySetMachine, next: KeyTimeline, change: Cause): Promise<KeyTimeline> {
  const active = machine.key('active');
  const promotion = await changeKeys('promoteNextKey', `promote ${next.kid} to active`, {
    ...change,
    kid: next.kid,
    tokenTtlMs: machine.timings.maxTokenTtlMs,
    demotedGraceMs: active === undefined ? 0 : graceMs(active, machine.timings),
  });
  machine.keyPromoted(promotion);
  return promotion.active;
}

/**
 * Generates and publishes a next key. With `watchListing` (a scheduled or asked-for rotation, never
 * an emergency, which must not wait) the same activity watches it appear at every JWKS URL for a
 * moment, which is usually enough for the propagation gate; if it was not seen everywhere, the gate
 * asks again after its first backoff.
 */
async function generateNextKey(
  machine: KeySetMachine,
  change: Cause,
  options: { watchListing?: boolean } = {},
): Promise<KeyTimeline> {
  const { algorithm } = machine.policy;
  const watch = options.watchListing === true && patched(LISTING_WATCHED_AT_GENERATION);
  const listing = watch
    ? {
        urls: machine.policy.publishedAt,
        waitMs: listingWaitMs({ alg: algorithm }, machine.key('active'), machine.timings),
        notBefore: machine.staleCachesUntil,
      }
    : undefined;
  const key = await changeKeys(
    'generateNextKey',
    `generate and publish a next ${algorithm} key${watch ? ', and watch it listed' : ''}`,
    {
      ...change,
      algorithm,
      ...(listing && { listing }),
    },
  );
  machine.keyGenerated(key);
  if (watch && key.promotableAt === undefined) machine.publicationPending(key, Date.now());
  return key;
}

/** Who changes the key set and why; when it happens is the store's to record, at the commit. */
function changeBy(machine: KeySetMachine, trigger: ChangeTrigger, actor: string, reason: string): Cause {
  return { keySetId: machine.keySetId, trigger, actor, reason };
}

/** Who asked and why, from a message that may leave either out. */
function requested(message: { requestedBy?: string; reason?: string } | undefined, defaultReason = 'no reason given') {
  return { requestedBy: message?.requestedBy?.trim() || OPERATOR, reason: message?.reason?.trim() || defaultReason };
}

function rotation(request: RotationRequest | undefined) {
  return {
    type: 'rotate' as const,
    ...requested(request, 'forced rotation'),
    immediately: request?.immediately === true,
  };
}

function historyIsLong(input: KeySetWorkflowInput): boolean {
  const info = workflowInfo();
  return info.continueAsNewSuggested || info.historyLength >= (input.maxHistoryEvents ?? DEFAULT_MAX_HISTORY_EVENTS);
}
