import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
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

/** Where the histories that the replay test replays are kept. */
export const HISTORIES_DIR = path.join(__dirname, '..', 'histories');

/**
 * With KEYTURN_RECORD_HISTORIES=1, saves the current run's history as `test/histories/<name>.json`
 * for the replay test. Record again (and commit) only on purpose: the saved histories are what
 * proves a change to the workflow still replays what running workflows already did.
 */
export async function recordHistory(handle: WorkflowHandle, name: string): Promise<void> {
  if (process.env.KEYTURN_RECORD_HISTORIES !== '1') return;
  await writeFile(path.join(HISTORIES_DIR, `${name}.json`), historyToJSON(await handle.fetchHistory()));
}
