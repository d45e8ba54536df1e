import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseKekRing } from '../../src/crypto/kek';
import { removeInstanceFile, writeInstanceFile } from '../../src/runtime/instance-file';
import { readAuditTrail, verifyAuditTrail } from '../../src/store/audit-log';
import { KeyStore } from '../../src/store/key-store';
import { KeySetDriver, testPolicy } from '../helpers/key-sets';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { runKeyturn, type CliRun } from '../helpers/cli';

// `keyturn kek status|rewrap` in-process through runCli, against a database of this file's own
// (DATABASE_URL) with the KEKs from KEYTURN_KEK, walked through a KEK roll from A to B.

const A = randomBytes(32).toString('base64');
const B = randomBytes(32).toString('base64');
const C = randomBytes(32).toString('base64');
const [idA, idB, idC] = [A, B, C].map((kek) => parseKekRing(kek).current.id);

const savedEnv = { ...process.env };
let db: TestDatabase;
let dataDir: string;
/** Everything the CLI printed in this file, to search for KEK material at the end. */
const printed: string[] = [];
let alpha: { active: string; next: string };
let beta: { active: string };

/** `keyturn <args>` with KEYTURN_KEK set to `keks` (unset if undefined): exit code, stdout and stderr. */
async function keyturn(keks: string | undefined, ...args: string[]): Promise<CliRun> {
  if (keks === undefined) delete process.env.KEYTURN_KEK;
  else process.env.KEYTURN_KEK = keks;
  const run = await runKeyturn(...args);
  printed.push(run.out, run.err);
  return run;
}

/** A table's rows as cells. */
const cells = (text: string) =>
  text
    .trimEnd()
    .split('\n')
    .map((line) => line.trim().split(/\s{2,}/));

beforeAll(async () => {
  db = await createTestDatabase();
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-kek-cli-'));
  const underA = new KeyStore(db.pool, parseKekRing(A));
  const alphaSet = await KeySetDriver.register(underA, 'alpha', testPolicy());
  alpha = { active: await alphaSet.rotate(), next: '' };
  alpha.next = await alphaSet.addNext();
  const betaSet = await KeySetDriver.register(underA, 'beta', testPolicy('EdDSA'));
  const revoked = await betaSet.rotate();
  beta = { active: await betaSet.rotate() };
  await betaSet.revoke(revoked);
  // A key set with no key yet: nothing to re-seal.
  await KeySetDriver.register(underA, 'gamma', testPolicy());

  for (const name of ['TEMPORAL_ADDRESS', 'KEYTURN_DEBUG']) delete process.env[name];
  Object.assign(process.env, { DATABASE_URL: db.url, KEYTURN_DATA_DIR: dataDir, LOG_LEVEL: 'silent' });
});

afterAll(async () => {
  process.env = { ...savedEnv };
  await db?.drop();
  await rm(dataDir, { recursive: true, force: true });
});

afterAll(() => {
  // Only KEK ids and kids were ever printed, never a KEK.
  const all = printed.join('');
  expect(all).toContain(idA);
  for (const kek of [A, B, C]) expect(all).not.toContain(kek);
});

test('kek status before the roll: the one KEK seals every private key', async () => {
  const run = await keyturn(A, 'kek', 'status');
  expect(run).toMatchObject({ code: 0, err: '' });
  expect(cells(run.out)).toEqual([
    ['KEKs from KEYTURN_KEK, current first:'],
    ['KEK', 'ROLE', 'PRIVATE KEYS', 'KEY SETS'],
    [idA, 'current', '3', 'alpha, beta'],
    ['every private key is sealed under the current KEK'],
  ]);
});

test('kek status with the new KEK first: the keys still under the older one, and what to do', async () => {
  const run = await keyturn(`${B},${A}`, 'kek', 'status');
  expect(run).toMatchObject({ code: 0, err: '' });
  expect(cells(run.out)).toEqual([
    ['KEKs from KEYTURN_KEK, current first:'],
    ['KEK', 'ROLE', 'PRIVATE KEYS', 'KEY SETS'],
    [idB, 'current', '0', '-'],
    [idA, 'older', '3', 'alpha, beta'],
    ['3 private key(s) are still sealed under an older KEK: run `keyturn kek rewrap`'],
  ]);
  const json = await keyturn(`${B},${A}`, 'kek', 'status', '--json');
  expect(json).toMatchObject({ code: 0, err: '' });
  expect(JSON.parse(json.out)).toEqual({
    ok: true,
    kekFile: null,
    keks: [
      { id: idB, current: true, configured: true, privateKeys: 0, keySetIds: [] },
      { id: idA, current: false, configured: true, privateKeys: 3, keySetIds: ['alpha', 'beta'] },
    ],
  });
});

test('kek rewrap re-seals each key set under the current KEK with one audit event each; again, it changes nothing', async () => {
  const run = await keyturn(`${B},${A}`, 'kek', 'rewrap', '--reason', 'routine roll');
  expect(run).toMatchObject({ code: 0, err: '' });
  expect(run.out.split('\n')).toEqual([
    `re-sealing under the current KEK ${idB} (from KEYTURN_KEK):`,
    `  rewrapped  alpha: 2 private key(s) from KEK ${idA}: ${alpha.active}, ${alpha.next}`,
    `  rewrapped  beta: 1 private key(s) from KEK ${idA}: ${beta.active}`,
    '  unchanged  gamma: no private key under another KEK',
    '',
  ]);
  const alphaEvent = (await readAuditTrail(db.pool, 'alpha')).at(-1);
  expect(alphaEvent).toMatchObject({
    event: 'kek_rewrapped',
    trigger: 'manual',
    actor: expect.stringMatching(/\(keyturn CLI\)$/),
    reason: 'routine roll',
    details: { from: [idA], to: idB, kids: [alpha.active, alpha.next] },
  });
  expect((await verifyAuditTrail(db.pool)).map((v) => v.problem)).toEqual([null, null, null]);

  const eventCount = async () =>
    (await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_events')).rows[0].n;
  const events = await eventCount();
  const again = await keyturn(`${B},${A}`, 'kek', 'rewrap', '--json');
  expect(again).toMatchObject({ code: 0, err: '' });
  expect(JSON.parse(again.out)).toEqual({
    ok: true,
    current: idB,
    keySets: ['alpha', 'beta', 'gamma'].map((id) => ({ id, outcome: 'unchanged', from: [], to: idB, kids: [] })),
  });
  expect(await eventCount()).toBe(events);
});

test('kek status after the rewrap: the older KEK seals nothing and can go; the new KEK alone opens every key', async () => {
  const run = await keyturn(`${B},${A}`, 'kek', 'status');
  expect(run).toMatchObject({ code: 0, err: '' });
  expect(cells(run.out).slice(2)).toEqual([
    [idB, 'current', '3', 'alpha, beta'],
    [idA, 'older', '0', '-'],
    [
      'no private key is sealed under an older KEK: they can be removed from KEYTURN_KEK (then restart the workers and issuers)',
    ],
  ]);
  expect(await keyturn(B, 'kek', 'status')).toMatchObject({ code: 0, err: '' });
  const signed = await keyturn(B, 'token', 'sign', 'alpha');
  expect(signed).toMatchObject({ code: 0, err: '' });
  expect(JSON.parse(Buffer.from(signed.out.split('.')[0], 'base64url').toString())).toMatchObject({
    kid: alpha.active,
  });
});

describe('a private key under a KEK that is not configured', () => {
  let lostKid: string;
  let keptKid: string;

  beforeAll(async () => {
    // A key sealed under C, which KEYTURN_KEK lacks, and one by a worker still on the old KEK.
    lostKid = await (
      await KeySetDriver.register(new KeyStore(db.pool, parseKekRing(C)), 'delta', testPolicy())
    ).addNext();
    keptKid = await new KeySetDriver(new KeyStore(db.pool, parseKekRing(A)), 'gamma').addNext();
  });

  test('kek status flags its KEK id and exits 1 naming the key set', async () => {
    const run = await keyturn(`${B},${A}`, 'kek', 'status');
    expect(run.code).toBe(1);
    expect(cells(run.out).slice(2)).toEqual([
      [idB, 'current', '3', 'alpha, beta'],
      [idA, 'older', '1', 'gamma'],
      [idC, 'NOT CONFIGURED', '1', 'delta'],
      [
        '1 private key(s) are sealed under a KEK that KEYTURN_KEK lacks and cannot be opened: add that KEK back after the current one',
      ],
      ['1 private key(s) are still sealed under an older KEK: run `keyturn kek rewrap`'],
    ]);
    expect(run.err).toBe(
      `keyturn: 1 private key(s) of key set(s) delta are sealed under KEK ${idC}, which KEYTURN_KEK lacks: ` +
        'those keys cannot be opened until that KEK is added back after the current one\n',
    );
    const json = await keyturn(`${B},${A}`, 'kek', 'status', '--json');
    expect(json.code).toBe(1);
    expect(JSON.parse(json.out)).toMatchObject({
      ok: false,
      keks: expect.arrayContaining([
        { id: idC, current: false, configured: false, privateKeys: 1, keySetIds: ['delta'] },
      ]),
    });
  });

  test('kek rewrap fails that key set, naming kid and KEK id, changes nothing in it, and rewraps the others', async () => {
    const delta = await db.pool.query('SELECT kek_id, private_key FROM signing_keys WHERE key_set_id = $1', ['delta']);
    const deltaEvents = await readAuditTrail(db.pool, 'delta');

    const run = await keyturn(`${B},${A}`, 'kek', 'rewrap');
    expect(run.code).toBe(1);
    expect(run.out.split('\n')).toEqual([
      `re-sealing under the current KEK ${idB} (from KEYTURN_KEK):`,
      '  unchanged  alpha: no private key under another KEK',
      '  unchanged  beta: no private key under another KEK',
      `  FAILED     delta (nothing changed): private key "${lostKid}" of key set "delta" is sealed with KEK ${idC}, which is not configured ` +
        `(configured: ${idB}, ${idA}); add that KEK to KEYTURN_KEK after the current one`,
      `  rewrapped  gamma: 1 private key(s) from KEK ${idA}: ${keptKid}`,
      '',
    ]);
    expect(run.err).toBe('keyturn: 1 of 4 key set(s) not rewrapped, nothing changed in them: delta\n');
    expect(
      (await db.pool.query('SELECT kek_id, private_key FROM signing_keys WHERE key_set_id = $1', ['delta'])).rows,
    ).toEqual(delta.rows);
    expect(await readAuditTrail(db.pool, 'delta')).toEqual(deltaEvents);

    const json = await keyturn(`${B},${A},${C}`, 'kek', 'rewrap', '--json');
    expect(json).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(json.out).keySets).toContainEqual({
      id: 'delta',
      outcome: 'rewrapped',
      from: [idC],
      to: idB,
      kids: [lostKid],
    });
    expect(await keyturn(B, 'kek', 'status')).toMatchObject({ code: 0, err: '' });
  });
});

test('beside a running keyturn dev, the KEKs come from its KEK file', async () => {
  const kekFile = path.join(dataDir, 'kek');
  await writeFile(kekFile, `${B},${A}\n`, { mode: 0o600 });
  // This process stands in for `keyturn dev`: its instance file names the database and the KEK file.
  await writeInstanceFile(dataDir, {
    temporalAddress: '127.0.0.1:7233',
    namespace: 'default',
    taskQueue: 'keyturn',
    webUiUrl: null,
    databaseUrl: db.url,
    kekFile,
  });
  delete process.env.DATABASE_URL;
  try {
    const run = await keyturn(undefined, 'kek', 'status');
    expect(run).toMatchObject({ code: 0, err: '' });
    expect(cells(run.out)).toEqual([
      [`KEKs from the KEK file ${kekFile}, current first:`],
      ['KEK', 'ROLE', 'PRIVATE KEYS', 'KEY SETS'],
      [idB, 'current', '5', 'alpha, beta, delta, gamma'],
      [idA, 'older', '0', '-'],
      [
        `no private key is sealed under an older KEK: they can be removed from the KEK file ${kekFile} (then restart the workers and issuers)`,
      ],
    ]);
    expect((await keyturn(undefined, 'kek', 'rewrap')).out).toMatch(
      new RegExp(`^re-sealing under the current KEK ${idB} \\(from the KEK file ${kekFile}\\):\n`),
    );
  } finally {
    process.env.DATABASE_URL = db.url;
    await removeInstanceFile(dataDir);
  }
});

test('without a KEK for DATABASE_URL, both commands fail with one line saying how to supply it', async () => {
  for (const sub of ['status', 'rewrap']) {
    const run = await keyturn('', 'kek', sub);
    expect(run).toMatchObject({ code: 1, out: '' });
    expect(run.err).toMatch(/^keyturn: KEYTURN_KEK is not set, and DATABASE_URL is: .*set KEYTURN_KEK to it\n$/);
  }
  expect(await keyturn(B, 'kek', 'rewrap', '--reason', ' ')).toMatchObject({
    code: 1,
    err: 'keyturn: --reason must not be blank: it goes into the audit trail\n',
  });
});
