import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Registry } from 'prom-client';
import { parseKekRing } from '../../src/crypto/kek';
import { startJwksServer, type RunningJwksServer } from '../../src/jwks/server';
import { createLogger } from '../../src/logger';
import { KeyStore } from '../../src/store/key-store';
import { KeySetDriver, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { runKeyturn as keyturn } from '../helpers/cli';

// `keyturn token sign|verify` against a database of this file's own, with the KEK from the environment.

const KEK = Buffer.alloc(32, 7).toString('base64');
const savedEnv = { ...process.env };
let db: TestDatabase;
let dataDir: string;
let keySet: KeySetDriver;
let activeKid: string;
let jwks: RunningJwksServer;

beforeAll(async () => {
  db = await createTestDatabase();
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-token-'));
  const store = new KeyStore(db.pool, parseKekRing(KEK));
  keySet = await KeySetDriver.register(store, uniqueKeySetId('token'), testPolicy('EdDSA'));
  activeKid = await keySet.rotate();
  jwks = await startJwksServer({
    port: 0,
    host: '127.0.0.1',
    pool: db.pool,
    registry: new Registry(),
    logger: createLogger({ level: 'silent' }),
  });
  Object.assign(process.env, {
    DATABASE_URL: db.url,
    KEYTURN_KEK: KEK,
    KEYTURN_DATA_DIR: dataDir,
    LOG_LEVEL: 'silent',
    // The issuer of key sets whose policy names none derives from it, as in the JWKS server's discovery.
    KEYTURN_PUBLIC_URL: jwks.url,
  });
});

afterAll(async () => {
  process.env = { ...savedEnv };
  await jwks?.close();
  await db?.drop();
  await rm(dataDir, { recursive: true, force: true });
});

test('a signed token verifies against the key set in the database and against the served JWKS', async () => {
  const signed = await keyturn(
    'token',
    'sign',
    keySet.keySetId,
    '--sub',
    'user-42',
    '--ttl',
    '5m',
    '--claims',
    '{"scope":"read"}',
  );
  expect(signed).toMatchObject({ code: 0, err: '' });
  const token = signed.out.trim();

  for (const source of [
    ['--key-set', keySet.keySetId],
    ['--jwks-url', `${jwks.url}/keysets/${keySet.keySetId}/jwks.json`],
  ]) {
    const verified = await keyturn('token', 'verify', token, ...source, '--json');
    expect(verified.code).toBe(0);
    const { header, claims } = JSON.parse(verified.out);
    expect(header).toEqual({ alg: 'EdDSA', kid: activeKid, typ: 'JWT' });
    // The issuer a verifier discovers the key set under.
    expect(claims).toMatchObject({ sub: 'user-42', scope: 'read', iss: `${jwks.url}/keysets/${keySet.keySetId}` });
    expect(claims.exp - claims.iat).toBeLessThanOrEqual(300);
  }

  const human = await keyturn('token', 'verify', token, '--key-set', keySet.keySetId);
  expect(human).toMatchObject({ code: 0, err: '' });
  expect(human.out).toMatch(
    new RegExp(`^valid: signed by ${activeKid} \\(EdDSA\\), expires \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC\\n`),
  );
  expect(human.out).toContain('"sub": "user-42"');
});

test('token sign --json gives the token with the kid, alg and times it was signed with, and no key material', async () => {
  const signed = await keyturn('token', 'sign', keySet.keySetId, '--ttl', '1m', '--json');
  expect(signed).toMatchObject({ code: 0, err: '' });
  const json = JSON.parse(signed.out);
  expect(json).toEqual({
    token: expect.stringMatching(/^[\w-]+\.[\w-]+\.[\w-]+$/),
    keySetId: keySet.keySetId,
    kid: activeKid,
    alg: 'EdDSA',
    iss: `${jwks.url}/keysets/${keySet.keySetId}`,
    iat: expect.any(Number),
    exp: json.iat + 60,
    expiresAt: new Date((json.iat + 60) * 1000).toISOString(),
  });
  expect(signed.out).not.toMatch(/"d"|PRIVATE/);
  const verified = JSON.parse(
    (await keyturn('token', 'verify', json.token, '--key-set', keySet.keySetId, '--json')).out,
  );
  expect(verified.header.kid).toBe(activeKid);
});

test('bad input and bad tokens fail with one line and change nothing', async () => {
  const token = (await keyturn('token', 'sign', keySet.keySetId)).out.trim();
  const tampered = `${token.slice(0, -4)}AAAA`;
  expect(await keyturn('token', 'verify', tampered, '--key-set', keySet.keySetId)).toMatchObject({
    code: 1,
    err: expect.stringMatching(/^keyturn: token rejected \(ERR_JWS_SIGNATURE_VERIFICATION_FAILED\)/),
  });
  expect((await keyturn('token', 'sign', keySet.keySetId, '--ttl', '2h')).err).toMatch(/exceeds the maxTokenTtl/);
  expect((await keyturn('token', 'sign', keySet.keySetId, '--claims', '[1]')).err).toMatch(
    /--claims must be a JSON object/,
  );
  expect(await keyturn('token', 'sign', keySet.keySetId, '--claims', '{"iss":"https://evil.example"}')).toMatchObject({
    code: 1,
    out: '',
    err: expect.stringMatching(
      new RegExp(
        `^keyturn: the claims' iss "https://evil\\.example" is not the issuer of key set "${keySet.keySetId}"`,
      ),
    ),
  });
  expect((await keyturn('token', 'verify', token)).err).toMatch(/exactly one of --key-set/);

  // Once its key is revoked, a token no longer verifies: the key is out of the published set.
  const nextKid = await keySet.addNext();
  await keySet.revoke(activeKid);
  await keySet.promote(nextKid);
  expect(await keyturn('token', 'verify', token, '--key-set', keySet.keySetId)).toMatchObject({
    code: 1,
    err: expect.stringContaining('ERR_JWKS_NO_MATCHING_KEY'),
  });
  // A new token comes from the key promoted in its place.
  const replacement = (await keyturn('token', 'sign', keySet.keySetId)).out.trim();
  expect(
    JSON.parse((await keyturn('token', 'verify', replacement, '--key-set', keySet.keySetId, '--json')).out).header.kid,
  ).toBe(nextKid);
});
