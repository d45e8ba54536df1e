import { mkdtempSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { temporalConnectionOptions, temporalTargetFrom } from '../../src/client/connect';
import { loadConfig } from '../../src/config';
import { KeyturnError } from '../../src/domain/errors';

// Temporal's environment configuration as keyturn reads it: TOML profiles, TEMPORAL_* variables over
// them, and every way they can be wrong, each an ERR_CONFIG_INVALID naming what to fix. No server.

const API_KEY = 'tmprl-api-key-that-must-not-show';
const dir = mkdtempSync(path.join(os.tmpdir(), 'keyturn-profile-'));
const file = path.join(dir, 'temporal.toml');

beforeAll(async () => {
  await writeFile(path.join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  await writeFile(path.join(dir, 'not-pem.key'), `${API_KEY}\n`);
  await writeFile(
    file,
    `[profile.default]
address = "localhost:7233"

[profile.prod]
address = "prod.keyturn.test:7233"
namespace = "keys"
api_key = "${API_KEY}"
[profile.prod.tls]
server_ca_cert_path = "${path.join(dir, 'ca.pem')}"
`,
  );
});

afterAll(() => rm(dir, { recursive: true, force: true }));

function configError(env: NodeJS.ProcessEnv): KeyturnError {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof KeyturnError) return error;
    throw error;
  }
  throw new Error('loadConfig accepted the environment');
}

test('the profile TEMPORAL_PROFILE names gives address, namespace, TLS and API key; each variable overrides its field', () => {
  const config = loadConfig({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'prod', TEMPORAL_NAMESPACE: 'other' });
  expect(config).toMatchObject({
    temporalAddress: 'prod.keyturn.test:7233',
    temporalNamespace: 'other',
    explicit: { temporalAddress: true, temporalNamespace: true },
  });
  expect(temporalTargetFrom(config).origin).toBe('from the Temporal profile "prod"');
  expect(config.temporalProfile.security).toBe('TLS with an API key');
  expect(temporalConnectionOptions(temporalTargetFrom(config))).toMatchObject({
    address: 'prod.keyturn.test:7233',
    apiKey: API_KEY,
    tls: { serverRootCACertificate: expect.any(Uint8Array) },
  });

  const fromVariable = loadConfig({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_ADDRESS: 'elsewhere:7233' });
  expect(temporalTargetFrom(fromVariable)).toMatchObject({
    address: 'elsewhere:7233',
    origin: 'from TEMPORAL_ADDRESS',
  });
  expect(fromVariable.temporalProfile.security).toBe('plaintext');
});

test('without an address anywhere, keyturn dev starts its own server: the address is not explicit', () => {
  const config = loadConfig({});
  expect(config).toMatchObject({
    temporalAddress: 'localhost:7233',
    temporalNamespace: 'default',
    explicit: { temporalAddress: false, temporalNamespace: false },
  });
  expect(temporalTargetFrom(config).origin).toBe(
    'the default, as neither TEMPORAL_ADDRESS nor a Temporal profile names a server',
  );
});

test('a blank variable counts as unset: TEMPORAL_TLS= does not turn the profile’s TLS off, TEMPORAL_API_KEY= sends no key', () => {
  const config = loadConfig({
    TEMPORAL_CONFIG_FILE: file,
    TEMPORAL_PROFILE: 'prod',
    TEMPORAL_TLS: '',
    TEMPORAL_API_KEY: ' ',
  });
  expect(config.temporalProfile.security).toBe('TLS with an API key');
  expect(temporalConnectionOptions(temporalTargetFrom(config)).apiKey).toBe(API_KEY);
  expect(loadConfig({ TEMPORAL_API_KEY: '' }).temporalProfile.security).toBe('plaintext');
});

test('the configuration prints without the API key', () => {
  const config = loadConfig({ TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'prod' });
  expect(JSON.stringify(config)).toContain('"security":"TLS with an API key"');
  expect(JSON.stringify(config)).not.toContain(API_KEY);
  expect(inspect(config, { depth: 10 })).not.toContain(API_KEY);
});

test.each([
  [
    'an unknown profile',
    { TEMPORAL_CONFIG_FILE: file, TEMPORAL_PROFILE: 'staging' },
    'TEMPORAL_PROFILE',
    `TEMPORAL_PROFILE names the Temporal profile "staging", which ${file} does not have`,
  ],
  [
    'a config file that does not exist',
    { TEMPORAL_CONFIG_FILE: path.join(dir, 'nope.toml') },
    'TEMPORAL_CONFIG_FILE',
    `TEMPORAL_CONFIG_FILE names ${path.join(dir, 'nope.toml')}, which does not exist`,
  ],
  [
    'a client certificate without its key',
    { TEMPORAL_TLS_CLIENT_CERT_PATH: path.join(dir, 'ca.pem') },
    'TEMPORAL_TLS_CLIENT_KEY_PATH',
    /^mTLS needs a client certificate and its key: set TEMPORAL_TLS_CLIENT_KEY_PATH/,
  ],
  [
    'a path and data for the same file',
    { TEMPORAL_TLS_SERVER_CA_CERT_PATH: 'a.pem', TEMPORAL_TLS_SERVER_CA_CERT_DATA: 'x' },
    'TEMPORAL_PROFILE',
    /Cannot specify both server_ca_cert_path and server_ca_cert_data/,
  ],
  [
    'an address that is not host:port',
    { TEMPORAL_ADDRESS: 'https://prod.keyturn.test' },
    'TEMPORAL_ADDRESS',
    /^invalid environment: TEMPORAL_ADDRESS must be host:port/,
  ],
])('%s is refused, naming the setting', (_, env, field, message) => {
  const error = configError(env);
  expect(error).toMatchObject({ code: 'ERR_CONFIG_INVALID', field });
  expect(error.message).toMatch(message);
});

test('a TOML file that does not parse is named with the position only: the line may hold an API key', async () => {
  const broken = path.join(dir, 'broken.toml');
  await writeFile(broken, `[profile.default]\napi_key = "${API_KEY}\n`);
  const error = configError({ TEMPORAL_CONFIG_FILE: broken });
  expect(error).toMatchObject({ code: 'ERR_CONFIG_INVALID', field: 'TEMPORAL_CONFIG_FILE' });
  expect(error.message).toMatch(new RegExp(`^${broken} is not valid TOML: line 2, column \\d+$`));
  expect(inspect(error)).not.toContain(API_KEY);
});

test('a certificate file that is missing or not PEM is named with its variable when connecting, its content never shown', () => {
  const target = (env: NodeJS.ProcessEnv) => temporalTargetFrom(loadConfig(env));
  // Read when connecting, not when loading: a process that never connects never opens them.
  const missing = target({ TEMPORAL_TLS_SERVER_CA_CERT_PATH: path.join(dir, 'missing.pem') });
  expect(() => temporalConnectionOptions(missing)).toThrow(
    `cannot read the server CA certificate ${path.join(dir, 'missing.pem')} (TEMPORAL_TLS_SERVER_CA_CERT_PATH or the profile's tls.server_ca_cert_path): no such file`,
  );
  const notPem = target({
    TEMPORAL_TLS_CLIENT_CERT_PATH: path.join(dir, 'ca.pem'),
    TEMPORAL_TLS_CLIENT_KEY_PATH: path.join(dir, 'not-pem.key'),
  });
  expect(() => temporalConnectionOptions(notPem)).toThrow(
    `the client key in ${path.join(dir, 'not-pem.key')} (TEMPORAL_TLS_CLIENT_KEY_PATH or the profile's tls.client_key_path) is not PEM (a "-----BEGIN ..." block)`,
  );
});
