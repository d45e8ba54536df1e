import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import type { RunningJwksServer } from '../../src/jwks/server';
import type { RunningSignerServer } from '../../src/signer/server';
import { KeyStore } from '../../src/store/key-store';
import { KeySetDriver, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { randomKekRing } from '../helpers/key-set-worker';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { addClient, startSignerBesideJwks } from '../helpers/signer';

// The README's client examples (examples/signer/), standard library only, run against a real signer
// and JWKS server: Go signs and verifies ES256 with crypto/ecdsa, Python signs and verifies RS256.

const run = promisify(execFile);
const EXAMPLES = path.join(__dirname, '..', '..', 'examples', 'signer');
const kekRing = randomKekRing();
let db: TestDatabase;
let jwks: RunningJwksServer;
let signer: RunningSignerServer;
let stopServers: (() => Promise<void>) | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  ({
    jwks,
    signer,
    close: stopServers,
  } = await startSignerBesideJwks(db.pool, kekRing, {
    defaultRate: { perSecond: 100, burst: 100 },
  }));
});
afterAll(async () => {
  await stopServers?.();
  await db?.drop();
});

async function keySetWithClient(alg: 'ES256' | 'RS256') {
  const keySet = await KeySetDriver.register(
    new KeyStore(db.pool, kekRing),
    uniqueKeySetId('example'),
    testPolicy(alg),
  );
  const kid = await keySet.rotate();
  const secret = await addClient(db.pool, { name: keySet.keySetId, keySetIds: [keySet.keySetId] });
  const env = {
    ...process.env,
    KEYTURN_SIGNER_URL: signer.url,
    KEYTURN_SIGNER_SECRET: secret,
    KEYTURN_JWKS_URL: `${jwks.url}/keysets/${keySet.keySetId}/jwks.json`,
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
    new RegExp(`^signed by ${kid}, valid until \\S+: iss=${jwks.url}/keysets/${keySetId} sub=user-42\\n`),
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
      `^signed by ${kid} \\(RS256\\), valid until \\S+\\nverified against the JWKS: iss=${jwks.url}/keysets/${keySetId} sub=user-42\\n`,
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
