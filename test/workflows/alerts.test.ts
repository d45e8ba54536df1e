import { Client } from '@temporalio/client';
import { Registry } from 'prom-client';
import { slackChannel, webhookChannel } from '../../src/alerts/channels';
import type { AlertNotification } from '../../src/alerts/notification';
import type { SlackMessage } from '../../src/alerts/slack';
import { SecretUrl } from '../../src/config';
import { generateSigningKey } from '../../src/crypto/generate';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { keyturnMetrics } from '../../src/observability/metrics';
import { keySetWorkflow, supervisorWorkflow } from '../../src/workflows';
import { getStateQuery, pauseSignal, resumeSignal } from '../../src/workflows/messages';
import { AlertReceiver } from '../helpers/alert-receiver';
import { historyText, recordHistory } from '../helpers/history';
import { capturingLogger } from '../helpers/logs';
import { waitFor } from '../helpers/wait';
import { createKeySetWorker, deliveriesEnded, randomKekRing, settled, uniqueNames } from '../helpers/key-set-worker';
import { takeKeyTableOffline } from '../helpers/outage';
import { useTimeSkippingSuite } from '../helpers/time-skipping-suite';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const SECRET = 'xoxSECRETw3bh00k';
const UI = 'http://temporal-ui.test:8233';

type Payload = Record<string, unknown> & { kind: string; incidentId: string; sequence: number };

/** Slack and a webhook on loopback, the channels a worker built from them, and what arrived at each. */
async function receivers() {
  const [slack, webhook] = await Promise.all([
    AlertReceiver.start(`/services/T9/B9/${SECRET}`),
    AlertReceiver.start('/keyturn'),
  ]);
  return {
    slack,
    webhook,
    channels: [slackChannel(new SecretUrl(slack.url), 2_000), webhookChannel(new SecretUrl(webhook.url), 2_000)],
    /** Waits until both have taken `n` messages (delivered in the background), and returns them. */
    async received(n: number): Promise<{ slack: SlackMessage[]; webhook: Payload[] }> {
      await waitFor(
        () => (slack.delivered.length >= n && webhook.delivered.length >= n ? true : undefined),
        15_000,
        `${n} messages each`,
      );
      return { slack: slack.delivered as SlackMessage[], webhook: webhook.delivered as Payload[] };
    },
    close: () => Promise.all([slack.close(), webhook.close()]),
  };
}

const blocksText = (message: SlackMessage) => JSON.stringify(message.blocks);

async function alertCounts(registry: Registry): Promise<Record<string, number>> {
  const { values } = await keyturnMetrics(registry).alerts.get();
  return Object.fromEntries(values.map((v) => [`${v.labels.channel}/${v.labels.outcome}`, v.value]));
}

describe('alerts', () => {
  const suite = useTimeSkippingSuite();

  test('the supervisor: a stored public key that does not hash to its kid is an incident, resolved once the row is right again', async () => {
    const { env, db, bundle } = suite;
    const { keySetId, taskQueue, workflowId } = uniqueNames('alert-kid');
    const notifications: AlertNotification[] = [];
    const worker = await createKeySetWorker({
      env,
      db,
      bundle,
      kekRing: randomKekRing(),
      taskQueue,
      alerts: notifications,
      registry: new Registry(),
    });
    const client = new Client({ connection: env.connection });
    let rounds = 0;
    const supervise = () =>
      client.workflow.execute(supervisorWorkflow, { taskQueue, workflowId: `supervisor-${keySetId}-${++rounds}` });
    const setPublicJwk = (kid: string, jwk: object) =>
      db.pool.query('UPDATE signing_keys SET public_jwk = $3 WHERE key_set_id = $1 AND kid = $2', [
        keySetId,
        kid,
        JSON.stringify(jwk),
      ]);
    try {
      await worker.runUntil(async () => {
        const handle = await env.client.workflow.start(keySetWorkflow, {
          workflowId,
          taskQueue,
          args: [{ keySetId, policy: { ...DEFAULT_POLICY } }],
        });
        const { kid } = (await settled(env, handle)).keys[0];
        const { rows } = await db.pool.query<{ public_jwk: object }>(
          'SELECT public_jwk FROM signing_keys WHERE key_set_id = $1 AND kid = $2',
          [keySetId, kid],
        );
        // Another key's public members under the active kid: what an edit of the row that swaps keys leaves.
        const other = await generateSigningKey('ES256');
        await setPublicJwk(kid, { ...other.publicJwk, kid });

        expect((await supervise()).violations).toEqual([
          {
            code: 'KID_MISMATCH',
            keySetId,
            kid,
            message: `key ${kid} (active): its stored public key's RFC 7638 thumbprint is ${other.kid}, not its kid`,
          },
        ]);
        await waitFor(() => (notifications.length > 0 ? true : undefined), 10_000, 'the alert');
        expect(notifications[0]).toMatchObject({
          kind: 'opened',
          keySetId,
          kid,
          code: 'KID_MISMATCH',
          incident: `invariant:KID_MISMATCH:${kid}`,
          summary: `key set "${keySetId}": a key whose kid is not the thumbprint of its public key`,
          hint: expect.stringContaining(`revoke it (\`keyturn revoke ${keySetId} <kid> --reason ...\`)`),
        });

        await setPublicJwk(kid, rows[0].public_jwk);
        expect((await supervise()).violations).toEqual([]);
        await waitFor(() => (notifications.length > 1 ? true : undefined), 10_000, 'the resolved message');
        expect(notifications.map((n) => [n.kind, n.code])).toEqual([
          ['opened', 'KID_MISMATCH'],
          ['resolved', 'KID_MISMATCH'],
        ]);
        await deliveriesEnded(env, notifications);
        await handle.terminate('test finished');
      });
    } finally {
      // Later tests' supervisor rounds would start it again.
      await db.pool.query('UPDATE key_sets SET decommissioned_at = now() WHERE id = $1', [keySetId]);
    }
  });

  test('the supervisor: an active key too old is one incident over many rounds, reminded of after 4h, resolved by the round after the rotation', async () => {
    const { env, db, bundle } = suite;
    const { keySetId, taskQueue, workflowId } = uniqueNames('alert-sup');
    const channels = await receivers();
    const registry = new Registry();
    const worker = await createKeySetWorker({
      env,
      db,
      bundle,
      kekRing: randomKekRing(),
      taskQueue,
      channels: channels.channels,
      uiUrl: UI,
      registry,
    });
    let rounds = 0;
    // A plain client: the test environment's own lets time run free while it waits for a result, and
    // the paused key set has no timer to stop it before its 10-year run timeout.
    const client = new Client({ connection: env.connection });
    const supervise = () =>
      client.workflow.execute(supervisorWorkflow, { taskQueue, workflowId: `supervisor-${keySetId}-${++rounds}` });
    try {
      await worker.runUntil(async () => {
        const handle = await env.client.workflow.start(keySetWorkflow, {
          workflowId,
          taskQueue,
          args: [{ keySetId, policy: { ...DEFAULT_POLICY } }],
        });
        const { kid } = (await settled(env, handle)).keys[0];
        // Paused, the key set does not rotate: its key goes on signing past its 30 days.
        await handle.signal(pauseSignal, { reason: 'change freeze' });
        await env.sleep(30 * DAY + HOUR + 10 * MINUTE);

        const report = await supervise();
        expect(report.violations).toEqual([expect.objectContaining({ code: 'ACTIVE_KEY_TOO_OLD', keySetId, kid })]);
        const [opening] = (await channels.received(1)).webhook;
        expect(opening).toMatchObject({
          kind: 'opened',
          status: 'firing',
          incident: `invariant:ACTIVE_KEY_TOO_OLD:${kid}`,
          keySetId,
          kid,
          step: 'supervisor',
          code: 'ACTIVE_KEY_TOO_OLD',
          summary: `key set "${keySetId}": the active key is older than its rotation period allows`,
          error: expect.stringContaining('(the key set is paused: change freeze)'),
          hint: expect.stringContaining(`\`keyturn resume ${keySetId}\``),
          workflowId,
          workflowUrl: `${UI}/namespaces/default/workflows/keyset%2F${keySetId}`,
        });

        // A round every 5 minutes for 4 hours sees it again each time: not announced again...
        for (let i = 0; i < 47; i++) {
          await env.sleep(5 * MINUTE);
          await supervise();
        }
        expect(channels.webhook.requests).toHaveLength(1);
        // ...until the reminder is due.
        await env.sleep(5 * MINUTE);
        await supervise();
        expect((await channels.received(2)).webhook[1]).toMatchObject({
          kind: 'reminder',
          sequence: 2,
          incidentId: opening.incidentId,
        });

        await handle.signal(resumeSignal);
        await waitFor(
          async () => ((await handle.query(getStateQuery)).paused === null ? true : undefined),
          10_000,
          'the resume',
        );
        // Overdue: the next key is generated at once and promoted once verifiers' caches (15m) hold it.
        await env.sleep(16 * MINUTE);
        const rotated = await settled(env, handle);
        expect(rotated.keys.find((k) => k.state === 'active')!.kid).not.toBe(kid);
        expect((await supervise()).violations).toEqual([]);
        const { slack, webhook } = await channels.received(3);
        expect(webhook[2]).toMatchObject({
          kind: 'resolved',
          status: 'resolved',
          sequence: 3,
          incidentId: opening.incidentId,
        });
        expect(slack.map((m) => m.blocks[0])).toEqual([
          expect.objectContaining({ text: expect.objectContaining({ text: `🚨 Alert: key set ${keySetId}` }) }),
          expect.objectContaining({
            text: expect.objectContaining({ text: `🚨 Still firing: key set ${keySetId} (reminder 1)` }),
          }),
          expect.objectContaining({ text: expect.objectContaining({ text: `✅ Resolved: key set ${keySetId}` }) }),
        ]);
        expect(blocksText(slack[2])).toContain('no longer found by the supervisor');
        // A message is counted once its delivery activity has finished, a moment after the receiver has it.
        await deliveriesEnded(env, webhook);
        expect(await alertCounts(registry)).toEqual({
          'log/sent': 3,
          'log/suppressed': 47,
          'slack/sent': 3,
          'slack/suppressed': 47,
          'webhook/sent': 3,
          'webhook/suppressed': 47,
        });
        await handle.terminate('test finished');
      });
    } finally {
      await channels.close();
      // Later tests' supervisor rounds would start it again.
      await db.pool.query('UPDATE key_sets SET decommissioned_at = now() WHERE id = $1', [keySetId]);
    }
  });

  test('a step failing for hours: one message, one reminder after 4h, one resolved message, across a worker restart and continue-as-new', async () => {
    const { env, db, bundle } = suite;
    const { keySetId, taskQueue, workflowId } = uniqueNames('alert-step');
    const channels = await receivers();
    const registry = new Registry();
    const log = capturingLogger();
    const kekRing = randomKekRing();
    // No workflow cache: every task replays the history, as after a restart (and the test server, which
    // cannot hand a stopped worker's sticky tasks to the next one, is spared them).
    const newWorker = () =>
      createKeySetWorker({
        env,
        db,
        bundle,
        kekRing,
        taskQueue,
        channels: channels.channels,
        uiUrl: UI,
        registry,
        logger: log.logger,
        maxCachedWorkflows: 0,
      });
    let restore: () => Promise<void> = async () => undefined;
    try {
      const { firstRunId, nextKid } = await (
        await newWorker()
      ).runUntil(async () => {
        // A short history: the workflow continues as new several times during the outage.
        const handle = await env.client.workflow.start(keySetWorkflow, {
          workflowId,
          taskQueue,
          args: [{ keySetId, policy: { ...DEFAULT_POLICY }, maxHistoryEvents: 60 }],
        });
        await settled(env, handle);
        const firstRunId = (await env.client.workflow.getHandle(workflowId).describe()).runId;
        await env.sleep(26 * DAY);
        const nextKid = (await settled(env, handle)).keys.find((k) => k.state === 'next')!.kid;

        // PostgreSQL fails just before the promotion on day 30.
        restore = await takeKeyTableOffline(db.pool);
        await env.sleep(4 * DAY + 10 * MINUTE);
        const { slack, webhook } = await channels.received(1);
        expect(webhook[0]).toMatchObject({
          kind: 'opened',
          step: 'promote',
          kid: nextKid,
          failures: 1,
          incident: 'step-failure',
        });
        const fields = JSON.stringify((slack[0].blocks[2] as { fields: unknown[] }).fields);
        for (const shown of [
          `*Key set*\\n\`${keySetId}\``,
          `*Kid*\\n\`${nextKid}\``,
          '*Step*\\npromote',
          '*Failures in a row*\\n1',
        ]) {
          expect(fields).toContain(shown);
        }
        const text = blocksText(slack[0]);
        expect(text).toContain('signing_keys');
        expect(text).toContain(
          `check PostgreSQL reachability from the worker (DATABASE_URL) and the worker's log; \`keyturn status ${keySetId}\``,
        );
        expect(text).toContain(
          `<${UI}/namespaces/default/workflows/keyset%2F${keySetId}|Open the workflow keyset/${keySetId} in the Temporal Web UI>`,
        );
        return { firstRunId, nextKid };
      });

      // A new worker process: the workflow's incident is in its state, not in the old worker's memory.
      await (
        await newWorker()
      ).runUntil(async () => {
        await env.sleep(3 * HOUR);
        const failing = await env.client.workflow.getHandle(workflowId).query(getStateQuery);
        expect(failing.lastError!.failures).toBeGreaterThanOrEqual(5);
        expect((await env.client.workflow.getHandle(workflowId).describe()).runId).not.toBe(firstRunId);
        expect(channels.webhook.requests).toHaveLength(1);

        await env.sleep(2 * HOUR);
        const { webhook } = await channels.received(2);
        expect(webhook[1]).toMatchObject({
          kind: 'reminder',
          sequence: 2,
          incidentId: webhook[0].incidentId,
          status: 'firing',
        });

        await restore();
        restore = async () => undefined;
        await env.sleep(2 * HOUR); // past the longest backoff
        const recovered = await settled(env, env.client.workflow.getHandle(workflowId));
        expect(recovered.keys.find((k) => k.state === 'active')!.kid).toBe(nextKid);
        const { slack, webhook: all } = await channels.received(3);
        expect(all.map((p) => p.kind)).toEqual(['opened', 'reminder', 'resolved']);
        expect(all[2]).toMatchObject({
          status: 'resolved',
          incidentId: all[0].incidentId,
          summary: `key set "${keySetId}" recovered: promote succeeded`,
        });
        expect(slack[2].blocks[0]).toMatchObject({ text: { text: `✅ Resolved: key set ${keySetId}` } });

        // Every failure after the first and before the reminder and the resolution was suppressed on every
        // channel. A message is counted once its delivery activity has finished, a moment after the receiver has it.
        const ended = await deliveriesEnded(env, all);
        const failures = failing.lastError!.failures;
        const counts = await alertCounts(registry);
        expect(counts).toMatchObject({ 'log/sent': 3, 'slack/sent': 3, 'webhook/sent': 3 });
        expect(counts['slack/suppressed']).toBeGreaterThanOrEqual(failures - 1);
        expect(counts['slack/suppressed']).toBe(counts['webhook/suppressed']);

        // The Slack URL is a secret: not in the logs, not in any history (the key set's runs, the deliveries).
        const client = new Client({ connection: env.connection });
        expect(ended).toEqual([1, 2, 3].map(() => ({ slack: 'sent', webhook: 'sent' })));
        const deliveries = all.map((p) => client.workflow.getHandle(`alert/${p.incidentId}/${p.sequence}`));
        const histories = await Promise.all([
          historyText(client.workflow.getHandle(workflowId)),
          ...deliveries.map(historyText),
        ]);
        expect(log.text()).toContain('alert firing');
        for (const text of [log.text(), ...histories]) expect(text).not.toContain(SECRET);
        await recordHistory(deliveries[0], 'alert-delivery-to-slack-and-a-webhook');
        await recordHistory(client.workflow.getHandle(workflowId), 'step-failing-for-hours-alerted-reminded-resolved');
        await env.client.workflow.getHandle(workflowId).terminate('test finished');
      });
    } finally {
      await restore();
      await channels.close();
    }
  });

  test('a step failing behind a working read of the keys is still one incident, and its backoff grows', async () => {
    const { env, db, bundle } = suite;
    const { keySetId, taskQueue, workflowId } = uniqueNames('alert-partial');
    const notifications: AlertNotification[] = [];
    const registry = new Registry();
    const worker = await createKeySetWorker({
      env,
      db,
      bundle,
      kekRing: randomKekRing(),
      taskQueue,
      alerts: notifications,
      registry,
    });
    // PostgreSQL refuses promotions only: the keys read fine, as with a missing KEK or a broken constraint.
    const refuse = async () => {
      await db.pool.query(`CREATE FUNCTION refuse_promotion() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'promotion refused by the test'; END $$`);
      await db.pool.query(`CREATE TRIGGER refuse_promotion BEFORE UPDATE ON signing_keys FOR EACH ROW
        WHEN (NEW.state = 'active' AND NEW.key_set_id = '${keySetId}') EXECUTE FUNCTION refuse_promotion()`);
    };
    const allow = () =>
      db.pool.query(
        'DROP TRIGGER IF EXISTS refuse_promotion ON signing_keys; DROP FUNCTION IF EXISTS refuse_promotion()',
      );
    try {
      await worker.runUntil(async () => {
        const handle = await env.client.workflow.start(keySetWorkflow, {
          workflowId,
          taskQueue,
          args: [{ keySetId, policy: { ...DEFAULT_POLICY } }],
        });
        await settled(env, handle);
        await env.sleep(26 * DAY);
        await settled(env, handle);
        await refuse();

        await env.sleep(4 * DAY + 2 * HOUR);
        const failing = await handle.query(getStateQuery);
        // Failures at 0, 1, 3, 7, 15, 31, 63 minutes... each read of the keys in between succeeded.
        expect(failing.lastError).toMatchObject({
          step: 'promote',
          message: expect.stringContaining('promotion refused by the test'),
        });
        expect(failing.lastError!.failures).toBeGreaterThanOrEqual(7);
        expect(notifications.map((n) => n.kind)).toEqual(['opened']);
        await deliveriesEnded(env, notifications);
        expect(await alertCounts(registry)).toEqual({
          'log/sent': 1,
          'log/suppressed': failing.lastError!.failures - 1,
          'test/sent': 1,
          'test/suppressed': failing.lastError!.failures - 1,
        });

        await allow();
        await env.sleep(2 * HOUR);
        const recovered = await settled(env, handle);
        expect(recovered.lastError).toBeNull();
        await waitFor(() => (notifications.length > 1 ? true : undefined), 10_000, 'the resolved message');
        expect(notifications.map((n) => [n.kind, n.summary])).toEqual([
          ['opened', `key set "${keySetId}": promote failed 1 time(s) in a row; retrying after a backoff`],
          ['resolved', `key set "${keySetId}" recovered: promote succeeded`],
        ]);
        await deliveriesEnded(env, notifications);
        await handle.terminate('test finished');
      });
    } finally {
      await allow();
    }
  });
});
