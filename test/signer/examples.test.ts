import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { KeySetDriver, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { addClient, startSignerBesideJwks, type SignerBesideJwks } from '../helpers/signer';

// The README's client examples (examples/signer/), standard library only, run against a real signer
// and JWKS server: Go signs and verifies ES256 with crypto/ecdsa, Python signs and verifies RS256.

const run = promisify(execFile);
const EXAMPLES = path.join(__dirname, '..', '..', 'examples', 'signer');
let servers: SignerBesideJwks;

beforeAll(async () => {
  servers = await startSignerBesideJwks({
    defaultRate: { perSecond: 100, burst: 100 },
  });
});
afterAll(() => servers?.close());

async function keySetWithClient(alg: 'ES256' | 'RS256') {
  const keySet = await KeySetDriver.register(servers.store, uniqueKeySetId('example'), testPolicy(alg));
  const kid = await keySet.rotate();
  const secret = await addClient(servers.pool, { name: keySet.keySetId, keySetIds: [keySet.keySetId] });
  const env = {
    ...process.env,
    KEYTURN_SIGNER_URL: servers.signer.url,
    KEYTURN_SIGNER_SECRET: secret,
    KEYTURN_JWKS_URL: `${servers.jwks.url}/keysets/${keySet.keySetId}/jwks.json`,
  };
  return { keySetId: keySet.keySetId, kid, env };
}

test('Go: signs through the service and verifies the ES256 token with crypto/ecdsa against the JWKS', async () => {
  const { keySetId, kid, env } = await keySetWithClient('ES256');
  const { stdout } = await run('go', ['run', '.', keySetId], {
    cwd: path.join(EXAMPLES, 'go'),
    env: { ...env, GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local' },
    timeout: 120_000,
  });
  expect(stdout).toMatch(
    new RegExp(`^signed by ${kid}, valid until \\S+: iss=${servers.jwks.url}/keysets/${keySetId} sub=user-42\\n`),
  );
});

test('Python: signs through the service and verifies the RS256 token with integer arithmetic against the JWKS', async () => {
  const { keySetId, kid, env } = await keySetWithClient('RS256');
  const { stdout } = await run('python3', [path.join(EXAMPLES, 'python', 'sign.py'), keySetId], {
    env: { ...env, PYTHONDONTWRITEBYTECODE: '1' },
    timeout: 30_000,
  });
  expect(stdout).toMatch(
    new RegExp(
      `^signed by ${kid} \\(RS256\\), valid until \\S+\\nverified against the JWKS: iss=${servers.jwks.url}/keysets/${keySetId} sub=user-42\\n`,
    ),
  );
});

test('Python: a refusal comes out as its problem document', async () => {
  const { keySetId, env } = await keySetWithClient('ES256');
  const failed = await run('python3', [path.join(EXAMPLES, 'python', 'sign.py'), keySetId], {
    env: { ...env, KEYTURN_SIGNER_SECRET: 'kts_wrong', PYTHONDONTWRITEBYTECODE: '1' },
  }).catch((error: { code: number; stderr: string }) => error);
  expect(failed).toMatchObject({ code: 1, stderr: expect.stringContaining('401 ERR_UNAUTHENTICATED') });
});
