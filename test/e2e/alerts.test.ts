import { Client, Connection } from '@temporalio/client';
import { validatePolicy } from '../../src/domain/policy';
import { keySetWorkflowId } from '../../src/workflows/messages';
import { AlertReceiver } from '../helpers/alert-receiver';
import { startTestDevStack, type TestDevStack } from '../helpers/dev-stack';
import { historyText } from '../helpers/history';
import { capturingLogger } from '../helpers/logs';
import { waitFor } from '../helpers/wait';
import { startControlledJwks, type ControlledJwks } from '../helpers/controlled-jwks';

// The whole stack in real time (Temporal dev server, the worker built from its environment, PostgreSQL)
// with Slack down: its requests hang. A promotion held at the propagation gate raises an alert; the
// test lets the key through and measures that the promotion follows at the gate's next look, not
// after Slack; then Slack recovers and receives every message it missed, by Temporal's retries.

const KEY_SET = 'hang';
const SECRET = 'T0HANG/B0HANG/s3cr3tSl4ckT0ken';
/** Generous: the gate looks again within about a second and a half of the listing, then the key waits jwksMaxAge (1 s). */
const GATE_LOOK_MS = 30_000;

type Payload = { kind: string; incidentId: string; kid: string; step: string; status: string };

let running: TestDevStack;
let slack: AlertReceiver;
let webhook: AlertReceiver;
let jwks: ControlledJwks;
let temporal: Connection;
const log = capturingLogger();

beforeAll(async () => {
  [slack, webhook, jwks] = await Promise.all([
    AlertReceiver.start(`/services/${SECRET}`),
    AlertReceiver.start('/alerts'),
    startControlledJwks(),
  ]);
  slack.mode = 'hang';
  running = await startTestDevStack('alerts', {
    jwksPort: 0,
    logger: log.logger,
    env: {
      SLACK_WEBHOOK_URL: slack.url,
      ALERT_WEBHOOK_URL: webhook.url,
      KEYTURN_UI_URL: 'http://ui.test:8233',
      KEYTURN_ALERT_TIMEOUT: '1s',
    },
  });
  temporal = await Connection.connect({ address: running.stack.temporalAddress });
}, 120_000);

afterAll(async () => {
  await temporal?.close();
  await running?.stop();
  await Promise.all([slack?.close(), webhook?.close(), jwks?.close()]);
});

test('with Slack hanging, a promotion held at the gate goes ahead as soon as the key is listed; Slack gets every message once it answers', async () => {
  const { keySets } = running.stack;
  const policy = validatePolicy({
    algorithm: 'ES256',
    rotationPeriod: '12s',
    prepublish: '5s',
    jwksMaxAge: '1s',
    gracePeriod: '2s',
    maxTokenTtl: '1s',
    clockSkew: '1s',
    retirement: '1m',
    publishedAt: [jwks.url],
  });
  await keySets.start(KEY_SET, policy);
  const first = await keySets.waitForActiveKid(KEY_SET);
  jwks.kids.add(first);
  const next = await waitFor(
    async () => (await keySets.getState(KEY_SET)).keys.find((k) => k.state === 'next')?.kid,
    20_000,
    'the next key',
  );

  // Day 12 s: the promotion is due, the JWKS does not list the next key, and after jwksMaxAge the gate alerts.
  const [opened] = (await waitFor(
    () => (webhook.delivered.length > 0 ? webhook.delivered : undefined),
    20_000,
    'the alert',
  )) as Payload[];
  expect(opened).toMatchObject({ kind: 'opened', status: 'firing', step: 'propagation', kid: next });
  await waitFor(() => (slack.requests.length > 0 ? true : undefined), 5_000, 'a request to Slack');

  const listedAt = Date.now();
  jwks.kids.add(next);
  const promoted = await waitFor(
    async () => {
      const key = (await keySets.getState(KEY_SET)).keys.find((k) => k.kid === next && k.state === 'active');
      return key?.activatedAt;
    },
    10_000,
    'the promotion',
  );
  // The promotion came once the gate saw the key listed, jwksMaxAge later, while Slack had answered nothing.
  expect(promoted - listedAt).toBeGreaterThanOrEqual(1_000);
  expect(promoted - listedAt).toBeLessThan(GATE_LOOK_MS);
  expect(slack.requests.filter((r) => r.receivedAt < promoted && r.status !== null)).toEqual([]);

  // Slack comes back: each message's delivery, retried with backoff since, gets through.
  slack.mode = 'ok';
  const kinds = (list: unknown[]) => (list as Payload[]).map((p) => p.kind).sort();
  await waitFor(
    () => (slack.delivered.length >= 2 && webhook.delivered.length >= 2 ? true : undefined),
    40_000,
    'both messages on both channels',
  );
  expect(kinds(webhook.delivered)).toEqual(['opened', 'resolved']);
  const slackKinds = (slack.delivered as { blocks: { text?: { text: string } }[] }[]).map(
    (m) => m.blocks[0].text!.text,
  );
  expect(slackKinds.sort()).toEqual([`✅ Resolved: key set ${KEY_SET}`, `🚨 Alert: key set ${KEY_SET}`]);
  expect(slack.requests.length).toBeGreaterThan(2);

  // What the worker counted, as its /metrics shows it: a message is counted once its delivery
  // activity has finished, a moment after the receiver has it.
  const metrics = await waitFor(
    async () => {
      const text = await (await fetch(`${running.stack.jwksUrl}/metrics`)).text();
      const counted = ['slack', 'webhook', 'log'].every((channel) =>
        text.includes(`keyturn_alerts_total{channel="${channel}",outcome="sent"} 2`),
      );
      return counted ? text : undefined;
    },
    10_000,
    'both messages counted on every channel',
  );

  // The Slack URL is a secret: not in the logs, the metrics, or any history.
  const client = new Client({ connection: temporal, namespace: running.stack.namespace });
  const deliveries = [1, 2].map((n) => client.workflow.getHandle(`alert/${opened.incidentId}/${n}`));
  const histories = await Promise.all([
    historyText(client.workflow.getHandle(keySetWorkflowId(KEY_SET))),
    ...deliveries.map(historyText),
  ]);
  expect(log.text()).toContain('did not take the firing alert');
  for (const text of [log.text(), metrics, ...histories]) expect(text).not.toContain('s3cr3tSl4ckT0ken');
  await client.workflow.getHandle(keySetWorkflowId(KEY_SET)).terminate('test finished');
}, 120_000);
