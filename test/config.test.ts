import { inspect } from 'node:util';
import { loadConfig } from '../src/config';
import { KeyturnError } from '../src/domain/errors';

const SLACK = 'https://hooks.slack.com/services/T000/B000/s3cr3tT0ken';

test('alerting is off but logged by default: no channel, reminders every 4h, 10s per delivery, 1h key-age tolerance', () => {
  expect(loadConfig({}).alerts).toEqual({
    slackWebhookUrl: undefined,
    webhookUrl: undefined,
    uiUrl: undefined,
    reminderMs: 4 * 3_600_000,
    timeoutMs: 10_000,
    overdueToleranceMs: 3_600_000,
  });
});

test('the alert variables are read, durations written like a policy', () => {
  const { alerts } = loadConfig({
    SLACK_WEBHOOK_URL: SLACK,
    ALERT_WEBHOOK_URL: 'http://alerts.internal:8080/keyturn?token=abc',
    KEYTURN_UI_URL: 'http://localhost:8233/',
    KEYTURN_ALERT_REMINDER: '30m',
    KEYTURN_ALERT_TIMEOUT: '2s',
    KEYTURN_OVERDUE_TOLERANCE: '2h',
  });
  expect(alerts.slackWebhookUrl?.reveal()).toBe(SLACK);
  expect(alerts.webhookUrl?.reveal()).toBe('http://alerts.internal:8080/keyturn?token=abc');
  expect(alerts).toMatchObject({ uiUrl: 'http://localhost:8233', reminderMs: 1_800_000, timeoutMs: 2_000, overdueToleranceMs: 7_200_000 });
});

test('a webhook URL never shows: not in JSON, not in util.inspect, not in a string', () => {
  const config = loadConfig({ SLACK_WEBHOOK_URL: SLACK, ALERT_WEBHOOK_URL: 'https://example.com/hook/secret-path' });
  for (const text of [JSON.stringify(config), inspect(config, { depth: 10, showHidden: true }), String(config.alerts.slackWebhookUrl)]) {
    expect(text).not.toContain('s3cr3tT0ken');
    expect(text).not.toContain('secret-path');
  }
});

test('bad values name the variable and never quote a URL back', () => {
  const attempt = (env: NodeJS.ProcessEnv) => {
    try {
      loadConfig(env);
    } catch (error) {
      return error as KeyturnError;
    }
    throw new Error('expected ERR_CONFIG_INVALID');
  };
  const badUrl = attempt({ SLACK_WEBHOOK_URL: 'ftp://hooks.slack.com/services/s3cr3tT0ken', ALERT_WEBHOOK_URL: 'not a url s3cr3tT0ken' });
  expect(badUrl.code).toBe('ERR_CONFIG_INVALID');
  expect(badUrl.message).toMatch(/SLACK_WEBHOOK_URL must be an http\(s\) URL/);
  expect(badUrl.message).toMatch(/ALERT_WEBHOOK_URL must be an http\(s\) URL/);
  expect(badUrl.message).not.toContain('s3cr3tT0ken');

  expect(attempt({ KEYTURN_ALERT_REMINDER: '4 hours' }).message).toMatch(/KEYTURN_ALERT_REMINDER must be a duration .*e\.g\. 30d/);
  expect(attempt({ KEYTURN_ALERT_REMINDER: '0s' }).field).toBe('KEYTURN_ALERT_REMINDER');
  expect(attempt({ KEYTURN_ALERT_TIMEOUT: '1m' }).message).toMatch(/KEYTURN_ALERT_TIMEOUT must be at most 30s/);
  expect(attempt({ KEYTURN_UI_URL: 'localhost:8233' }).field).toBe('KEYTURN_UI_URL');
});
