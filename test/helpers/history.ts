import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import type { temporal } from '@temporalio/proto';
import { PRIVATE_JWK_MEMBERS } from '../../src/domain/private-jwk';

/** JSON keys of private JWK members: none may appear in a workflow's history. */
export const PRIVATE_MEMBER_KEYS = PRIVATE_JWK_MEMBERS.map((m) => new RegExp(`"${m}"\\s*:`));

/**
 * The text of every run of a workflow's history with each payload decoded, so that a search sees
 * what Temporal stored and not its base64.
 */
export async function historyText(handle: WorkflowHandle): Promise<string> {
  const texts: string[] = [];
  let runId: string | undefined = (await handle.describe()).runId;
  // Walk back through continue-as-new: each run names the one before it.
  while (runId) {
    const history: temporal.api.history.v1.IHistory = await handle.client
      .getHandle(handle.workflowId, runId)
      .fetchHistory();
    texts.push(
      JSON.stringify(history, (_key, value) =>
        value instanceof Uint8Array ? Buffer.from(value).toString('utf8') : value,
      ),
    );
    const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
    runId = started?.continuedExecutionRunId || undefined;
  }
  return texts.join('\n');
}

/** Where the histories that the replay test replays are kept: one folder per workflow code version. */
export const HISTORIES_DIR = path.join(__dirname, '..', 'histories');

/**
 * The folder new histories are recorded into. A change to the workflow that running workflows
 * could not replay gets a folder of its own (v2, ...) once keyturn is released: the histories of
 * every earlier folder must still replay (see the README's rule for changing workflow code). v2
 * holds the paths of issue 13's patches (a load in one activity, a next key watched for its listing
 * in the activity that generates it, search attributes that follow rotations); v1 the paths before.
 */
export const RECORDING_VERSION = 'v2';

/**
 * With KEYTURN_RECORD_HISTORIES=1, saves the history of `handle`'s run (the latest, or `runId`) as
 * `test/histories/<RECORDING_VERSION>/<name>.json` for the replay test, unless that file exists: a
 * saved history is what proves a change still replays what workflows already did, so it is never
 * written over.
 */
export async function recordHistory(handle: WorkflowHandle, name: string, runId?: string): Promise<void> {
  if (process.env.KEYTURN_RECORD_HISTORIES !== '1') return;
  const dir = path.join(HISTORIES_DIR, RECORDING_VERSION);
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${name}.json`);
  const history = await (
    runId === undefined ? handle : handle.client.getHandle(handle.workflowId, runId)
  ).fetchHistory();
  await writeFile(file, historyToJSON(history), { flag: 'wx' }).catch((error: NodeJS.ErrnoException) => {
    if (error.code !== 'EEXIST') throw error;
  });
}

/** A history name for the current test: its full name (describe blocks and title) in lower-case words joined by dashes, at most 80 characters. */
export function historyNameOfTest(): string {
  const name = expect.getState().currentTestName ?? 'unnamed';
  return name
    .replace(/[^a-z0-9]+/gi, '-')
    .toLowerCase()
    .slice(0, 80)
    .replace(/-+$/, '');
}
