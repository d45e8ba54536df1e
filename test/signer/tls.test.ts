import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { RequestOptions } from 'node:https';
import { createMetricsRegistry } from '../../src/observability/metrics';
import { startSignerServer, type RunningSignerServer } from '../../src/signer/server';
import { addSignerClient } from '../../src/store/signer-clients';
import { KeyStore } from '../../src/store/key-store';
import { makeTestCertificates, type TestCertificates } from '../helpers/certificates';
import { KeySetDriver, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { waitFor } from '../helpers/wait';
import { randomKekRing } from '../helpers/key-set-worker';
import { createLogger } from '../../src/logger';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { addClient, call } from '../helpers/signer';

// The signer over TLS (KEYTURN_SIGNER_TLS_CERT_FILE/_KEY_FILE), and with client certificates required
// (KEYTURN_SIGNER_TLS_CLIENT_CA_FILE): certificates made with openssl for this file.

const kekRing = randomKekRing();
let db: TestDatabase;
let dir: string;
let certs: TestCertificates;
let keySetId: string;
let mutual: RunningSignerServer;
let serverOnly: RunningSignerServer;
let secret: string;

const pem = (file: string) => readFile(file);

beforeAll(async () => {
  db = await createTestDatabase();
  dir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-signer-tls-'));
  certs = await makeTestCertificates(dir);
  const keySet = await KeySetDriver.register(new KeyStore(db.pool, kekRing), uniqueKeySetId('tls'), testPolicy());
  keySetId = keySet.keySetId;
  await keySet.rotate();
  secret = await addClient(db.pool, { name: 'bearer', keySetIds: [keySetId] });
  const common = {
    port: 0,
    pool: db.pool,
    kekRing,
    logger: createLogger({ level: 'silent' }),
    defaultRate: { perSecond: 1000, burst: 1000 },
    pollIntervalMs: 60_000,
    issuer: 'https://login.example',
  };
  const tls = { cert: await pem(certs.serverCert), key: await pem(certs.serverKey) };
  mutual = await startSignerServer({
    ...common,
    registry: createMetricsRegistry(),
    tls: { ...tls, clientCa: await pem(certs.ca) },
  });
  serverOnly = await startSignerServer({ ...common, registry: createMetricsRegistry(), tls });
});
afterAll(async () => {
  await mutual?.close();
  await serverOnly?.close();
  await db?.drop();
  await rm(dir, { recursive: true, force: true });
});

/** Trusts the test CA, names the server as its certificate does, and shows `client`'s certificate if given. */
async function tlsOptions(client?: 'client' | 'stranger'): Promise<RequestOptions> {
  return {
    ca: await pem(certs.ca),
    servername: certs.serverName,
    ...(client === 'client' && { cert: await pem(certs.clientCert), key: await pem(certs.clientKey) }),
    ...(client === 'stranger' && { cert: await pem(certs.strangerCert), key: await pem(certs.strangerKey) }),
  };
}

const signPath = () => `/v1/keysets/${keySetId}/sign`;

test('over TLS, a bearer secret signs; plain HTTP to the TLS port gets no answer', async () => {
  expect(serverOnly.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  const answer = await call(serverOnly.url, 'POST', signPath(), {
    secret,
    body: { claims: {} },
    tls: await tlsOptions(),
  });
  expect(answer.status).toBe(200);
  const plain = await call(serverOnly.url.replace('https:', 'http:'), 'POST', signPath(), {
    secret,
    body: { claims: {} },
  }).then(
    (a) => a.status,
    () => 'refused',
  );
  expect(plain).not.toBe(200);
});

test('with a client CA, a connection without a certificate or with one of another CA is refused', async () => {
  for (const client of [undefined, 'stranger'] as const) {
    const outcome = await call(mutual.url, 'POST', signPath(), {
      secret,
      body: { claims: {} },
      tls: await tlsOptions(client),
    }).then(
      (a) => a.status,
      (error: NodeJS.ErrnoException) => error.code ?? error.message,
    );
    expect([client, typeof outcome]).toEqual([client, 'string']);
  }
});

test('a certificate from the CA signs once its subject is mapped to a client; until then it is 401; a bearer secret works beside it', async () => {
  const tls = await tlsOptions('client');
  const before = await call(mutual.url, 'POST', signPath(), { body: { claims: {} }, tls });
  expect(before.status).toBe(401);
  expect(before.body.code).toBe('ERR_UNAUTHENTICATED');

  await addSignerClient(db.pool, {
    name: 'worker-cert',
    certSubject: 'CN=keyturn-worker',
    keySetIds: [keySetId],
    pinnedClaims: { aud: 'mtls' },
    actor: 'test',
  });
  const signed = await waitFor(
    async () => {
      const answer = await call(mutual.url, 'POST', signPath(), { body: { claims: {} }, tls });
      return answer.status === 200 ? answer : undefined;
    },
    10_000,
    'the certificate client',
    50,
  );
  const payload = JSON.parse(Buffer.from((signed.body.token as string).split('.')[1], 'base64url').toString());
  expect(payload.aud).toBe('mtls');

  const bearer = await call(mutual.url, 'POST', signPath(), { secret, body: { claims: {} }, tls });
  expect(bearer.status).toBe(200);
});
