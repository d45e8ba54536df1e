import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
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
  expect(alerts).toMatchObject({
    uiUrl: 'http://localhost:8233',
    reminderMs: 1_800_000,
    timeoutMs: 2_000,
    overdueToleranceMs: 7_200_000,
  });
});

test("the deployment's ceilings: a day of token lifetime and a year of rotation period unless set", () => {
  expect(loadConfig({}).ceilings).toEqual({ maxTokenTtlMs: 86_400_000, rotationPeriodMs: 365 * 86_400_000 });
  expect(
    loadConfig({ KEYTURN_MAX_TOKEN_TTL_CEILING: '15m', KEYTURN_MAX_ROTATION_PERIOD_CEILING: '90d' }).ceilings,
  ).toEqual({
    maxTokenTtlMs: 900_000,
    rotationPeriodMs: 90 * 86_400_000,
  });
  expect(attempt({ KEYTURN_MAX_TOKEN_TTL_CEILING: 'forever' }).field).toBe('KEYTURN_MAX_TOKEN_TTL_CEILING');
});

test('a webhook URL never shows: not in JSON, not in util.inspect, not in a string', () => {
  const config = loadConfig({ SLACK_WEBHOOK_URL: SLACK, ALERT_WEBHOOK_URL: 'https://example.com/hook/secret-path' });
  for (const text of [
    JSON.stringify(config),
    inspect(config, { depth: 10, showHidden: true }),
    String(config.alerts.slackWebhookUrl),
  ]) {
    expect(text).not.toContain('s3cr3tT0ken');
    expect(text).not.toContain('secret-path');
  }
});

const attempt = (env: NodeJS.ProcessEnv) => {
  try {
    loadConfig(env);
  } catch (error) {
    return error as KeyturnError;
  }
  throw new Error('expected ERR_CONFIG_INVALID');
};

test('bad values name the variable and never quote a URL back', () => {
  const badUrl = attempt({
    SLACK_WEBHOOK_URL: 'ftp://hooks.slack.com/services/s3cr3tT0ken',
    ALERT_WEBHOOK_URL: 'not a url s3cr3tT0ken',
  });
  expect(badUrl.code).toBe('ERR_CONFIG_INVALID');
  expect(badUrl.message).toMatch(/SLACK_WEBHOOK_URL must be an http\(s\) URL/);
  expect(badUrl.message).toMatch(/ALERT_WEBHOOK_URL must be an http\(s\) URL/);
  expect(badUrl.message).not.toContain('s3cr3tT0ken');

  expect(attempt({ KEYTURN_ALERT_REMINDER: '4 hours' }).message).toMatch(
    /KEYTURN_ALERT_REMINDER must be a duration .*e\.g\. 30d/,
  );
  expect(attempt({ KEYTURN_ALERT_REMINDER: '0s' }).field).toBe('KEYTURN_ALERT_REMINDER');
  expect(attempt({ KEYTURN_ALERT_TIMEOUT: '1m' }).message).toMatch(/KEYTURN_ALERT_TIMEOUT must be at most 30s/);
  expect(attempt({ KEYTURN_UI_URL: 'localhost:8233' }).field).toBe('KEYTURN_UI_URL');
});

describe('secrets from files (<NAME>_FILE)', () => {
  const KEK = randomBytes(32).toString('base64');
  const DATABASE_URL = 'postgres://keyturn_worker:pa55w0rd@db:5432/keyturn';
  let dir: string;
  /** Writes `content` to a file of its own and returns its path. */
  const secretFile = async (name: string, content: string) => {
    const file = path.join(dir, name);
    await writeFile(file, content, { mode: 0o600 });
    return file;
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-config-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('each secret may come from a file, as Docker and Kubernetes mount them, with its final newline dropped', async () => {
    const fromFiles = loadConfig({
      DATABASE_URL_FILE: await secretFile('database_url', `${DATABASE_URL}\n`),
      KEYTURN_KEK_FILE: await secretFile('kek', `${KEK}\n`),
      SLACK_WEBHOOK_URL_FILE: await secretFile('slack', `${SLACK}\n`),
      ALERT_WEBHOOK_URL_FILE: await secretFile('webhook', 'https://alerts.example/hook'),
    });
    const fromEnvironment = loadConfig({
      DATABASE_URL,
      KEYTURN_KEK: KEK,
      SLACK_WEBHOOK_URL: SLACK,
      ALERT_WEBHOOK_URL: 'https://alerts.example/hook',
    });
    expect(fromFiles).toEqual(fromEnvironment);
    expect(fromFiles).toMatchObject({ databaseUrl: DATABASE_URL, kek: KEK });
    expect(fromFiles.alerts.slackWebhookUrl?.reveal()).toBe(SLACK);
  });

  test('an empty file counts as unset, like an empty variable (Compose makes one from an empty value)', async () => {
    const config = loadConfig({ SLACK_WEBHOOK_URL_FILE: await secretFile('empty', '\n') });
    expect(config.alerts.slackWebhookUrl).toBeUndefined();
  });

  test('a variable and its file both set is refused, naming both', async () => {
    const error = attempt({ KEYTURN_KEK: KEK, KEYTURN_KEK_FILE: await secretFile('kek-too', KEK) });
    expect(error).toMatchObject({ code: 'ERR_CONFIG_INVALID', field: 'KEYTURN_KEK_FILE' });
    expect(error.message).toMatch(/KEYTURN_KEK_FILE and KEYTURN_KEK are both set: keep one/);
    expect(error.message).not.toContain(KEK);
  });

  test('a file that cannot be read, or holds a bad value, names the variable and the path, never the content', async () => {
    const missing = path.join(dir, 'no-such-file');
    expect(attempt({ DATABASE_URL_FILE: missing }).message).toBe(
      `invalid environment: DATABASE_URL_FILE names ${missing}, which cannot be read (ENOENT)`,
    );
    const file = await secretFile('bad-url', 'mysql://root:s3cr3tT0ken@db/keyturn');
    const bad = attempt({ DATABASE_URL_FILE: file });
    expect(bad).toMatchObject({ code: 'ERR_CONFIG_INVALID', field: 'DATABASE_URL_FILE' });
    expect(bad.message).toMatch(
      new RegExp(`DATABASE_URL_FILE names ${file}, whose content must be a postgres:// or postgresql:// URL`),
    );
    expect(bad.message).not.toContain('s3cr3tT0ken');
  });
});

describe('database roles', () => {
  test('keyturn_jwks and keyturn_worker unless KEYTURN_JWKS_ROLE and KEYTURN_WORKER_ROLE say otherwise', () => {
    expect(loadConfig({}).databaseRoles).toEqual({
      jwks: 'keyturn_jwks',
      worker: 'keyturn_worker',
      signer: 'keyturn_signer',
    });
    expect(
      loadConfig({ KEYTURN_JWKS_ROLE: 'jwks_reader', KEYTURN_WORKER_ROLE: 'rotator', KEYTURN_SIGNER_ROLE: 'signer' })
        .databaseRoles,
    ).toEqual({ jwks: 'jwks_reader', worker: 'rotator', signer: 'signer' });
  });

  test('a name that is no plain role name, or one role for both, is refused', () => {
    expect(attempt({ KEYTURN_JWKS_ROLE: 'Robert"; DROP TABLE signing_keys' })).toMatchObject({
      field: 'KEYTURN_JWKS_ROLE',
    });
    const same = attempt({ KEYTURN_JWKS_ROLE: 'keyturn', KEYTURN_WORKER_ROLE: 'keyturn' });
    expect(same).toMatchObject({ code: 'ERR_CONFIG_INVALID', field: 'KEYTURN_JWKS_ROLE' });
    expect(same.message).toMatch(/KEYTURN_JWKS_ROLE and KEYTURN_WORKER_ROLE are both keyturn/);
  });
});

test('KEYTURN_PUBLIC_URL: the base URL verifiers reach the JWKS server at, trailing slashes dropped; unset by default', () => {
  expect(loadConfig({}).publicUrl).toBeUndefined();
  expect(loadConfig({ KEYTURN_PUBLIC_URL: 'https://keys.example.com/auth/' }).publicUrl).toBe(
    'https://keys.example.com/auth',
  );
  for (const bad of ['keys.example.com', 'https://keys.example.com/?x=1', 'ftp://keys.example.com']) {
    expect(attempt({ KEYTURN_PUBLIC_URL: bad })).toMatchObject({
      code: 'ERR_CONFIG_INVALID',
      field: 'KEYTURN_PUBLIC_URL',
    });
  }
  expect(attempt({ KEYTURN_PUBLIC_URL: 'keys.example.com' }).message).toBe(
    'invalid environment: KEYTURN_PUBLIC_URL must be the http(s) base URL verifiers reach the JWKS server at, without query or fragment, e.g. https://keys.example.com',
  );
});

test('KEYTURN_JWKS_URL: every JWKS server the propagation gate checks, separated by commas; unset by default', () => {
  expect(loadConfig({}).jwksUrls).toBeUndefined();
  expect(loadConfig({ KEYTURN_JWKS_URL: 'http://jwks:8080/' }).jwksUrls).toEqual(['http://jwks:8080']);
  expect(loadConfig({ KEYTURN_JWKS_URL: 'http://jwks-1:8080, http://jwks-2:8080' }).jwksUrls).toEqual([
    'http://jwks-1:8080',
    'http://jwks-2:8080',
  ]);
  for (const bad of ['jwks:8080', 'http://jwks-1:8080,', 'http://jwks-1:8080,ftp://jwks-2']) {
    expect(attempt({ KEYTURN_JWKS_URL: bad })).toMatchObject({
      code: 'ERR_CONFIG_INVALID',
      field: expect.stringMatching(/^KEYTURN_JWKS_URL/),
    });
  }
});

test('KEYTURN_METRICS_PER_KEY_SET: off unless true; anything but true or false is refused', () => {
  expect(loadConfig({}).metricsPerKeySet).toBe(false);
  expect(loadConfig({ KEYTURN_METRICS_PER_KEY_SET: 'true' }).metricsPerKeySet).toBe(true);
  expect(loadConfig({ KEYTURN_METRICS_PER_KEY_SET: 'false' }).metricsPerKeySet).toBe(false);
  expect(attempt({ KEYTURN_METRICS_PER_KEY_SET: 'yes' }).message).toBe(
    "invalid environment: KEYTURN_METRICS_PER_KEY_SET must be true or false (every key set's series on /metrics, default false)",
  );
});

test("KEYTURN_DEFAULT_KEYSET and KEYTURN_ISSUER: the JWKS server's default key set and issuer, read here only", () => {
  expect(loadConfig({})).toMatchObject({ defaultKeySetId: 'default', issuer: undefined });
  expect(loadConfig({ KEYTURN_DEFAULT_KEYSET: 'payments', KEYTURN_ISSUER: 'https://login.example.com' })).toMatchObject(
    {
      defaultKeySetId: 'payments',
      issuer: 'https://login.example.com',
    },
  );
  const bad = attempt({ KEYTURN_DEFAULT_KEYSET: 'no/slashes' });
  expect(bad).toMatchObject({ code: 'ERR_CONFIG_INVALID', field: 'KEYTURN_DEFAULT_KEYSET' });
  expect(bad.message).toMatch(/KEYTURN_DEFAULT_KEYSET must be a key set id: 1 to 64 ASCII letters/);
});

describe('the signing service', () => {
  test('loopback port 8081, no TLS and 100 requests a second (burst 200) per client unless set', () => {
    expect(loadConfig({}).signer).toEqual({
      port: 8081,
      host: '127.0.0.1',
      tls: undefined,
      rate: { perSecond: 100, burst: 200 },
    });
    expect(
      loadConfig({
        KEYTURN_SIGNER_PORT: '9443',
        KEYTURN_SIGNER_HOST: '0.0.0.0',
        KEYTURN_SIGNER_TLS_CERT_FILE: '/tls/cert.pem',
        KEYTURN_SIGNER_TLS_KEY_FILE: '/tls/key.pem',
        KEYTURN_SIGNER_TLS_CLIENT_CA_FILE: '/tls/ca.pem',
        KEYTURN_SIGNER_RATE: '600/m',
        KEYTURN_SIGNER_BURST: '5',
      }).signer,
    ).toEqual({
      port: 9443,
      host: '0.0.0.0',
      tls: { certFile: '/tls/cert.pem', keyFile: '/tls/key.pem', clientCaFile: '/tls/ca.pem' },
      rate: { perSecond: 10, burst: 5 },
    });
  });

  test('a certificate without its key, a client CA without TLS, a bad rate or a shared role are refused', () => {
    expect(attempt({ KEYTURN_SIGNER_TLS_CERT_FILE: '/c.pem' })).toMatchObject({ field: 'KEYTURN_SIGNER_TLS_KEY_FILE' });
    expect(attempt({ KEYTURN_SIGNER_TLS_CLIENT_CA_FILE: '/ca.pem' })).toMatchObject({
      field: 'KEYTURN_SIGNER_TLS_CLIENT_CA_FILE',
    });
    expect(attempt({ KEYTURN_SIGNER_RATE: '0/s' }).message).toMatch(/KEYTURN_SIGNER_RATE must be a rate/);
    expect(attempt({ KEYTURN_SIGNER_ROLE: 'keyturn_worker' })).toMatchObject({ field: 'KEYTURN_SIGNER_ROLE' });
  });
});
