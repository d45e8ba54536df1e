import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { bundleWorkflows } from '../helpers/keyset-worker';
import { HISTORIES_DIR } from '../helpers/history';

/**
 * Every saved history must replay against today's workflow code without a determinism error:
 * a change that would break running key set workflows fails here first.
 */
describe('replay of saved histories', () => {
  let bundle: WorkflowBundleWithSourceMap;
  beforeAll(async () => {
    bundle = await bundleWorkflows();
  });

  test('every history in test/histories replays', async () => {
    const files = (await readdir(HISTORIES_DIR)).filter((f) => f.endsWith('.json')).sort();
    expect(files.length).toBeGreaterThanOrEqual(3);
    const histories = await Promise.all(
      files.map(async (file) => ({ workflowId: file, history: JSON.parse(await readFile(path.join(HISTORIES_DIR, file), 'utf8')) })),
    );
    const failures: string[] = [];
    for await (const result of Worker.runReplayHistories({ workflowBundle: bundle }, histories)) {
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
  });

  test('a history whose activities differ from the code is reported, so the check above can fail', async () => {
    const history = JSON.parse(await readFile(path.join(HISTORIES_DIR, 'seed-policy-100-days.json'), 'utf8'));
    const scheduled = history.events.find((e: { activityTaskScheduledEventAttributes?: unknown }) => e.activityTaskScheduledEventAttributes);
    scheduled.activityTaskScheduledEventAttributes.activityType.name = 'someOtherActivity';
    await expect(Worker.runReplayHistory({ workflowBundle: bundle }, history)).rejects.toThrow(/[Nn]ondetermin/);
  });
});
