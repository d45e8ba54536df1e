import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Client } from '@temporalio/client';
import { connectClient, temporalTargetFrom } from '../../src/client/connect';
import { loadConfig } from '../../src/config';
import { startTemporalDevServer } from '../../src/dev/temporal-dev-server';
import { resolveTemporalCli } from '../../src/dev/temporal-executables';
import { createLogger } from '../../src/logger';
import { Teardown } from '../../src/runtime/teardown';
import { connectWorker } from '../../src/worker';
import { keySetWorkflowId, SUPERVISOR_SCHEDULE_ID } from '../../src/workflows/messages';
import { makeTestCertificates, type TestCertificates } from '../helpers/certificates';
import { runKeyturn, type CliRun } from '../helpers/cli';
import { startTestDevStack, type TestDevStack } from '../helpers/dev-stack';
import { startGrpcTlsProxy, startHandshakeVerifyingProxy, type GrpcTlsProxy } from '../helpers/grpc-tls-proxy';
import { waitFor } from '../helpers/wait';
import { freePort } from '../helpers/ports';

// keyturn against Temporal behind a TLS-terminating gRPC proxy, as a secured cluster or Temporal
// Cloud is reached: Debian's nginx in front of a Temporal dev server, verifying client certificates
// on one port and `authorization: Bearer <API key>` on another, with a CA and certificates made for
// this file. Every connection is configured through Temporal's environment configuration only: a
// TOML profile, or TEMPORAL_* variables. `keyturn dev`, pointed at the proxy by the mTLS profile,
// runs the worker. The steps build on each other.

const API_KEY = randomBytes(16).toString('hex');
const KEY_WITHOUT_NAMESPACE = randomBytes(16).toString('hex');
const logger = createLogger({ level: 'silent' });
const teardown = new Teardown(createLogger({ level: 'warn' }));
const runnerEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('TEMPORAL_')));
const keySetId = `tls-${randomBytes(3).toString('hex')}`;
let dir: string;
let certs: TestCertificates;
let proxy: GrpcTlsProxy;
let temporalAddress: string;
let running: TestDevStack;
/** Selects a profile of the file's temporal.toml. */
let profile: (name: 'mtls' | 'api-key') => Record<string, string>;

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-tls-'));
  teardown.add('the temporary folder', () => rm(dir, { recursive: true, force: true }));
  certs = await makeTestCertificates(dir);
  const temporal = await startTemporalDevServer({
    dataDir: dir,
    port: await freePort(),
    uiPort: await freePort(),
    logger,
  });
  teardown.add('the Temporal dev server', () => temporal.stop());
  temporalAddress = temporal.address;
  proxy = await startGrpcTlsProxy({
    dir,
    upstream: temporal.address,
    certificates: certs,
    apiKey: API_KEY,
    keyWithoutNamespace: KEY_WITHOUT_NAMESPACE,
  });
  teardown.add('nginx', () => proxy.stop());

  const configFile = path.join(dir, 'temporal.toml');
  await writeFile(
    configFile,
    `[profile.mtls]
address = "${proxy.mtlsAddress}"
namespace = "default"
[profile.mtls.tls]
server_ca_cert_path = "${certs.ca}"
server_name = "${certs.serverName}"
client_cert_path = "${certs.clientCert}"
client_key_path = "${certs.clientKey}"

[profile.api-key]
address = "${proxy.apiKeyAddress}"
api_key = "${API_KEY}"
[profile.api-key.tls]
server_ca_cert_path = "${certs.ca}"
server_name = "${certs.serverName}"
`,
  );
  profile = (name) => ({ TEMPORAL_CONFIG_FILE: configFile, TEMPORAL_PROFILE: name });

  running = await startTestDevStack('tls', { env: { ...profile('mtls') } });
  teardown.add('keyturn dev', () => running.stop());
}, 120_000);

afterAll(() => teardown.run());

/** `keyturn <args>` with only these Temporal settings (none of the runner's own). */
async function keyturn(env: Record<string, string>, ...args: string[]): Promise<CliRun> {
  const saved = process.env;
  // XDG_CONFIG_HOME: no Temporal config file of the runner's own (~/.config/temporalio/temporal.toml) joins in.
  process.env = { ...runnerEnv, XDG_CONFIG_HOME: dir, LOG_LEVEL: 'silent', ...env };
  try {
    return await runKeyturn(...args);
  } finally {
    process.env = saved;
  }
}

/** A run that failed with one line: its text without the `keyturn: ` prefix. */
function oneLine(run: CliRun): string {
  expect(run).toMatchObject({ code: 1, out: '' });
  expect(run.err).toMatch(/^keyturn: [^\n]+\n$/);
  expect(run.err).not.toContain(API_KEY);
  return run.err.slice('keyturn: '.length, -1);
}

test('over mTLS from a TOML profile: apply starts a key set the worker runs, status reads it, rotate rotates it', async () => {
  const file = path.join(dir, 'keysets.yaml');
  await writeFile(file, `keySets:\n  - id: ${keySetId}\n`);
  const applied = await keyturn(profile('mtls'), 'apply', '-f', file);
  expect(applied).toMatchObject({ code: 0, err: '' });
  expect(applied.out).toContain(`to ${proxy.mtlsAddress} (namespace default)`);

  const firstKid = await running.stack.keySets.waitForActiveKid(keySetId);
  const status = await keyturn(profile('mtls'), 'status', keySetId, '--json');
  expect(status).toMatchObject({ code: 0, err: '' });
  expect(JSON.parse(status.out)).toMatchObject({ id: keySetId, keys: [{ kid: firstKid, state: 'active' }] });

  const rotated = await keyturn(profile('mtls'), 'rotate', keySetId, '--reason', 'TLS drill', '--json');
  expect(rotated).toMatchObject({ code: 0, err: '' });
  expect(JSON.parse(rotated.out)).toEqual({
    id: keySetId,
    kid: expect.any(String),
    signsAt: expect.any(String),
    active: false,
    previousKid: firstKid,
  });

  // Through nginx, with the client certificate: the worker's task completions and the CLI's Update.
  const requests = await proxy.mtlsRequests();
  for (const method of [
    'RespondWorkflowTaskCompleted',
    'RespondActivityTaskCompleted',
    'UpdateWorkflowExecution',
    'QueryWorkflow',
  ]) {
    expect(requests).toContain(`CN=keyturn-worker /temporal.api.workflowservice.v1.WorkflowService/${method}`);
  }
});

test("the supervisor's client inside the worker uses the worker's mTLS connection: it starts a stopped key set again", async () => {
  const client: Client = await connectClient(temporalTargetFrom(loadConfig(profile('mtls'))));
  try {
    const handle = client.workflow.getHandle(keySetWorkflowId(keySetId));
    await handle.terminate('an operator mistake');
    await client.schedule.getHandle(SUPERVISOR_SCHEDULE_ID).trigger();
    await waitFor(
      async () => ((await handle.describe()).status.name === 'RUNNING' ? true : undefined),
      20_000,
      'the restarted key set',
      200,
    );
  } finally {
    await client.connection.close();
  }
});

test('the temporal CLI reaches the key set with the same profile', async () => {
  const { executable } = await resolveTemporalCli({ allowBuild: false });
  if (executable.type !== 'existing-path') throw new Error('npm pretest provisions the Temporal CLI as a file');
  const { stdout } = await promisify(execFile)(
    executable.path,
    ['workflow', 'describe', '--workflow-id', keySetWorkflowId(keySetId), '--output', 'json'],
    {
      env: { ...runnerEnv, ...profile('mtls') },
    },
  );
  expect(JSON.parse(stdout)).toMatchObject({
    workflowExecutionInfo: {
      execution: { workflowId: keySetWorkflowId(keySetId) },
      status: 'WORKFLOW_EXECUTION_STATUS_RUNNING',
    },
  });
});

test('a missing or untrusted client certificate, or an untrusted server, fails with one line naming what to set', async () => {
  const proxied = { TEMPORAL_ADDRESS: proxy.mtlsAddress, TEMPORAL_TLS_SERVER_NAME: certs.serverName };
  const ca = { TEMPORAL_TLS_SERVER_CA_CERT_PATH: certs.ca };
  const client = { TEMPORAL_TLS_CLIENT_CERT_PATH: certs.clientCert, TEMPORAL_TLS_CLIENT_KEY_PATH: certs.clientKey };
  const stranger = {
    TEMPORAL_TLS_CLIENT_CERT_PATH: certs.strangerCert,
    TEMPORAL_TLS_CLIENT_KEY_PATH: certs.strangerKey,
  };
  const where = `Temporal at ${proxy.mtlsAddress} (from TEMPORAL_ADDRESS)`;

  expect(oneLine(await keyturn({ ...proxied, ...ca }, 'status', keySetId))).toBe(
    `${where} refused keyturn's credentials ("client certificate required"): ` +
      'set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH for mTLS, or TEMPORAL_API_KEY',
  );
  expect(oneLine(await keyturn({ ...proxied, ...ca, ...stranger }, 'rotate', keySetId))).toBe(
    `${where} refused keyturn's credentials ("client certificate not trusted"): ` +
      'check that TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH hold a certificate the server trusts and its key',
  );
  expect(oneLine(await keyturn({ ...proxied, ...client }, 'status', keySetId))).toBe(
    `cannot connect to ${where}: its TLS certificate is not trusted (unable to verify the first certificate): ` +
      'set TEMPORAL_TLS_SERVER_CA_CERT_PATH to the certificate of the CA that signed it',
  );

  // The worker's native connection fails the same way, in the same words.
  const worker = await keyturn(
    {
      ...proxied,
      ...client,
      DATABASE_URL: running.db.url,
      KEYTURN_KEK: running.kek,
      KEYTURN_METRICS_PORT: String(await freePort()),
      KEYTURN_SDK_METRICS_PORT: String(await freePort()),
    },
    'worker',
  );
  expect(oneLine(worker)).toMatch(
    /its TLS certificate is not trusted \(.+\): set TEMPORAL_TLS_SERVER_CA_CERT_PATH to the certificate of the CA that signed it$/,
  );
  const withoutName = temporalTargetFrom(loadConfig({ TEMPORAL_ADDRESS: proxy.mtlsAddress, ...ca, ...client }));
  await expect(connectWorker(withoutName, logger)).rejects.toThrow(
    /: its TLS certificate is not issued to 127\.0\.0\.1 \(.+\): set TEMPORAL_TLS_SERVER_NAME to a name it is issued to$/,
  );
  await expect(
    connectWorker(temporalTargetFrom(loadConfig({ TEMPORAL_ADDRESS: proxy.mtlsAddress })), logger),
  ).rejects.toThrow(
    'it expects TLS: set TEMPORAL_TLS=true (and TEMPORAL_TLS_SERVER_CA_CERT_PATH if a private CA signed its certificate)',
  );

  // What the certificates hold never shows.
  const clientKey = (await readFile(certs.clientKey, 'utf8')).split('\n')[1];
  expect(worker.err).not.toContain(clientKey);
});

test('a frontend that verifies the client certificate in the TLS handshake, as Temporal does, is told apart too', async () => {
  const frontend = await startHandshakeVerifyingProxy({ upstream: temporalAddress, certificates: certs });
  try {
    const tls = {
      TEMPORAL_ADDRESS: frontend.address,
      TEMPORAL_TLS_SERVER_NAME: certs.serverName,
      TEMPORAL_TLS_SERVER_CA_CERT_PATH: certs.ca,
    };
    const client = { TEMPORAL_TLS_CLIENT_CERT_PATH: certs.clientCert, TEMPORAL_TLS_CLIENT_KEY_PATH: certs.clientKey };
    expect(await keyturn({ ...tls, ...client }, 'status', keySetId, '--json')).toMatchObject({ code: 0, err: '' });

    await expect(connectWorker(temporalTargetFrom(loadConfig(tls)), logger)).rejects.toThrow(
      `cannot connect to Temporal at ${frontend.address} (from TEMPORAL_ADDRESS): it refused the TLS handshake (alert "certificate required"): ` +
        'set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH to a certificate it trusts and its key',
    );
    const stranger = {
      TEMPORAL_TLS_CLIENT_CERT_PATH: certs.strangerCert,
      TEMPORAL_TLS_CLIENT_KEY_PATH: certs.strangerKey,
    };
    await expect(connectWorker(temporalTargetFrom(loadConfig({ ...tls, ...stranger })), logger)).rejects.toThrow(
      `cannot connect to Temporal at ${frontend.address} (from TEMPORAL_ADDRESS): it hung up right after the TLS handshake, as on a refused client certificate: ` +
        'set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH to a certificate it trusts and its key',
    );
  } finally {
    await frontend.stop();
  }
});

test('an API key arrives as `authorization: Bearer …`; without it, with another, or with one the namespace refuses, one line says what to check', async () => {
  // The proxy passes a request only with exactly `Bearer <API_KEY>`.
  expect(await keyturn(profile('api-key'), 'status', keySetId, '--json')).toMatchObject({ code: 0, err: '' });
  const connection = await connectWorker(temporalTargetFrom(loadConfig(profile('api-key'))), logger);
  await connection.close();

  const where = `Temporal at ${proxy.apiKeyAddress} (from TEMPORAL_ADDRESS)`;
  const withoutKey = {
    TEMPORAL_ADDRESS: proxy.apiKeyAddress,
    TEMPORAL_TLS_SERVER_CA_CERT_PATH: certs.ca,
    TEMPORAL_TLS_SERVER_NAME: certs.serverName,
  };
  expect(oneLine(await keyturn(withoutKey, 'status', keySetId))).toBe(
    `${where} refused keyturn's credentials ("missing or wrong API key"): ` +
      'set TEMPORAL_TLS_CLIENT_CERT_PATH and TEMPORAL_TLS_CLIENT_KEY_PATH for mTLS, or TEMPORAL_API_KEY',
  );
  const wrongKey = `wrong-${randomBytes(8).toString('hex')}`;
  const refused = await keyturn({ ...profile('api-key'), TEMPORAL_API_KEY: wrongKey }, 'status', keySetId);
  expect(oneLine(refused)).toBe(
    `Temporal at ${proxy.apiKeyAddress} (from the Temporal profile "api-key") refused keyturn's credentials ("missing or wrong API key"): ` +
      'check TEMPORAL_API_KEY (not shown here)',
  );
  expect(refused.err).not.toContain(wrongKey);

  // Accepted by the frontend, refused by the namespace: the first call after connecting fails.
  const outsider = await keyturn(
    { ...profile('api-key'), TEMPORAL_API_KEY: KEY_WITHOUT_NAMESPACE },
    'rotate',
    keySetId,
  );
  expect(oneLine(outsider)).toBe(
    `Temporal at ${proxy.apiKeyAddress} (from the Temporal profile "api-key") refused keyturn access to namespace "default" ("no access to this namespace"): ` +
      'check TEMPORAL_NAMESPACE (or --namespace), and what the client certificate or API key may do there',
  );
  expect(outsider.err).not.toContain(KEY_WITHOUT_NAMESPACE);
});
