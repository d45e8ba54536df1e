import { randomBytes } from 'node:crypto';
import { parseKekRing } from '../../src/crypto/kek';
import { grantRoles } from '../../src/store/database-roles';
import { KeyStore } from '../../src/store/key-store';
import { KeySetDriver, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { keyturnEnv, startKeyturn } from '../helpers/keyturn-processes';
import { freePort } from '../helpers/ports';
import { createLoginRole, createTestDatabase, dropRoles, uniqueRoles, type TestDatabase } from '../helpers/postgres';
import { ProcessGroup } from '../helpers/processes';
import { addClient, call } from '../helpers/signer';

// `keyturn signer` as deployed: a process of its own, logged in as KEYTURN_SIGNER_ROLE, with the KEK
// from the environment; it finds the schema up to date, signs, and stops on SIGTERM.

const kek = randomBytes(32).toString('base64');
const roles = uniqueRoles();
const processes = new ProcessGroup();
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await processes.stopAll();
  await db?.drop();
  await dropRoles(Object.values(roles));
});

test('keyturn signer starts as the signer role, signs for a client, and stops on SIGTERM', async () => {
  const signerRole = await createLoginRole(roles.signer);
  await grantRoles(db.pool, roles);
  const keySet = await KeySetDriver.register(
    new KeyStore(db.pool, parseKekRing(kek)),
    uniqueKeySetId('process'),
    testPolicy(),
  );
  const kid = await keySet.rotate();
  const secret = await addClient(db.pool, { name: 'process', keySetIds: [keySet.keySetId] });
  const port = await freePort();
  const signer = startKeyturn(
    processes,
    'keyturn signer',
    ['signer'],
    keyturnEnv(
      { databaseUrl: signerRole.urlFor(db.url), kek, temporalAddress: '127.0.0.1:1', taskQueue: 'unused' },
      { KEYTURN_SIGNER_PORT: String(port), KEYTURN_PUBLIC_URL: 'https://keys.example' },
    ),
  );
  await signer.waitForOutput(/"msg":"signer running"/, 120_000);

  const answer = await call(`http://127.0.0.1:${port}`, 'POST', `/v1/keysets/${keySet.keySetId}/sign`, {
    secret,
    body: { claims: { sub: 'p' } },
  });
  expect(answer.status).toBe(200);
  expect(answer.body.kid).toBe(kid);
  expect(signer.output()).not.toContain(secret);

  // SIGTERM: a clean exit (stop() would SIGKILL it, exit code null, if it did not end by itself).
  await signer.stop();
  expect(signer.exitCode).toBe(0);
});
