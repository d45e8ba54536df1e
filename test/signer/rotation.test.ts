import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import { KeySetDriver, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { waitFor } from '../helpers/wait';
import { addClient, call, startSignerBesideJwks, type SignerBesideJwks } from '../helpers/signer';

// A rotation as the workflow makes it (publish the next key, promote it once verifiers can have cached
// it), followed by the signer while a verifier caching the real JWKS server's keys checks every token.

let servers: SignerBesideJwks;

beforeAll(async () => {
  servers = await startSignerBesideJwks({
    defaultRate: { perSecond: 100_000, burst: 100_000 },
    pollIntervalMs: 60_000,
  });
});
afterAll(() => servers?.close());

test('a rotation reaches the signer by NOTIFY, and a verifier that cached the JWKS before the promotion accepts every token', async () => {
  const keySet = await KeySetDriver.register(servers.store, uniqueKeySetId('rotate'), testPolicy());
  const oldKid = await keySet.rotate();
  const secret = await addClient(servers.pool, { name: 'rotating', keySetIds: [keySet.keySetId] });
  const sign = async () => {
    const answer = await call(servers.signer.url, 'POST', `/v1/keysets/${keySet.keySetId}/sign`, {
      secret,
      body: { claims: { sub: 'loop' }, ttl: '1m' },
    });
    if (answer.status !== 200) throw new Error(`signing failed: ${answer.text}`);
    return answer.body.token as string;
  };
  await waitFor(
    () =>
      sign().then(
        () => true,
        () => undefined,
      ),
    10_000,
    'the client',
  );

  // The next key is published, and the verifier fetches the JWKS once it is (after jwksMaxAge, in production).
  const newKid = await keySet.addNext();
  const jwksUrl = `${servers.jwks.url}/keysets/${keySet.keySetId}/jwks.json`;
  await waitFor(
    async () => {
      const { keys: served } = (await (await fetch(jwksUrl)).json()) as { keys: { kid: string }[] };
      return served.some((key) => key.kid === newKid) || undefined;
    },
    10_000,
    'the JWKS server to publish the next key',
  );
  // No refetch for an unknown kid within the test: a token signed with an unpublished key would fail.
  const keys = createRemoteJWKSet(new URL(jwksUrl), {
    cooldownDuration: 600_000,
    cacheMaxAge: 600_000,
  });
  const issuer = `${servers.jwks.url}/keysets/${keySet.keySetId}`;
  const verify = (token: string) => jwtVerify(token, keys, { issuer });
  await verify(await sign());

  let promoted = false;
  const signing = (async () => {
    const kids: string[] = [];
    const deadline = Date.now() + 10_000;
    // Until the new key signs, and a few tokens after.
    while (kids.filter((kid) => kid === newKid).length < 5 && Date.now() < deadline) {
      const token = await sign();
      await verify(token);
      kids.push(decodeProtectedHeader(token).kid!);
      if (kids.length === 5 && !promoted) {
        promoted = true;
        await keySet.promote(newKid);
      }
    }
    return kids;
  })();
  const kids = await signing;
  expect(kids[0]).toBe(oldKid);
  expect(kids.at(-1)).toBe(newKid);
  // Once the new key signed, the old one never did again.
  expect(kids.slice(kids.indexOf(newKid))).toEqual(kids.slice(kids.indexOf(newKid)).map(() => newKid));
  const info = await call(servers.signer.url, 'GET', `/v1/keysets/${keySet.keySetId}`, { secret });
  expect(info.body).toMatchObject({ kid: newKid, nextKid: null });
});
