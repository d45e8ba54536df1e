import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/logger';
import { createMetricsRegistry } from '../../src/observability/metrics';
import { startSignerServer, type RunningSignerServer } from '../../src/signer/server';
import { readAuditTrail } from '../../src/store/audit-log';
import { KeyStore } from '../../src/store/key-store';
import { runKeyturn as keyturn } from '../helpers/cli';
import { KeySetDriver, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { waitFor } from '../helpers/wait';
import { randomKekRing } from '../helpers/key-set-worker';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { call } from '../helpers/signer';

// `keyturn signer client add|list|revoke` against DATABASE_URL, with a running signer that follows them.

const kekRing = randomKekRing();
const savedEnv = { ...process.env };
let db: TestDatabase;
let dataDir: string;
let keySetId: string;
let signer: RunningSignerServer;

beforeAll(async () => {
  db = await createTestDatabase();
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-signer-cli-'));
  const keySet = await KeySetDriver.register(new KeyStore(db.pool, kekRing), uniqueKeySetId('cli'), testPolicy());
  keySetId = keySet.keySetId;
  await keySet.rotate();
  signer = await startSignerServer({
    port: 0,
    pool: db.pool,
    kekRing,
    registry: createMetricsRegistry(),
    logger: createLogger({ level: 'silent' }),
    defaultRate: { perSecond: 1000, burst: 1000 },
    pollIntervalMs: 60_000,
    issuer: 'https://login.example',
  });
  Object.assign(process.env, {
    DATABASE_URL: db.url,
    KEYTURN_DATA_DIR: dataDir,
    LOG_LEVEL: 'silent',
    KEYTURN_ACTOR: 'ops',
  });
});
afterAll(async () => {
  process.env = { ...savedEnv };
  await signer?.close();
  await db?.drop();
  await rm(dataDir, { recursive: true, force: true });
});

test('client add prints a kts_ secret once, PostgreSQL keeps only its SHA-256, and the running signer accepts it', async () => {
  const added = await keyturn(
    'signer',
    'client',
    'add',
    'billing',
    '--key-sets',
    keySetId,
    '--pin',
    'aud=billing-api',
    '--pin',
    'roles=["payer"]',
    '--expires',
    '90d',
    '--rate',
    '50/s',
    '--json',
  );
  expect(added).toMatchObject({ code: 0, err: '' });
  const result = JSON.parse(added.out) as { secret: string; expiresAt: string };
  expect(result).toMatchObject({
    name: 'billing',
    keySetIds: [keySetId],
    pinnedClaims: { aud: 'billing-api', roles: ['payer'] },
  });
  expect(result.secret).toMatch(/^kts_[A-Za-z0-9_-]{43}$/);
  expect(Date.parse(result.expiresAt) - Date.now()).toBeGreaterThan(89 * 86_400_000);

  const { rows } = await db.pool.query('SELECT * FROM signer_clients WHERE name = $1', ['billing']);
  expect(rows[0].secret_hash).toEqual(createHash('sha256').update(result.secret).digest());
  expect(JSON.stringify(rows)).not.toContain(result.secret.slice(4));
  expect(rows[0]).toMatchObject({ rate_per_second: 50, burst: 100, created_by: 'ops' });

  const signed = await waitFor(
    async () => {
      const answer = await call(signer.url, 'POST', `/v1/keysets/${keySetId}/sign`, {
        secret: result.secret,
        body: { claims: { sub: 'x' } },
      });
      return answer.status === 200 ? answer : undefined;
    },
    10_000,
    'the new client',
  );
  const payload = JSON.parse(Buffer.from((signed.body.token as string).split('.')[1], 'base64url').toString());
  expect(payload).toMatchObject({ aud: 'billing-api', roles: ['payer'] });

  const human = await keyturn('signer', 'client', 'add', 'web', '--key-sets', keySetId);
  expect(human.code).toBe(0);
  expect(human.out).toMatch(
    /^added signing client "web" for key set\(s\) .*\n\n {2}kts_\S{43}\n\nThis bearer secret is shown once/,
  );
});

test('client list shows every client and never a secret or its hash; client revoke refuses it at once and is recorded', async () => {
  const added = JSON.parse(
    (await keyturn('signer', 'client', 'add', 'leaving', '--key-sets', keySetId, '--json')).out,
  ) as { secret: string };
  const listed = await keyturn('signer', 'client', 'list', '--json');
  expect(listed.code).toBe(0);
  const clients = JSON.parse(listed.out) as { name: string }[];
  expect(clients.map((c) => c.name)).toEqual(expect.arrayContaining(['billing', 'leaving']));
  expect(listed.out).not.toContain(added.secret);
  expect(listed.out).not.toMatch(/hash/i);

  const signs = () =>
    call(signer.url, 'POST', `/v1/keysets/${keySetId}/sign`, { secret: added.secret, body: { claims: {} } });
  await waitFor(async () => ((await signs()).status === 200 ? true : undefined), 10_000, 'the new client');

  expect((await keyturn('signer', 'client', 'revoke', 'leaving')).err).toMatch(/needs a reason/);
  const revoked = await keyturn('signer', 'client', 'revoke', 'leaving', '--reason', 'laptop stolen');
  expect(revoked).toMatchObject({ code: 0, out: 'revoked signing client "leaving"\n' });
  await waitFor(async () => ((await signs()).status === 401 ? true : undefined), 10_000, 'the revocation');

  // Again: it stays revoked, and says so.
  expect(await keyturn('signer', 'client', 'revoke', 'leaving', '--reason', 'again', '--json')).toMatchObject({
    code: 0,
    out: '{"name":"leaving","revoked":false}\n',
  });

  const text = (await keyturn('signer', 'client', 'list')).out;
  expect(text).toMatch(/^leaving {2}revoked \S+ by ops {2}key sets: /m);
  expect((await keyturn('signer', 'client', 'revoke', 'nobody', '--reason', 'x')).err).toMatch(
    /no signing client is named "nobody"/,
  );
  const trail = await readAuditTrail(db.pool, keySetId);
  expect(trail.find((e) => e.event === 'signer_client_revoked')).toMatchObject({
    actor: 'ops',
    reason: 'laptop stolen',
    details: { client: 'leaving' },
  });
});

test('client add refuses an unknown key set, a bad pin or rate, and a name in use, before printing any secret', async () => {
  const cases: [string[], RegExp][] = [
    [['--key-sets', 'no-such-set'], /key set "no-such-set" is not registered/],
    [['--key-sets', keySetId, '--pin', 'aud'], /--pin must be claim=value/],
    [['--key-sets', keySetId, '--pin', 'exp=1'], /keyturn sets iat and exp/],
    [['--key-sets', keySetId, '--rate', 'fast'], /--rate: write a whole number/],
    [[], /--key-sets is required/],
  ];
  for (const [args, message] of cases) {
    const run = await keyturn('signer', 'client', 'add', 'refused', ...args);
    expect([args, run.code, run.out]).toEqual([args, 1, '']);
    expect(run.err).toMatch(message);
  }
  const taken = await keyturn('signer', 'client', 'add', 'billing', '--key-sets', keySetId);
  expect(taken).toMatchObject({ code: 1, out: '' });
  expect(taken.err).toMatch(/a client named "billing" exists/);
});
