import { Registry } from 'prom-client';
import { KeyRing } from '../../src/issuer/key-ring';
import { startJwksServer, type RunningJwksServer } from '../../src/jwks/server';
import { createLogger } from '../../src/logger';
import { KeyStore } from '../../src/store/key-store';
import { buildGoOidcVerifier, type GoOidcVerdict } from '../helpers/go-oidc-verifier';
import { KeySetDriver, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { randomKekRing } from '../helpers/key-set-worker';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';

// Tokens of the key ring against a real discovery-based OIDC client, Go's github.com/coreos/go-oidc:
// given only an issuer URL, it fetches <issuer>/.well-known/openid-configuration (whose issuer must be
// that URL), then the JWKS it names, and accepts a token only if its signature, expiry and iss check out.

const kekRing = randomKekRing();
const silent = createLogger({ level: 'silent' });
let db: TestDatabase;
let server: RunningJwksServer;
let ring: KeyRing;
let goOidc: (issuer: string, token: string) => Promise<GoOidcVerdict>;
/** A key set whose policy names its issuer, one without, and the default key set (discovered at the server's root). */
const named = uniqueKeySetId('go-oidc-named');
const derived = uniqueKeySetId('go-oidc-derived');
let namedIssuer: string;

beforeAll(async () => {
  // Built first (or found in the cache): without Go, this fails with what to install.
  goOidc = await buildGoOidcVerifier();
  db = await createTestDatabase();
  const store = new KeyStore(db.pool, kekRing);
  server = await startJwksServer({
    port: 0,
    host: '127.0.0.1',
    pool: db.pool,
    registry: new Registry(),
    logger: silent,
  });
  // The policy's issuer reaches the same server under another name: discovery there works only if the
  // server's document names the policy's issuer, not the URL it derives from its own.
  namedIssuer = `${server.url.replace('127.0.0.1', 'localhost')}/keysets/${named}`;
  await (await KeySetDriver.register(store, named, { ...testPolicy('RS256'), issuer: namedIssuer })).rotate();
  await (await KeySetDriver.register(store, derived, testPolicy('EdDSA'))).rotate();
  await (await KeySetDriver.register(store, 'default', testPolicy('ES256'))).rotate();
  ring = await KeyRing.open({ pool: db.pool, kekRing, logger: silent, publicUrl: server.url });
}, 600_000);

afterAll(async () => {
  await ring?.close();
  await server?.close();
  await db?.drop();
});

test.each([
  ['its policy names', () => named, () => namedIssuer],
  ['derived from its discovery URL', () => derived, () => `${server.url}/keysets/${derived}`],
  ['of the default key set: the public URL itself', () => 'default', () => server.url],
])('go-oidc, given only the issuer %s, verifies the key ring’s token', async (_, keySetId, issuer) => {
  const token = await ring.sign(keySetId(), { sub: 'alice', scope: 'read' }, { ttl: '1m' });
  const verdict = await goOidc(issuer(), token);
  expect(verdict).toEqual({
    verified: true,
    claims: { sub: 'alice', scope: 'read', iss: issuer(), iat: expect.any(Number), exp: expect.any(Number) },
  });
  // A claimed iss equal to the key set's issuer is kept as it is, and verifies the same.
  const claimed = await ring.sign(keySetId(), { iss: issuer(), sub: 'bob' }, { ttl: '1m' });
  expect(await goOidc(issuer(), claimed)).toMatchObject({ verified: true, claims: { iss: issuer(), sub: 'bob' } });
});

test('go-oidc refuses a token of the right key whose iss is another issuer, and the key ring signs none', async () => {
  const issuer = `${server.url}/keysets/${derived}`;
  // The right key, but a ring that believes the JWKS server is elsewhere: its tokens name another issuer.
  const misconfigured = await KeyRing.open({
    pool: db.pool,
    kekRing,
    logger: silent,
    publicUrl: 'https://elsewhere.example',
  });
  try {
    const token = await misconfigured.sign(derived, { sub: 'mallory' }, { ttl: '1m' });
    expect(await goOidc(issuer, token)).toEqual({
      verified: false,
      exitCode: 1,
      reason: expect.stringMatching(/issued by a different provider.*elsewhere\.example/),
    });
  } finally {
    await misconfigured.close();
  }
  // The key ring refuses such claims itself: nothing is signed.
  await expect(ring.sign(derived, { iss: 'https://elsewhere.example', sub: 'mallory' })).rejects.toMatchObject({
    code: 'ERR_TOKEN_ISSUER_MISMATCH',
    keySetId: derived,
  });
  // And discovery from a URL that is not the key set's issuer fails as it should.
  expect(await goOidc(`${server.url}/keysets/${named}`, await ring.sign(named, { sub: 'x' }))).toMatchObject({
    verified: false,
    exitCode: 2,
  });
});
