import { connect } from 'node:net';
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import type { Pool } from 'pg';
import type { Registry } from 'prom-client';
import { createMetricsRegistry } from '../../src/observability/metrics';
import { problemOfError } from '../../src/signer/problems';
import { startSignerServer, type RunningSignerServer } from '../../src/signer/server';
import { readAuditTrail } from '../../src/store/audit-log';
import { grantRoles } from '../../src/store/database-roles';
import { KeyStore } from '../../src/store/key-store';
import { listPublishedJwks } from '../../src/store/published-keys';
import { revokeSignerClient } from '../../src/store/signer-clients';
import { KeySetDriver, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { capturingLogger } from '../helpers/logs';
import { waitFor } from '../helpers/wait';
import { randomKekRing } from '../helpers/key-set-worker';
import {
  createLoginRole,
  createTestDatabase,
  dropRoles,
  sidePool,
  uniqueRoles,
  type TestDatabase,
} from '../helpers/postgres';
import { addClient, call, type Answer } from '../helpers/signer';

// The signing service over real HTTP on loopback, logged in as its own role (KEYTURN_SIGNER_ROLE), on a
// database of this file's own. Clients change through the store as `keyturn signer client` changes them.

const kekRing = randomKekRing();
const captured = capturingLogger();
const roles = uniqueRoles();
/** A claim value that must never reach a log, a metric or the audit trail. */
const MARKER = 'claim-value-that-stays-secret';
const ISSUER = 'https://login.example';
let db: TestDatabase;
let store: KeyStore;
let signerPool: Pool;
let registry: Registry;
let signer: RunningSignerServer;
let keySetId: string;
let otherKeySetId: string;
let emptyKeySetId: string;
let activeKid: string;
/** Signs for keySetId and emptyKeySetId (and a key set deleted since), with `aud` pinned to `api`. */
let alice: string;
/** Signs for otherKeySetId only. */
let bob: string;

beforeAll(async () => {
  db = await createTestDatabase();
  store = new KeyStore(db.pool, kekRing);
  const signerRole = await createLoginRole(roles.signer);
  await grantRoles(db.pool, roles);
  signerPool = sidePool(signerRole.urlFor(db.url), 5);
  const keySet = await KeySetDriver.register(store, uniqueKeySetId('signer'), testPolicy());
  keySetId = keySet.keySetId;
  activeKid = await keySet.rotate();
  const other = await KeySetDriver.register(store, uniqueKeySetId('other'), testPolicy('EdDSA'));
  otherKeySetId = other.keySetId;
  await other.rotate();
  emptyKeySetId = (await KeySetDriver.register(store, uniqueKeySetId('empty'), testPolicy())).keySetId;
  alice = await addClient(db.pool, {
    name: 'alice',
    keySetIds: [keySetId, emptyKeySetId],
    pinnedClaims: { aud: 'api' },
  });
  bob = await addClient(db.pool, { name: 'bob', keySetIds: [otherKeySetId] });
  // As if a key set alice may sign for had been deleted since she was added.
  await db.pool.query(`UPDATE signer_clients SET key_set_ids = key_set_ids || '{gone-key-set}' WHERE name = 'alice'`);
  registry = createMetricsRegistry();
  // A poll once a minute: a change seen sooner came by NOTIFY.
  signer = await startSignerServer({
    port: 0,
    pool: signerPool,
    kekRing,
    registry,
    logger: captured.logger,
    defaultRate: { perSecond: 1000, burst: 1000 },
    pollIntervalMs: 60_000,
    headersTimeoutMs: 1_000,
    bodyTimeoutMs: 1_000,
    denialWindowMs: 200,
    issuer: ISSUER,
  });
});
afterAll(async () => {
  await signer?.close();
  await signerPool?.end();
  await db?.drop();
  await dropRoles(Object.values(roles));
});

const signPath = (id: string) => `/v1/keysets/${id}/sign`;
const sign = (secret: string | undefined, body: unknown, id = keySetId) =>
  call(signer.url, 'POST', signPath(id), { secret, body });

/** The answer is a problem document with this status and code, and the standard members. */
function expectProblem(answer: Answer, status: number, code: string): void {
  expect(answer.headers['content-type']).toBe('application/problem+json');
  expect(answer.body).toMatchObject({
    type: `urn:keyturn:problem:${code.toLowerCase().replace(/_/g, '-')}`,
    title: expect.any(String),
    status,
    detail: expect.any(String),
    code,
  });
  expect(answer.status).toBe(status);
}

describe('signing', () => {
  test('answers a token signed with the active key, with kid, iat and exp, the pinned claim in, verifying against the JWKS', async () => {
    const answer = await sign(alice, { claims: { sub: 'user-1', scope: ['read'] }, ttl: '1m' });
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toBe('application/json');
    const { token, kid, iat, exp } = answer.body as { token: string; kid: string; iat: number; exp: number };
    expect(kid).toBe(activeKid);
    expect(decodeProtectedHeader(token)).toMatchObject({ alg: 'ES256', kid: activeKid });
    const { payload } = await jwtVerify(
      token,
      createLocalJWKSet({ keys: await listPublishedJwks(db.pool, keySetId) }),
      {
        audience: 'api',
      },
    );
    expect(payload).toMatchObject({ iss: ISSUER, sub: 'user-1', scope: ['read'], aud: 'api', iat, exp });
    expect(exp - iat).toBe(60);
  });

  test('without a ttl, a token lives the policy maxTokenTtl; a pinned claim the request repeats as it is passes', async () => {
    const answer = await sign(alice, { claims: { aud: 'api' } });
    expect(answer.status).toBe(200);
    expect((answer.body.exp as number) - (answer.body.iat as number)).toBe(300);
  });

  test('GET /v1/keysets/{id} answers the active kid, algorithm, next key and planned rotation', async () => {
    const answer = await call(signer.url, 'GET', `/v1/keysets/${keySetId}`, { secret: alice });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({
      keySetId,
      kid: activeKid,
      alg: 'ES256',
      nextKid: null,
      maxTokenTtl: '5m',
    });
    // testPolicy rotates after an hour.
    const rotation = Date.parse(answer.body.nextRotationAt as string) - Date.parse(answer.body.activatedAt as string);
    expect(rotation).toBe(3_600_000);
  });
});

describe('refusals are problem documents', () => {
  test('no credentials, a made-up secret or a malformed header: 401 with WWW-Authenticate', async () => {
    const attempts: Record<string, string>[] = [
      {},
      { authorization: 'Bearer kts_madeup' },
      { authorization: 'Basic YWxpY2U6eA==' },
    ];
    for (const headers of attempts) {
      const answer = await call(signer.url, 'POST', signPath(keySetId), { body: { claims: {} }, headers });
      expectProblem(answer, 401, 'ERR_UNAUTHENTICATED');
      expect(answer.headers['www-authenticate']).toBe('Bearer');
    }
  });

  test("another client's key set: 403, for signing and for reading it", async () => {
    expectProblem(await sign(bob, { claims: {} }, keySetId), 403, 'ERR_FORBIDDEN');
    expectProblem(await call(signer.url, 'GET', `/v1/keysets/${keySetId}`, { secret: bob }), 403, 'ERR_FORBIDDEN');
    expect((await sign(bob, { claims: {} }, otherKeySetId)).status).toBe(200);
  });

  test('a pinned claim set to another value: 403 naming the claim, not its value', async () => {
    const answer = await sign(alice, { claims: { aud: MARKER } });
    expectProblem(answer, 403, 'ERR_CLAIM_PINNED');
    expect(answer.body.field).toBe('aud');
    expect(answer.text).not.toContain(MARKER);
  });

  test.each([
    ['claims an array', { claims: [MARKER] }, 'ERR_CLAIMS_INVALID'],
    ['claims a string', { claims: MARKER }, 'ERR_CLAIMS_INVALID'],
    ['claims missing', {}, 'ERR_CLAIMS_INVALID'],
    ['claims setting exp', { claims: { exp: 1 } }, 'ERR_CLAIMS_INVALID'],
    ['an unknown member', { claims: {}, kid: 'x' }, 'ERR_REQUEST_INVALID'],
    ['a body that is no object', [1], 'ERR_REQUEST_INVALID'],
    ['a ttl that is no duration', { claims: {}, ttl: 'soon' }, 'ERR_DURATION_INVALID'],
    ['a ttl under a second', { claims: {}, ttl: 0 }, 'ERR_DURATION_INVALID'],
    ['a ttl over the maxTokenTtl', { claims: {}, ttl: '1h' }, 'ERR_TOKEN_TTL_TOO_LONG'],
    [
      'an iss other than the key set issuer',
      { claims: { iss: 'https://elsewhere.example' } },
      'ERR_TOKEN_ISSUER_MISMATCH',
    ],
  ])('%s: 400', async (_what, body, code) => {
    const answer = await sign(alice, body);
    expectProblem(answer, 400, code);
    expect(answer.text).not.toContain(MARKER);
  });

  test('a body that is not JSON: 400', async () => {
    const answer = await call(signer.url, 'POST', signPath(keySetId), {
      secret: alice,
      rawBody: '{"claims":',
      headers: { 'content-type': 'application/json' },
    });
    expectProblem(answer, 400, 'ERR_REQUEST_INVALID');
  });

  test('a key set without an active key yet: 503 with Retry-After', async () => {
    const answer = await sign(alice, { claims: {} }, emptyKeySetId);
    expectProblem(answer, 503, 'ERR_NO_ACTIVE_KEY');
    expect(answer.headers['retry-after']).toBe('1');
  });

  test('a key set that is not registered: 404, for signing and for reading it', async () => {
    expectProblem(await sign(alice, { claims: {} }, 'gone-key-set'), 404, 'ERR_KEYSET_NOT_FOUND');
    expectProblem(
      await call(signer.url, 'GET', '/v1/keysets/gone-key-set', { secret: alice }),
      404,
      'ERR_KEYSET_NOT_FOUND',
    );
  });

  test('a wrong method: 405 with Allow; a wrong content type: 415; an unknown path: 404; a bad key set id: 400', async () => {
    const get = await call(signer.url, 'GET', signPath(keySetId), { secret: alice });
    expectProblem(get, 405, 'ERR_METHOD_NOT_ALLOWED');
    expect(get.headers.allow).toBe('POST');
    const put = await call(signer.url, 'PUT', `/v1/keysets/${keySetId}`, { secret: alice, body: {} });
    expectProblem(put, 405, 'ERR_METHOD_NOT_ALLOWED');
    expect(put.headers.allow).toBe('GET');
    const text = await call(signer.url, 'POST', signPath(keySetId), {
      secret: alice,
      rawBody: '{"claims":{}}',
      headers: { 'content-type': 'text/plain' },
    });
    expectProblem(text, 415, 'ERR_UNSUPPORTED_MEDIA_TYPE');
    expectProblem(await call(signer.url, 'GET', '/v2/anything', { secret: alice }), 404, 'ERR_NOT_FOUND');
    expectProblem(await sign(alice, { claims: {} }, 'no*stars'), 400, 'ERR_KEYSET_ID_INVALID');
  });

  test('an expired client: 401', async () => {
    const expired = await addClient(db.pool, { name: 'expired', keySetIds: [keySetId], expiresAt: Date.now() + 3_000 });
    await waitFor(
      async () => ((await sign(expired, { claims: {} })).status === 200 ? true : undefined),
      10_000,
      'the new client',
    );
    const refused = await waitFor(
      async () => {
        const answer = await sign(expired, { claims: {} });
        return answer.status === 401 ? answer : undefined;
      },
      10_000,
      'the expiry',
      100,
    );
    expect(refused.body.detail).toMatch(/expired/);
  });

  test('over its rate: 429 with Retry-After, counted per client', async () => {
    const slow = await addClient(db.pool, {
      name: 'slow',
      keySetIds: [keySetId],
      rate: { perSecond: 1 / 60, burst: 2 },
    });
    await waitFor(
      async () => ((await sign(slow, { claims: {} })).status === 200 ? true : undefined),
      10_000,
      'the new client',
    );
    expect((await sign(slow, { claims: {} })).status).toBe(200);
    const limited = await sign(slow, { claims: {} });
    expectProblem(limited, 429, 'ERR_RATE_LIMITED');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    // Another client's bucket is its own.
    expect((await sign(alice, { claims: {} })).status).toBe(200);
  });

  test('an unexpected error is a 500 that tells nothing of it', () => {
    const { problem } = problemOfError(new Error('connect ECONNREFUSED postgres://keyturn:hunter2@db'));
    expect(problem).toMatchObject({ status: 500, code: 'ERR_INTERNAL' });
    expect(JSON.stringify(problem)).not.toMatch(/hunter2|ECONNREFUSED/);
  });
});

describe('slow and oversized requests', () => {
  test('a body declared larger than 64 KiB: 413 before it is read', async () => {
    const answer = await call(signer.url, 'POST', signPath(keySetId), {
      secret: alice,
      rawBody: JSON.stringify({ claims: { pad: 'x'.repeat(70_000) } }),
    });
    expectProblem(answer, 413, 'ERR_BODY_TOO_LARGE');
  });

  test('a chunked body that grows past 64 KiB: 413', async () => {
    const answer = await rawExchange(
      `POST ${signPath(keySetId)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${alice}\r\n` +
        'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n' +
        `${(80_000).toString(16)}\r\n${'x'.repeat(80_000)}\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer).toContain('"code":"ERR_BODY_TOO_LARGE"');
  });

  test('a head larger than 16 KiB: 431, a problem saying so, and the connection closes', async () => {
    const answer = await rawExchange(
      `POST ${signPath(keySetId)} HTTP/1.1\r\nHost: x\r\nX-Padding: ${'x'.repeat(20_000)}\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
    expect(body).toMatchObject({
      status: 431,
      title: 'Request header fields too large',
      code: 'ERR_REQUEST_INVALID',
      detail: "the request's head is larger than 16 KiB",
    });
  });

  test('a head that never ends: 408, and the connection closes', async () => {
    const answer = await rawExchange(`POST ${signPath(keySetId)} HTTP/1.1\r\nHost: x\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answer).toContain('"code":"ERR_REQUEST_TIMEOUT"');
  });

  test('a body that stops arriving: 408, and the connection closes', async () => {
    const answer = await rawExchange(
      `POST ${signPath(keySetId)} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${alice}\r\n` +
        'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"claims":',
    );
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(answer).toContain('"code":"ERR_REQUEST_TIMEOUT"');
  });
});

/** Writes `text` on a fresh connection and collects what comes back until the server closes it (10 s at most). */
function rawExchange(text: string): Promise<string> {
  const url = new URL(signer.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server kept the connection open: ${Buffer.concat(chunks).toString()}`));
    }, 10_000);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    // A reset after the answer (the server refusing the rest of a body) still leaves the answer.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
    socket.write(text);
  });
}

describe('clients follow the database', () => {
  test('a client added while the signer runs signs; once revoked, it is refused as soon as the notice is in', async () => {
    const carol = await addClient(db.pool, { name: 'carol', keySetIds: [keySetId] });
    await waitFor(async () => ((await sign(carol, { claims: {} })).status === 200 ? true : undefined), 10_000, 'carol');

    expect(await revokeSignerClient(db.pool, 'carol', 'test', 'left the company')).toBe(true);
    const refused = await waitFor(
      async () => {
        const answer = await sign(carol, { claims: {} });
        return answer.status === 200 ? undefined : answer;
      },
      10_000,
      'the revocation',
    );
    expectProblem(refused, 401, 'ERR_UNAUTHENTICATED');
    expect(await revokeSignerClient(db.pool, 'carol', 'test', 'again')).toBe(false);
    // A revoked client's name is not handed out again.
    await expect(addClient(db.pool, { name: 'carol', keySetIds: [keySetId] })).rejects.toMatchObject({
      code: 'ERR_SIGNER_CLIENT_INVALID',
    });
  });
});

describe('what the signer records', () => {
  test('metrics count signings per client, key set and outcome, and denials by code', async () => {
    await sign(alice, { claims: {} });
    await sign(bob, { claims: {} }, keySetId);
    const text = (await call(signer.url, 'GET', '/metrics')).text;
    expect(text).toMatch(
      new RegExp(`keyturn_signer_signings_total\\{client="alice",key_set="${keySetId}",outcome="signed"\\} [1-9]`),
    );
    expect(text).toMatch(/keyturn_signer_denials_total\{code="ERR_FORBIDDEN"\} [1-9]/);
    expect(text).toMatch(/keyturn_signer_denials_total\{code="ERR_UNAUTHENTICATED"\} [1-9]/);
    expect(text).not.toContain(alice);
  });

  test('the audit trail records the client added, the revocation and the denials, never a claim', async () => {
    await sign(alice, { claims: { aud: MARKER } });
    const events = await waitFor(
      async () => {
        const trail = await readAuditTrail(db.pool, keySetId);
        return trail.some((e) => e.event === 'signer_denied' && e.details.code === 'ERR_CLAIM_PINNED')
          ? trail
          : undefined;
      },
      10_000,
      'the denial in the audit trail',
      100,
    );
    expect(events.find((e) => e.event === 'signer_client_added' && e.details.client === 'alice')).toMatchObject({
      actor: 'test',
      details: { keySetIds: [keySetId, emptyKeySetId], pinnedClaims: ['aud'], authentication: ['bearer secret'] },
    });
    expect(events.find((e) => e.event === 'signer_client_revoked')).toMatchObject({
      reason: 'left the company',
      details: { client: 'carol' },
    });
    const denials = events.filter((e) => e.event === 'signer_denied');
    expect(denials.map((e) => e.details)).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ client: 'bob', code: 'ERR_FORBIDDEN', count: expect.any(Number) }),
        expect.objectContaining({ client: null, code: 'ERR_UNAUTHENTICATED' }),
        expect.objectContaining({ client: 'alice', code: 'ERR_CLAIM_PINNED' }),
      ]),
    );
    expect(JSON.stringify(events)).not.toContain(MARKER);
  });

  test('no secret, token or claim value reaches the log', async () => {
    const answer = await sign(alice, { claims: { sub: MARKER } });
    expect(answer.status).toBe(200);
    const logged = captured.text();
    for (const secret of [alice, bob, answer.body.token as string, MARKER]) expect(logged).not.toContain(secret);
  });
});

describe('the signer role', () => {
  test('reads what signing needs and may change neither keys, policies nor clients', async () => {
    for (const sql of [
      `UPDATE signing_keys SET state = state`,
      `UPDATE key_sets SET policy = policy`,
      `DELETE FROM key_sets WHERE false`,
      `INSERT INTO signer_clients (name, key_set_ids, created_by, cert_subject) VALUES ('mallory', '{x}', 'm', 'CN=m')`,
      `UPDATE signer_clients SET revoked_at = NULL`,
      `SELECT reason FROM audit_events`,
    ]) {
      const outcome = await signerPool.query(sql).then(
        () => 'ok',
        (error: { code?: string }) => error.code,
      );
      expect([sql, outcome]).toEqual([sql, '42501']);
    }
  });
});
