import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { Worker, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { KEY_CHANGE_STEPS } from '../../src/observability/metrics';
import { bundleWorkflows } from '../helpers/key-set-worker';
import { HISTORIES_DIR } from '../helpers/history';

/**
 * Every saved history, of every version folder, must replay against today's workflow code without a
 * determinism error: a change that would break running workflows fails here first.
 */
describe('replay of saved histories', () => {
  let bundle: WorkflowBundleWithSourceMap;
  let files: string[];
  beforeAll(async () => {
    bundle = await bundleWorkflows();
    const entries = await readdir(HISTORIES_DIR, { recursive: true });
    files = entries.filter((f) => f.endsWith('.json')).sort();
  });

  const load = async (file: string) => JSON.parse(await readFile(path.join(HISTORIES_DIR, file), 'utf8'));

  test('every history in test/histories replays', async () => {
    const histories = await Promise.all(files.map(async (file) => ({ workflowId: file, history: await load(file) })));
    const failures: string[] = [];
    for await (const result of Worker.runReplayHistories({ workflowBundle: bundle }, histories)) {
      if (result.error) failures.push(`${result.workflowId}: ${result.error.message}`);
    }
    expect(failures).toEqual([]);
  });

  test('the histories reach every path of the key set workflow, and the supervisor and alert delivery', async () => {
    const types = new Set<string>();
    const activities = new Set<string>();
    const messages = new Set<string>();
    let continuedAsNew = false;
    for (const file of files) {
      for (const event of (await load(file)).events as Record<string, Record<string, unknown> | undefined>[]) {
        const started = event.workflowExecutionStartedEventAttributes as
          { workflowType?: { name?: string } } | undefined;
        if (started?.workflowType?.name) types.add(started.workflowType.name);
        const scheduled = event.activityTaskScheduledEventAttributes as
          { activityType?: { name?: string } } | undefined;
        if (scheduled?.activityType?.name) activities.add(scheduled.activityType.name);
        const signal = event.workflowExecutionSignaledEventAttributes as { signalName?: string } | undefined;
        if (signal?.signalName) messages.add(signal.signalName);
        const update = event.workflowExecutionUpdateAcceptedEventAttributes as
          { acceptedRequest?: { input?: { name?: string } } } | undefined;
        if (update?.acceptedRequest?.input?.name) messages.add(update.acceptedRequest.input.name);
        if (event.workflowExecutionContinuedAsNewEventAttributes) continuedAsNew = true;
      }
    }
    expect([...types].sort()).toEqual(['alertDeliveryWorkflow', 'keySetWorkflow', 'supervisorWorkflow']);
    expect([...messages].sort()).toEqual(
      [
        'decommission',
        'pause',
        'recommission',
        'requestRotation',
        'resume',
        'revokeKey',
        'rotate',
        'updatePolicy',
      ].sort(),
    );
    // Every activity that changes keys (the metrics' list of lifecycle steps), and the others.
    for (const activity of [
      ...KEY_CHANGE_STEPS,
      'deploymentCeilings',
      'assessAlert',
      'superviseKeySets',
      'recordSupervisionAlerts',
      'deliverAlert',
    ]) {
      expect([activity, activities.has(activity)]).toEqual([activity, true]);
    }
    expect(continuedAsNew).toBe(true);
  });

  test('a history whose activities differ from the code is reported, so the check above can fail', async () => {
    const history = await load(files.find((f) => f.includes('seed-policy-100-days'))!);
    const scheduled = history.events.find(
      (e: { activityTaskScheduledEventAttributes?: unknown }) => e.activityTaskScheduledEventAttributes,
    );
    scheduled.activityTaskScheduledEventAttributes.activityType.name = 'someOtherActivity';
    await expect(Worker.runReplayHistory({ workflowBundle: bundle }, history)).rejects.toThrow(/[Nn]ondetermin/);
  });
});
