import type { Client, WorkflowStartOptions } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { Registry } from 'prom-client';
import { createAlertActivities } from '../../src/activities/alerts';
import { slackChannel, webhookChannel } from '../../src/alerts/channels';
import { notificationFor } from '../../src/alerts/notification';
import { SecretUrl } from '../../src/config';
import type { Alert } from '../../src/domain/incidents';
import { keyturnMetrics } from '../../src/observability/metrics';
import { AlertReceiver } from '../helpers/alert-receiver';
import { capturingLogger } from '../helpers/logs';

const SECRET = 's3cr3tT0ken';
const T0 = Date.UTC(2026, 0, 26);
// Long enough that a loaded machine's first fetch (undici loading) is not taken for a hanging receiver.
const DELIVERY_TIMEOUT_MS = 2_000;
const alert: Alert = {
  keySetId: 'payments',
  incident: 'step-failure',
  status: 'firing',
  step: 'promote',
  kid: 'kid-1',
  summary: 'key set "payments": promote failed 1 time(s) in a row; retrying after a backoff',
  error: 'connection refused',
  failures: 1,
  workflowId: 'keyset/payments',
};

let slack: AlertReceiver;
let webhook: AlertReceiver;
let registry: Registry;
let log: ReturnType<typeof capturingLogger>;
let activities: ReturnType<typeof createAlertActivities>;
/** The delivery workflows the activities started: [workflow type, options]. */
let started: [string, WorkflowStartOptions][];

beforeEach(async () => {
  [slack, webhook] = await Promise.all([
    AlertReceiver.start(`/services/T1/B1/${SECRET}`),
    AlertReceiver.start('/hook'),
  ]);
  registry = new Registry();
  log = capturingLogger();
  started = [];
  const temporalClient = {
    workflow: { start: async (type: string, options: WorkflowStartOptions) => void started.push([type, options]) },
  };
  activities = createAlertActivities({
    logger: log.logger,
    channels: [
      slackChannel(new SecretUrl(slack.url), DELIVERY_TIMEOUT_MS),
      webhookChannel(new SecretUrl(webhook.url), DELIVERY_TIMEOUT_MS),
    ],
    reminderMs: 4 * 3_600_000,
    alertsTotal: keyturnMetrics(registry).alerts,
    // Only the supervisor's activity uses the incident table; it has tests of its own.
    incidents: undefined as never,
    temporalClient: temporalClient as unknown as Client,
    taskQueue: 'keyturn',
  });
});
afterEach(async () => {
  await Promise.all([slack.close(), webhook.close()]);
});

async function counts(): Promise<Record<string, number>> {
  const { values } = await keyturnMetrics(registry).alerts.get();
  return Object.fromEntries(values.map((v) => [`${v.labels.channel}/${v.labels.outcome}`, v.value]));
}

test('an alert opening an incident is logged, counted, and handed to a delivery workflow for Slack and the webhook; a repeat is suppressed', async () => {
  const first = await activities.assessAlert({ alert, open: null, at: T0 });
  expect(first).toEqual({
    incident: { key: 'step-failure', openedAt: T0, notifiedAt: T0, notifications: 1 },
    announced: 'opened',
    remindAt: T0 + 4 * 3_600_000,
  });
  expect(log.text()).toContain('alert firing: key set \\"payments\\": promote failed');
  expect(started).toEqual([
    [
      'alertDeliveryWorkflow',
      expect.objectContaining({
        taskQueue: 'keyturn',
        workflowId: 'alert/payments/step-failure/2026-01-26T00:00:00.000Z/1',
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        args: [
          {
            channels: ['slack', 'webhook'],
            notification: expect.objectContaining({ kind: 'opened', keySetId: 'payments', sequence: 1 }),
          },
        ],
      }),
    ],
  ]);

  const repeat = await activities.assessAlert({
    alert: { ...alert, failures: 2 },
    open: first.incident,
    at: T0 + 60_000,
  });
  expect(repeat).toEqual({ incident: first.incident, announced: null, remindAt: T0 + 4 * 3_600_000 });
  const nothingOpen = await activities.assessAlert({
    alert: { ...alert, status: 'resolved' },
    open: null,
    at: T0 + 120_000,
  });
  expect(nothingOpen).toEqual({ incident: null, announced: null, remindAt: null });
  expect(started).toHaveLength(1);
  expect(await counts()).toEqual({
    'log/sent': 1,
    'log/suppressed': 1,
    'slack/suppressed': 1,
    'webhook/suppressed': 1,
  });
});

// The SDK logs every failed attempt at WARN; these tests fail attempts on purpose.
const quietSdk = new DefaultLogger('ERROR');

describe('delivery', () => {
  const notification = notificationFor(
    alert,
    'opened',
    { key: 'step-failure', openedAt: T0, notifiedAt: T0, notifications: 1 },
    T0,
  );
  const deliver = (channel: string, attempt: number) =>
    new MockActivityEnvironment({ attempt }, { logger: quietSdk })
      .run(activities.deliverAlert, { channel, notification, attempts: 10 })
      .catch((e: unknown) => e);

  test('a hanging Slack fails the attempt for Temporal to retry; only the last attempt counts as failed; the webhook is apart', async () => {
    slack.mode = 'hang';
    const early = await deliver('slack', 1);
    expect(early).toBeInstanceOf(ApplicationFailure);
    expect(early).toMatchObject({ type: 'ERR_ALERT_NOT_DELIVERED', nonRetryable: false });
    expect((early as Error).message).toBe(
      'Slack (SLACK_WEBHOOK_URL) did not take the firing alert for key set "payments" (kid kid-1): no answer within 2000 ms; ' +
        'check that Slack (SLACK_WEBHOOK_URL) is reachable from the worker',
    );
    expect(await counts()).toEqual({});

    await expect(deliver('webhook', 1)).resolves.toBeUndefined();
    const last = await deliver('slack', 10);
    expect(last).toMatchObject({ nonRetryable: false });
    expect(await counts()).toEqual({ 'webhook/sent': 1, 'slack/failed': 1 });
    expect(log.text()).toMatch(/"level":50.*"channel":"slack".*gave up after 10 attempt\(s\)/);

    slack.mode = 'ok';
    await expect(deliver('slack', 3)).resolves.toBeUndefined();
    expect(slack.delivered).toHaveLength(1);
  });

  test('a refusal is not retried and counts as failed at once; nothing names the URL', async () => {
    slack.mode = { status: 403, body: `invalid_token for /services/T1/B1/${SECRET}` };
    const refused = await deliver('slack', 1);
    expect(refused).toMatchObject({ nonRetryable: true });
    expect((refused as Error).message).toContain(
      'HTTP 403 (invalid_token for [secret URL]); not retried: check SLACK_WEBHOOK_URL',
    );
    expect(await counts()).toEqual({ 'slack/failed': 1 });
    expect(log.text()).not.toContain(SECRET);
    expect((refused as Error).message).not.toContain(SECRET);
  });

  test('a channel this worker does not have fails for good, saying which settings to look at', async () => {
    const missing = await deliver('pagerduty', 1);
    expect(missing).toMatchObject({ nonRetryable: true });
    expect((missing as Error).message).toContain('was not sent to pagerduty: this worker has no such channel');
    expect(await counts()).toEqual({ 'pagerduty/failed': 1 });
  });
});
