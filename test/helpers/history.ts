import type { WorkflowHandle } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';

/** JSON keys of private JWK members: none may appear in a workflow's history. */
export const PRIVATE_MEMBER_KEYS = ['d', 'p', 'q', 'dp', 'dq', 'qi'].map((m) => new RegExp(`"${m}"\\s*:`));

/**
 * The text of every run of a workflow's history with each payload decoded, so that a search sees
 * what Temporal stored and not its base64.
 */
export async function historyText(handle: WorkflowHandle): Promise<string> {
  const texts: string[] = [];
  let runId: string | undefined = (await handle.describe()).runId;
  // Walk back through continue-as-new: each run names the one before it.
  while (runId) {
    const history: temporal.api.history.v1.IHistory = await handle.client.getHandle(handle.workflowId, runId).fetchHistory();
    texts.push(JSON.stringify(history, (_key, value) => (value instanceof Uint8Array ? Buffer.from(value).toString('utf8') : value)));
    const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
    runId = started?.continuedExecutionRunId || undefined;
  }
  return texts.join('\n');
}
