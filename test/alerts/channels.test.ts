import { SecretUrl } from '../../src/config';
import { AlertDeliveryError, slackChannel, webhookChannel } from '../../src/alerts/channels';
import { notificationFor, type AlertNotification } from '../../src/alerts/notification';
import type { SlackMessage } from '../../src/alerts/slack';
import type { Alert } from '../../src/domain/incidents';
import { AlertReceiver } from '../helpers/alert-receiver';

const SECRET_PATH = '/services/T0001/B0001/s3cr3tT0ken';
const OPENED = Date.UTC(2026, 0, 26, 0, 0, 31);
const HOUR = 3_600_000;

const failing: Alert = {
  keySetId: 'payments',
  incident: 'step-failure',
  status: 'firing',
  step: 'promote',
  kid: 'kid-123',
  summary: 'key set "payments": promote failed 3 time(s) in a row; retrying after a backoff',
  error: 'relation "signing_keys" does not exist <&>',
  failures: 3,
  workflowId: 'keyset/payments',
};
const webUi = { url: 'http://temporal-ui.example:8233', namespace: 'default' };
const opened = (alert: Alert = failing): AlertNotification =>
  notificationFor(
    alert,
    'opened',
    { key: alert.incident, openedAt: OPENED, notifiedAt: OPENED, notifications: 1 },
    OPENED,
    webUi,
  );

let receiver: AlertReceiver;
beforeEach(async () => {
  receiver = await AlertReceiver.start(SECRET_PATH);
});
afterEach(async () => {
  await receiver.close();
});

/** Every text of a Slack message, blocks and fields included, as one string. */
function slackText(message: SlackMessage): string {
  return JSON.stringify(message.blocks);
}

describe('Slack', () => {
  test('a firing message: what failed, key set, kid, step, failures, the error, what to check, the Web UI link', async () => {
    await slackChannel(new SecretUrl(receiver.url), 2_000).send(opened());
    const [request] = receiver.requests;
    expect(request).toMatchObject({
      method: 'POST',
      path: SECRET_PATH,
      headers: { 'content-type': 'application/json' },
    });
    const message = request.body as SlackMessage;
    expect(message.text).toBe(
      '🚨 keyturn, key set payments: key set "payments": promote failed 3 time(s) in a row; retrying after a backoff',
    );
    expect(message.blocks[0]).toEqual({
      type: 'header',
      text: { type: 'plain_text', text: '🚨 Alert: key set payments', emoji: true },
    });
    expect(message.blocks[1]).toEqual({
      type: 'section',
      text: {
        type: 'mrkdwn',
        text: '*key set "payments": promote failed 3 time(s) in a row; retrying after a backoff*',
      },
    });
    const fields = (message.blocks[2] as { fields: { text: string }[] }).fields.map((f) => f.text);
    expect(fields).toEqual([
      '*Key set*\n`payments`',
      '*Kid*\n`kid-123`',
      '*Step*\npromote',
      '*Failures in a row*\n3',
      `*Open since*\n<!date^${OPENED / 1000}^{date_short_pretty} {time}|2026-01-26T00:00:31.000Z>`,
    ]);
    const text = slackText(message);
    // Slack markup in an error is escaped, so it shows as written.
    expect(text).toContain('*Error*\\n```relation \\"signing_keys\\" does not exist &lt;&amp;&gt;```');
    expect(text).toContain('*What to check*\\ncheck PostgreSQL reachability from the worker (DATABASE_URL)');
    expect(text).toContain('`keyturn status payments`');
    expect(text).toContain(
      '<http://temporal-ui.example:8233/namespaces/default/workflows/keyset%2Fpayments|Open the workflow keyset/payments in the Temporal Web UI>',
    );
    expect(text).toContain('incident `step-failure` · message 1');
  });

  test('a reminder says it is one; a resolved message looks different and says what recovered', async () => {
    const channel = slackChannel(new SecretUrl(receiver.url), 2_000);
    const incident = { key: 'step-failure', openedAt: OPENED, notifiedAt: OPENED + 5 * HOUR, notifications: 2 };
    await channel.send(notificationFor(failing, 'reminder', incident, OPENED + 5 * HOUR, webUi));
    const recovered: Alert = {
      ...failing,
      status: 'resolved',
      step: 'load',
      summary: 'key set "payments" recovered: promote succeeded',
    };
    await channel.send(notificationFor(recovered, 'resolved', incident, OPENED + 6 * HOUR + 5 * 60_000, webUi));

    const [reminder, resolved] = receiver.delivered as SlackMessage[];
    expect(reminder.blocks[0]).toMatchObject({ text: { text: '🚨 Still firing: key set payments (reminder 1)' } });
    expect(resolved.text).toBe(
      '✅ Resolved keyturn, key set payments: key set "payments" recovered: promote succeeded',
    );
    expect(resolved.blocks[0]).toMatchObject({ text: { text: '✅ Resolved: key set payments' } });
    expect(resolved.blocks[1]).toMatchObject({
      text: { text: '*Recovered:* key set "payments" recovered: promote succeeded' },
    });
    const text = slackText(resolved);
    expect(text).toContain('*Was open for*\\n6h 5m');
    expect(text).not.toContain('What to check');
    expect(text).not.toContain('*Error*');
    expect(text).toContain('message 3');
  });

  test('without KEYTURN_UI_URL there is no link; an over-long error is cut to what Slack accepts', async () => {
    const long = { ...failing, error: 'x'.repeat(10_000), keySetId: 'k'.repeat(200) };
    const n = notificationFor(
      long,
      'opened',
      { key: long.incident, openedAt: OPENED, notifiedAt: OPENED, notifications: 1 },
      OPENED,
    );
    await slackChannel(new SecretUrl(receiver.url), 2_000).send(n);
    const message = receiver.delivered[0] as SlackMessage;
    expect(slackText(message)).not.toContain('Temporal Web UI');
    for (const block of message.blocks) {
      if (block.type === 'header') expect(block.text.text.length).toBeLessThanOrEqual(150);
      if (block.type === 'section' && block.text) expect(block.text.text.length).toBeLessThanOrEqual(3000);
    }
  });
});

test('the webhook receives the documented JSON object', async () => {
  await webhookChannel(new SecretUrl(receiver.url), 2_000).send(opened());
  expect(receiver.delivered).toEqual([
    {
      source: 'keyturn',
      version: 1,
      status: 'firing',
      kind: 'opened',
      incidentId: 'payments/step-failure/2026-01-26T00:00:31.000Z',
      incident: 'step-failure',
      keySetId: 'payments',
      kid: 'kid-123',
      step: 'promote',
      summary: 'key set "payments": promote failed 3 time(s) in a row; retrying after a backoff',
      error: 'relation "signing_keys" does not exist <&>',
      code: null,
      failures: 3,
      hint: expect.stringContaining('check PostgreSQL reachability'),
      openedAt: '2026-01-26T00:00:31.000Z',
      at: '2026-01-26T00:00:31.000Z',
      sequence: 1,
      workflowId: 'keyset/payments',
      workflowUrl: 'http://temporal-ui.example:8233/namespaces/default/workflows/keyset%2Fpayments',
    },
  ]);
});

describe('a failing receiver', () => {
  const sendOnce = async (timeoutMs = 2_000): Promise<AlertDeliveryError> => {
    try {
      await slackChannel(new SecretUrl(receiver.url), timeoutMs).send(opened());
    } catch (error) {
      return error as AlertDeliveryError;
    }
    throw new Error('expected the delivery to fail');
  };

  test('a 500 is retryable, and what the receiver said is kept without the URL even when it echoes it', async () => {
    receiver.mode = { status: 500, body: `internal error while handling POST ${SECRET_PATH} for ${receiver.url}` };
    const error = await sendOnce();
    expect(error).toBeInstanceOf(AlertDeliveryError);
    expect(error.retryable).toBe(true);
    expect(error.message).toBe('HTTP 500 (internal error while handling POST [secret URL] for [secret URL])');
  });

  test('a refusal (404, 400) is not retried; a 429 is, after its Retry-After', async () => {
    receiver.mode = { status: 404, body: 'no_service' };
    expect(await sendOnce()).toMatchObject({ retryable: false, message: 'HTTP 404 (no_service)' });
    receiver.mode = { status: 429, body: 'rate_limited', retryAfterSeconds: 30 };
    expect(await sendOnce()).toMatchObject({ retryable: true, retryAfterMs: 30_000 });
  });

  test('a receiver that hangs is given up on after the timeout; one that is down is retryable too', async () => {
    receiver.mode = 'hang';
    const started = Date.now();
    const error = await sendOnce(300);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(error).toMatchObject({ retryable: true, message: 'no answer within 300 ms' });

    const { url } = receiver;
    await receiver.close();
    const refused = await slackChannel(new SecretUrl(url), 1_000)
      .send(opened())
      .catch((e: AlertDeliveryError) => e);
    expect(refused).toMatchObject({ retryable: true, message: 'the connection failed (ECONNREFUSED)' });
    receiver = await AlertReceiver.start(SECRET_PATH);
  });
});
