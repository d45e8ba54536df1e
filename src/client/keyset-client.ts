import type { Client, WorkflowHandle } from '@temporalio/client';
import type { KeySetStatus } from '../domain/keyset-state';
import { keySetSummary } from '../domain/describe';
import { KeyturnError } from '../domain/errors';
import { validatePolicy, type KeySetPolicy } from '../domain/policy';
import { KeySetIdSearchAttribute } from '../workflows/search-attributes';
import { getStateQuery, KEYSET_WORKFLOW_TYPE, keySetWorkflowId, type KeySetWorkflowInput } from '../workflows/messages';

/**
 * Typed operations on key set workflows, for the CLI and for deployment tooling. Workflow ids are
 * `keyset/<id>`; callers name key sets only.
 */
export class KeySetClient {
  constructor(
    private readonly client: Client,
    private readonly taskQueue: string,
  ) {}

  /**
   * Starts the key set's workflow, or returns the one already running under its id (a restart,
   * a second `apply`, two shells at once all end with one workflow). The policy is validated first.
   */
  async start(keySetId: string, policy: Partial<KeySetPolicy>): Promise<WorkflowHandle> {
    const input: KeySetWorkflowInput = { keySetId, policy: validatePolicy(policy, { keySetId }) };
    try {
      return await this.client.workflow.start(KEYSET_WORKFLOW_TYPE, {
        args: [input],
        taskQueue: this.taskQueue,
        workflowId: keySetWorkflowId(keySetId),
        workflowIdConflictPolicy: 'USE_EXISTING',
        // The workflow keeps ActiveKid and NextTransitionAt current once it is started with KeySetId.
        typedSearchAttributes: [{ key: KeySetIdSearchAttribute, value: keySetId }],
        staticSummary: keySetSummary(keySetId, input.policy),
      });
    } catch (error) {
      if (error instanceof Error && /search attribute .* is not defined/i.test(`${error.message} ${String(error.cause)}`)) {
        throw new KeyturnError(
          'ERR_CONFIG_INVALID',
          `cannot start key set "${keySetId}": the namespace lacks keyturn's search attributes; register them with ` +
            '`temporal operator search-attribute create --name KeySetId --type Keyword --name ActiveKid --type Keyword --name NextTransitionAt --type Datetime`',
          { keySetId, cause: error },
        );
      }
      throw error;
    }
  }

  /**
   * The active kid once the key set has one (a new key set gets its first key within seconds of
   * starting); polls the workflow's state, which may not answer before its first task has run.
   */
  async waitForActiveKid(keySetId: string, timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let lastProblem = 'no active key yet';
    for (;;) {
      try {
        const active = (await this.getState(keySetId)).keys.find((key) => key.state === 'active');
        if (active) return active.kid;
      } catch (error) {
        lastProblem = error instanceof Error ? error.message : String(error);
      }
      if (Date.now() > deadline) {
        throw new Error(`key set "${keySetId}" has no active key after ${Math.round(timeoutMs / 1000)} s (${lastProblem}): is a worker running on its task queue?`);
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }

  /** The key set's keys, policy and schedule as its workflow sees them now. */
  async getState(keySetId: string): Promise<KeySetStatus> {
    return this.client.workflow.getHandle(keySetWorkflowId(keySetId)).query(getStateQuery);
  }
}
