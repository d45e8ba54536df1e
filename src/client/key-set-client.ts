import {
  ApplicationFailure,
  isGrpcDeadlineError,
  NamespaceNotFoundError,
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
  WorkflowExecutionAlreadyStartedError,
  WithStartWorkflowOperation,
  type Client,
  type ConnectionLike,
  type WorkflowHandle,
  type WorkflowStartOptions,
} from '@temporalio/client';
import { loadConfig } from '../config';
import type { KeySetStatus } from '../domain/key-set-state';
import { keySetSummary } from '../domain/describe';
import { KeyturnError, type KeyturnErrorCode } from '../domain/errors';
import { checkKeySetId } from '../domain/key-set-id';
import { OPTIONAL_POLICY_FIELDS, validatePolicy, type KeySetPolicy, type PolicyPatch } from '../domain/policy';
import { ActiveKidSearchAttribute, KeySetIdSearchAttribute } from '../workflows/search-attributes';
import {
  decommissionUpdate,
  getStateQuery,
  KEYSET_WORKFLOW_TYPE,
  keySetWorkflowId,
  pauseSignal,
  recommissionUpdate,
  requestRotationSignal,
  resumeSignal,
  revokeKeyUpdate,
  rotateUpdate,
  updatePolicyUpdate,
  type DecommissionRequest,
  type KeySetWorkflowInput,
  type PolicyUpdate,
  type PolicyUpdateResult,
  type RecommissionRequest,
  type RevocationResult,
  type RotationRequest,
  type RotationResult,
} from '../workflows/messages';
import { connectClient, resolveTemporalTarget } from './connect';
import type { KeySetVerification } from './verify';

/** Time limits of a KeySetClient's calls. */
export interface KeySetClientOptions {
  /** How long a query or signal may take before the key set counts as not answering (default 10 s). */
  answerTimeoutMs?: number;
  /**
   * How long an Update (`apply`, `rotate`, `revoke`, `updatePolicy`, `decommission`, `recommission`) waits
   * for the workflow to carry it out (default 60 s).
   */
  updateTimeoutMs?: number;
  /**
   * How long listing every running key set from visibility may take, all pages (default 60 s): a
   * busy dev server's SQLite took up to 10 s for 300 workflows on a loaded 2-core machine.
   */
  listTimeoutMs?: number;
}

/**
 * Where {@link KeySetClient.connect} finds Temporal and keyturn's worker. What is left out is read
 * from `env` as the `keyturn` CLI reads it.
 */
export interface KeySetClientConnectOptions extends KeySetClientOptions {
  /**
   * `host:port` of the Temporal frontend. Default: `TEMPORAL_ADDRESS` or the Temporal profile's
   * address, else the `keyturn dev` instance running on `KEYTURN_DATA_DIR` (`.keyturn`), else `localhost:7233`.
   * TLS and API keys come from Temporal's environment configuration (`TEMPORAL_TLS_*`, `TEMPORAL_API_KEY`, profiles).
   */
  address?: string;
  /** Default: `TEMPORAL_NAMESPACE` or the profile's, else the running instance's, else `default`. */
  namespace?: string;
  /** The task queue keyturn's worker polls. Default: `KEYTURN_TASK_QUEUE`, else `keyturn`. */
  taskQueue?: string;
  /** Where the defaults are read from (default `process.env`). */
  env?: NodeJS.ProcessEnv;
}

/** Who asks and why, for the audit trail. */
export interface ApplyRequest {
  /** Who asked (a deployment script, a ticket); recorded as the actor. */
  requestedBy?: string;
  /** Why; default `apply`. */
  reason?: string;
}

/** What {@link KeySetClient.apply} did to one key set. */
export interface KeySetApplyResult extends PolicyUpdateResult {
  /** The key set's workflow was not running and was started with the policy. */
  created: boolean;
  /** The key set was winding down (decommissioned) and is back in service. */
  recommissioned: boolean;
}

/** Where {@link KeySetClient.verify} reads the keys, and how old an active key may grow. */
export interface VerifyKeySetOptions {
  /** keyturn's PostgreSQL; read only, no KEK needed (a role like `KEYTURN_WORKER_ROLE`). */
  databaseUrl: string;
  /** How long past its rotation period an active key may sign before it counts as overdue (`KEYTURN_OVERDUE_TOLERANCE`, default 1 h). */
  keyAgeToleranceMs?: number;
}

/** A running key set workflow as the visibility store lists it. */
export interface VisibleKeySet {
  runId: string;
  /** The ActiveKid search attribute: the kid the workflow last said was active, null if none. */
  activeKid: string | null;
  /** Started with the KeySetId search attribute, so it keeps ActiveKid current; without it, ActiveKid says nothing. */
  tagged: boolean;
}

/**
 * Typed operations on key set workflows: everything the `keyturn` CLI does through Temporal, for
 * deployment scripts and tooling. Workflow ids are `keyset/<id>`; callers name key sets only. A
 * refusal is a {@link KeyturnError} whose `code` says why (`ERR_KEYSET_NOT_FOUND`, `ERR_POLICY_INVALID`, ...).
 *
 * @example
 * ```ts
 * import { KeySetClient } from 'keyturn';
 *
 * const keySets = await KeySetClient.connect({ address: 'localhost:7233' });
 * try {
 *   await keySets.apply('payments', { algorithm: 'ES256', rotationPeriod: '30d' }, { requestedBy: 'deploy.ts' });
 *   const status = await keySets.getState('payments');
 *   await keySets.rotate('payments', { reason: 'drill' });
 * } finally {
 *   await keySets.close();
 * }
 * ```
 */
export class KeySetClient {
  /** The connection {@link KeySetClient.connect} opened, which close() closes; none for a client given to the constructor. */
  private ownConnection: ConnectionLike | undefined;
  private readonly answerTimeoutMs: number;
  private readonly updateTimeoutMs: number;
  private readonly listTimeoutMs: number;

  /** On a Temporal client of your own (closing it stays yours); `taskQueue` is the one keyturn's worker polls. */
  constructor(
    private readonly client: Client,
    private readonly taskQueue: string,
    options: KeySetClientOptions = {},
  ) {
    this.answerTimeoutMs = options.answerTimeoutMs ?? 10_000;
    this.updateTimeoutMs = options.updateTimeoutMs ?? 60_000;
    this.listTimeoutMs = options.listTimeoutMs ?? 60_000;
  }

  /**
   * Connects to Temporal as the `keyturn` CLI does (see {@link KeySetClientConnectOptions}); a server
   * that does not answer within 5 s, or refuses the credentials, is an error saying what to set.
   * Call {@link KeySetClient.close} when done.
   */
  static async connect(options: KeySetClientConnectOptions = {}): Promise<KeySetClient> {
    const config = loadConfig(options.env ?? process.env);
    const target = await resolveTemporalTarget(config, { address: options.address, namespace: options.namespace });
    const client = await connectClient(
      options.address ? { ...target, origin: 'given to KeySetClient.connect' } : target,
    );
    const keySets = new KeySetClient(client, options.taskQueue ?? config.taskQueue, options);
    keySets.ownConnection = client.connection;
    return keySets;
  }

  /** Closes the connection {@link KeySetClient.connect} opened; a client given to the constructor is left open. */
  async close(): Promise<void> {
    await this.ownConnection?.close();
  }

  /**
   * Brings the key set in line with `policy` as `keyturn apply` does for each key set of its file:
   * starts its workflow with the policy if none runs, takes it back into service if it is winding
   * down, and sends the whole policy (fields left out take the seed policy's values; `issuer` and
   * `publishedAt` left out are removed). The policy is validated first, and the workflow checks it
   * against the worker's ceilings; either refusal is an `ERR_POLICY_INVALID` naming every field at
   * fault. Safe to call again: a policy that matches changes nothing (`changed` is empty).
   */
  async apply(keySetId: string, policy: Partial<KeySetPolicy>, request: ApplyRequest = {}): Promise<KeySetApplyResult> {
    const whole = validatePolicy(policy, { keySetId });
    const requestedBy = request.requestedBy && { requestedBy: request.requestedBy };
    const update: PolicyUpdate = { patch: wholePolicy(whole), ...requestedBy, reason: request.reason ?? 'apply' };
    // A new key set gets its policy in its first task; one that runs (or that another apply started
    // meanwhile) is looked at, then updated.
    const started = await this.startWithPolicyUpdate(keySetId, whole, update);
    if (started !== undefined) return { created: true, recommissioned: false, ...started };
    const recommissioned = (await this.getState(keySetId)).decommissioned !== null;
    if (recommissioned)
      await this.recommission(keySetId, { reason: request.reason ?? 'listed again by apply', ...requestedBy });
    return { created: false, recommissioned, ...(await this.updatePolicy(keySetId, update)) };
  }

  /**
   * Checks the key set's workflow state against its keys in PostgreSQL, as `keyturn verify <id>` does:
   * one active key, the same states and times, no transition overdue, every kid the RFC 7638
   * thumbprint of its public key. The result lists each broken invariant; none means all hold.
   */
  async verify(keySetId: string, options: VerifyKeySetOptions): Promise<KeySetVerification> {
    // Loaded here, not with the client: the database driver and key crypto would slow every CLI command's start.
    const [{ KeySetDatabase }, { verifyKeySet }] = await Promise.all([
      import('./key-set-database.js'),
      import('./verify.js'),
    ]);
    const database = await KeySetDatabase.connect(options.databaseUrl);
    try {
      return await verifyKeySet(this, database, keySetId, { keyAgeToleranceMs: options.keyAgeToleranceMs });
    } finally {
      await database.close();
    }
  }

  /**
   * Starts the key set's workflow, or returns the one already running under its id (a restart,
   * a second `apply`, two shells at once all end with one workflow). The policy is validated first.
   */
  async start(keySetId: string, policy: Partial<KeySetPolicy>): Promise<WorkflowHandle> {
    try {
      return await this.client.workflow.start(
        KEYSET_WORKFLOW_TYPE,
        this.startOptions(keySetId, policy, 'USE_EXISTING'),
      );
    } catch (error) {
      throw missingSearchAttributes(keySetId, error) ?? error;
    }
  }

  /**
   * Starts the key set's workflow with `update` of its policy delivered in its first task, in one call
   * (Update-With-Start: no task of its own for the Update, as a start followed by the Update would
   * take), and answers once the workflow has checked the policy against the worker's ceilings and
   * recorded it; undefined, with nothing sent to the workflow, when one runs under its id already.
   */
  async startWithPolicyUpdate(
    keySetId: string,
    policy: Partial<KeySetPolicy>,
    update: PolicyUpdate,
  ): Promise<PolicyUpdateResult | undefined> {
    const startWorkflowOperation = new WithStartWorkflowOperation(
      KEYSET_WORKFLOW_TYPE,
      this.startOptions(keySetId, policy, 'FAIL'),
    );
    try {
      return await this.client.withDeadline(Date.now() + this.updateTimeoutMs, () =>
        this.client.workflow.executeUpdateWithStart(updatePolicyUpdate, { args: [update], startWorkflowOperation }),
      );
    } catch (error) {
      if (error instanceof WorkflowExecutionAlreadyStartedError) return undefined;
      const handle = this.client.workflow.getHandle(workflowIdOf(keySetId));
      throw (
        missingSearchAttributes(keySetId, error) ??
        (await this.refusalAtStart(keySetId, handle, error)) ??
        this.explain(keySetId, error, this.updateTimeoutMs)
      );
    }
  }

  /** How a key set's workflow is started: its policy validated first, tagged with its id, summarised for the Web UI. */
  private startOptions(
    keySetId: string,
    policy: Partial<KeySetPolicy>,
    workflowIdConflictPolicy: 'USE_EXISTING' | 'FAIL',
  ) {
    const input: KeySetWorkflowInput = { keySetId, policy: validatePolicy(policy, { keySetId }) };
    return {
      args: [input],
      taskQueue: this.taskQueue,
      workflowId: workflowIdOf(keySetId),
      workflowIdConflictPolicy,
      // The workflow keeps ActiveKid and NextTransitionAt current once it is started with KeySetId.
      typedSearchAttributes: [{ key: KeySetIdSearchAttribute, value: keySetId }],
      staticSummary: keySetSummary(keySetId, input.policy),
    } satisfies WorkflowStartOptions<(input: KeySetWorkflowInput) => Promise<void>>;
  }

  /**
   * The active kid once the key set has one (a new key set gets its first key within seconds of
   * starting), or once `kid` is active; polls the workflow's state, which may not answer before its
   * first task has run.
   */
  async waitForActiveKid(keySetId: string, timeoutMs = 30_000, kid?: string): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    const awaited = kid === undefined ? 'an active key' : `key ${kid} active`;
    let lastProblem = 'not yet';
    for (;;) {
      try {
        const active = (await this.getState(keySetId)).keys.find((key) => key.state === 'active');
        if (active && (kid === undefined || active.kid === kid)) return active.kid;
      } catch (error) {
        lastProblem = error instanceof Error ? error.message : String(error);
      }
      if (Date.now() > deadline) {
        throw new Error(
          `key set "${keySetId}" has not got ${awaited} after ${Math.round(timeoutMs / 1000)} s (${lastProblem}): is a worker running on its task queue?`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** Whether the key set's workflow runs now (false when it never started or has ended). */
  async isRunning(keySetId: string): Promise<boolean> {
    try {
      return (await this.client.workflow.getHandle(workflowIdOf(keySetId)).describe()).status.name === 'RUNNING';
    } catch (error) {
      if (error instanceof WorkflowNotFoundError) return false;
      throw error;
    }
  }

  /** The key set's keys, policy and schedule as its workflow sees them now. */
  async getState(keySetId: string): Promise<KeySetStatus> {
    return this.send(keySetId, this.answerTimeoutMs, (handle) => handle.query(getStateQuery));
  }

  /** Rotates: answers with the key that will sign and when (Update `rotate`); see RotationRequest.immediately. */
  async rotate(keySetId: string, request: RotationRequest = {}): Promise<RotationResult> {
    return this.send(keySetId, this.updateTimeoutMs, (handle) =>
      handle.executeUpdate(rotateUpdate, { args: [request] }),
    );
  }

  /** Asks for a rotation and returns at once (signal `requestRotation`); the workflow retries it if it fails. */
  async requestRotation(keySetId: string, request: RotationRequest = {}): Promise<void> {
    await this.send(keySetId, this.answerTimeoutMs, (handle) => handle.signal(requestRotationSignal, request));
  }

  /**
   * Takes `kid` out of the JWKS and erases its private part; a revoked active key is replaced at
   * once. Refused, with nothing sent, without a reason; the workflow refuses an unknown kid.
   */
  async revoke(keySetId: string, kid: string, reason: string, requestedBy?: string): Promise<RevocationResult> {
    requireReason(keySetId, reason, 'revoking a key');
    return this.send(keySetId, this.updateTimeoutMs, (handle) =>
      handle.executeUpdate(revokeKeyUpdate, { args: [{ kid, reason, ...(requestedBy && { requestedBy }) }] }),
    );
  }

  /** Stops scheduled transitions until `resume`; operator commands still run. Needs a reason. */
  async pause(keySetId: string, reason: string, requestedBy?: string): Promise<void> {
    requireReason(keySetId, reason, 'pausing a key set');
    await this.send(keySetId, this.answerTimeoutMs, (handle) =>
      handle.signal(pauseSignal, { reason, ...(requestedBy && { requestedBy }) }),
    );
  }

  /** Restarts the scheduled transitions of a paused key set; overdue ones run at once. */
  async resume(keySetId: string, requestedBy?: string): Promise<void> {
    await this.send(keySetId, this.answerTimeoutMs, (handle) =>
      handle.signal(resumeSignal, requestedBy ? { requestedBy } : {}),
    );
  }

  /** Changes the key set's policy (`null` removes an optional field); answers with the policy in force and what changed. */
  async updatePolicy(keySetId: string, update: PolicyUpdate): Promise<PolicyUpdateResult> {
    return this.send(keySetId, this.updateTimeoutMs, (handle) =>
      handle.executeUpdate(updatePolicyUpdate, { args: [update] }),
    );
  }

  /** Winds the key set down (see `decommissionUpdate`). */
  async decommission(keySetId: string, request: DecommissionRequest): Promise<void> {
    await this.send(keySetId, this.updateTimeoutMs, (handle) =>
      handle.executeUpdate(decommissionUpdate, { args: [request] }),
    );
  }

  /** Takes a key set that winds down back into service. */
  async recommission(keySetId: string, request: RecommissionRequest): Promise<void> {
    await this.send(keySetId, this.updateTimeoutMs, (handle) =>
      handle.executeUpdate(recommissionUpdate, { args: [request] }),
    );
  }

  /**
   * The ids of the key sets whose workflow is running, from Temporal's visibility store (for
   * callers without access to the database; its `key_sets` table is the complete list).
   */
  async listRunningKeySetIds(): Promise<string[]> {
    return [...(await this.listRunningKeySets()).keys()].sort();
  }

  /**
   * Every running key set workflow as Temporal's visibility store lists it, by key set id, with the
   * active kid it last upserted (null when it has none or never upserted one): a few list calls of
   * up to 1,000 workflows each, whatever the number of key sets. Visibility trails the workflows by
   * a moment (a workflow just started or just ended, a kid just promoted), so callers take an entry
   * as a hint to check, not as the workflow's word.
   */
  async listRunningKeySets(): Promise<Map<string, VisibleKeySet>> {
    const running = new Map<string, VisibleKeySet>();
    const prefix = keySetWorkflowId('');
    const query = `WorkflowType = '${KEYSET_WORKFLOW_TYPE}' AND ExecutionStatus = 'Running'`;
    await this.client.withDeadline(Date.now() + this.listTimeoutMs, async () => {
      for await (const execution of this.client.workflow.list({ query, pageSize: 1_000 })) {
        if (!execution.workflowId.startsWith(prefix)) continue;
        running.set(execution.workflowId.slice(prefix.length), {
          runId: execution.runId,
          activeKid: execution.typedSearchAttributes.get(ActiveKidSearchAttribute) ?? null,
          tagged: execution.typedSearchAttributes.get(KeySetIdSearchAttribute) !== undefined,
        });
      }
    });
    return running;
  }

  /** One call to the key set's workflow, bounded in time, its failures in keyturn's words. */
  private async send<T>(keySetId: string, timeoutMs: number, call: (handle: WorkflowHandle) => Promise<T>): Promise<T> {
    const handle = this.client.workflow.getHandle(workflowIdOf(keySetId));
    try {
      return await this.client.withDeadline(Date.now() + timeoutMs, () => call(handle));
    } catch (error) {
      throw (await this.refusalAtStart(keySetId, handle, error)) ?? this.explain(keySetId, error, timeoutMs);
    }
  }

  /**
   * A workflow that failed at its start (it refuses a policy outside the rules or the ceilings) is
   * gone by the time a message reaches it: its own failure says why.
   */
  private async refusalAtStart(
    keySetId: string,
    handle: WorkflowHandle,
    error: unknown,
  ): Promise<KeyturnError | undefined> {
    if (!(error instanceof WorkflowNotFoundError)) return undefined;
    const failure = await handle.result().then(
      () => undefined,
      (failed: unknown) =>
        failed instanceof WorkflowFailedError && failed.cause instanceof ApplicationFailure ? failed.cause : undefined,
    );
    if (failure?.type !== 'ERR_POLICY_INVALID') return undefined;
    return new KeyturnError(
      'ERR_POLICY_INVALID',
      `the workflow of key set "${keySetId}" refused its policy: ${failure.message}`,
      { keySetId, cause: error },
    );
  }

  private explain(keySetId: string, error: unknown, timeoutMs: number): unknown {
    if (error instanceof WorkflowNotFoundError) {
      return new KeyturnError('ERR_KEYSET_NOT_FOUND', `no key set "${keySetId}": apply it first or check --namespace`, {
        keySetId,
        cause: error,
      });
    }
    if (error instanceof NamespaceNotFoundError) {
      return new KeyturnError(
        'ERR_CONFIG_INVALID',
        `Temporal has no namespace "${error.namespace}": check --namespace or TEMPORAL_NAMESPACE`,
        {
          keySetId,
          field: 'namespace',
          cause: error,
        },
      );
    }
    // An Update the workflow refused or failed: its ApplicationFailure carries a KeyturnError's code and message.
    if (error instanceof WorkflowUpdateFailedError && error.cause instanceof ApplicationFailure) {
      const details = error.cause.details?.[0] as { kid?: string } | undefined;
      return new KeyturnError((error.cause.type ?? 'ERR_STEP_FAILED') as KeyturnErrorCode, error.cause.message, {
        keySetId,
        kid: details?.kid,
        cause: error,
      });
    }
    if (error instanceof WorkflowUpdateRPCTimeoutOrCancelledError || isGrpcDeadlineError(error)) {
      return new Error(
        `key set "${keySetId}" did not answer within ${Math.round(timeoutMs / 1000)} s: is a keyturn worker running on task queue "${this.taskQueue}"?`,
        { cause: error },
      );
    }
    return error;
  }
}

/** A start refused because the namespace lacks keyturn's search attributes, in words that say how to register them; else undefined. */
function missingSearchAttributes(keySetId: string, error: unknown): KeyturnError | undefined {
  if (!(
    error instanceof Error && /search attribute .* is not defined/i.test(`${error.message} ${String(error.cause)}`)
  ))
    return undefined;
  return new KeyturnError(
    'ERR_CONFIG_INVALID',
    `cannot start key set "${keySetId}": the namespace lacks keyturn's search attributes; register them with ` +
      '`temporal operator search-attribute create --name KeySetId --type Keyword --name ActiveKid --type Keyword --name NextTransitionAt --type Datetime`',
    { keySetId, cause: error },
  );
}

/** A whole policy as a patch that makes the running one equal to it: optional fields it leaves out are removed. */
function wholePolicy(policy: KeySetPolicy): PolicyPatch {
  return {
    ...policy,
    ...Object.fromEntries(OPTIONAL_POLICY_FIELDS.filter((f) => policy[f] === undefined).map((f) => [f, null])),
  };
}

/** The workflow id of a key set; an id that is no key set id is refused before anything is sent. */
function workflowIdOf(keySetId: string): string {
  return keySetWorkflowId(checkKeySetId(keySetId, 'keySetId'));
}

/** A revocation or a pause is recorded with its reason; without one nothing is sent. */
function requireReason(keySetId: string, reason: string | undefined, what: string): void {
  if (typeof reason !== 'string' || reason.trim() === '') {
    throw new KeyturnError(
      'ERR_REASON_REQUIRED',
      `${what} needs a reason (--reason <text>): it goes into the audit trail`,
      {
        keySetId,
        field: 'reason',
      },
    );
  }
}
