import { generateSigningKey } from '../../src/crypto/generate';
import type { DevStack } from '../../src/dev/dev-stack';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { readAuditTrail } from '../../src/store/audit-log';
import { waitFor } from '../helpers/wait';
import { startTestDevStack, type TestDevStack } from '../helpers/dev-stack';
import { freePort } from '../helpers/ports';
import type { TestDatabase } from '../helpers/postgres';
import { runKeyturn as keyturn } from '../helpers/cli';

// The operator commands in-process through runCli (commander's parseAsync on the program) against a
// real Temporal dev server, the worker and a database of this file's own. The commands find Temporal
// through the instance file the stack writes in the data folder (KEYTURN_DATA_DIR) and PostgreSQL
// through DATABASE_URL, as beside `keyturn dev` with an external database. The seed policy keeps the
// key set still, so every change seen is one a command made. The steps build on each other.

const KEY_SET = 'ops';
const FAST_KEY_SET = 'ops-fast';
const ISO = expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
let running: TestDevStack;
let dataDir: string;
let db: TestDatabase;
let stack: DevStack;
let firstKid: string;
let activeKid: string;
const savedEnv = { ...process.env };

async function statusJson(): Promise<{ keys: { kid: string; state: string }[]; paused: unknown; rotation: unknown }> {
  const run = await keyturn('status', KEY_SET, '--json');
  expect(run).toMatchObject({ code: 0, err: '' });
  return JSON.parse(run.out) as { keys: { kid: string; state: string }[]; paused: unknown; rotation: unknown };
}

beforeAll(async () => {
  running = await startTestDevStack('cli-ops');
  ({ stack, db, dataDir } = running);
  await stack.keySets.start(KEY_SET, DEFAULT_POLICY);
  firstKid = await stack.keySets.waitForActiveKid(KEY_SET);

  for (const name of ['TEMPORAL_ADDRESS', 'TEMPORAL_NAMESPACE', 'KEYTURN_KEK', 'KEYTURN_DEBUG'])
    delete process.env[name];
  Object.assign(process.env, { KEYTURN_DATA_DIR: dataDir, DATABASE_URL: db.url, LOG_LEVEL: 'silent' });
}, 120_000);

afterAll(async () => {
  process.env = { ...savedEnv };
  await running?.stop();
});

test('status shows keys, schedule, pause and policy; --json has the documented shape', async () => {
  const human = await keyturn('status', KEY_SET);
  expect(human).toMatchObject({ code: 0, err: '' });
  expect(human.out).toContain(`key set ${KEY_SET}: ES256, rotates every 30d`);
  expect(human.out).toMatch(new RegExp(`^  ${firstKid}\\s+active\\s+\\d{4}-`, 'm'));
  expect(human.out).toMatch(/^next transition: generate and publish the next key at .* UTC \(in 2\dd/m);
  expect(human.out).toContain(
    'paused: no\nlast error: none\npolicy: algorithm ES256, rotationPeriod 30d, prepublish 5d',
  );

  expect(await statusJson()).toEqual({
    id: KEY_SET,
    policy: { ...DEFAULT_POLICY },
    paused: null,
    keys: [{ kid: firstKid, state: 'active', alg: 'ES256', createdAt: ISO, activatedAt: ISO }],
    nextTransition: { kind: 'generateNext', at: ISO },
    rotation: null,
    lastError: null,
  });
});

test('status --timeline draws the key set, --mermaid writes it as a gantt block, --json gives the rows', async () => {
  const chart = await keyturn('status', KEY_SET, '--timeline');
  expect(chart).toMatchObject({ code: 0, err: '' });
  const lines = chart.out.trimEnd().split('\n');
  // Not a terminal here: 100 columns, no colour; the active key's row, the key to come, the axis and the legend.
  expect(lines).toHaveLength(5);
  expect(lines[0]).toMatch(new RegExp(`^${firstKid.slice(0, 9)}…  █+━+┅+┈+$`));
  expect(lines[1]).toMatch(/^\(to come\) {3,}╌+━+┅+┈+$/);
  expect(lines[2]).toMatch(/^ {12}[┬─▲]{88}$/);
  expect(lines[3]).toMatch(/^ {12}\d{4}-\d\d-\d\d {2}\d{4}-/);
  expect(chart.out).not.toContain('\u001b');

  const mermaid = await keyturn('status', KEY_SET, '--mermaid');
  expect(mermaid.out).toMatch(
    new RegExp(`^gantt\n.*\n    dateFormat YYYY-MM-DD HH:mm:ss\n.*\n    section ${firstKid}\n    active :done, `),
  );
  expect(mermaid.out).toContain('    section key to come\n    next :');

  const rows = JSON.parse((await keyturn('status', KEY_SET, '--timeline', '--json')).out) as {
    kid?: string;
    periods: { phase: string; planned: boolean }[];
  }[];
  expect(rows.map((row) => [row.kid, row.periods.map((p) => `${p.phase}${p.planned ? '*' : ''}`)])).toEqual([
    [firstKid, ['active', 'active*', 'grace*', 'retired*']],
    [undefined, ['next*', 'active*', 'grace*', 'retired*']],
  ]);
  expect((await keyturn('status', '--timeline')).err).toMatch(
    /^keyturn: --timeline and --mermaid draw one key set: name it/,
  );
});

test('rotate publishes a next key and says when it signs; asked again it joins the pending rotation', async () => {
  const run = await keyturn('rotate', KEY_SET, '--reason', 'drill');
  expect(run).toMatchObject({ code: 0, err: '' });
  const [, kid, signsAt] =
    /: (\S+) signs from (.+ UTC), once every verifier's cached JWKS holds it/.exec(run.out) ?? [];
  expect(kid).toBeDefined();
  // The seed policy's jwksMaxAge: verifiers may hold a JWKS without the key for 15 minutes.
  expect(Date.parse(signsAt.replace(' UTC', 'Z')) - Date.now()).toBeGreaterThan(14 * 60_000);

  const again = await keyturn('rotate', KEY_SET, '--reason', 'drill again', '--json');
  expect(JSON.parse(again.out)).toEqual({ id: KEY_SET, kid, signsAt: ISO, active: false, previousKid: firstKid });
  const status = await statusJson();
  expect(status.keys).toEqual([
    expect.objectContaining({ kid: firstKid, state: 'active' }),
    expect.objectContaining({ kid, state: 'next', listedAt: ISO, promotableAt: ISO }),
  ]);
  expect(status).toMatchObject({
    rotation: { reason: 'drill', requestedAt: ISO, immediately: false },
    nextTransition: { kind: 'promote', kid },
  });
});

test('rotate --immediately promotes at once and warns until when verifiers may reject the new key', async () => {
  const run = await keyturn('rotate', KEY_SET, '--reason', 'key must stop now', '--immediately');
  expect(run).toMatchObject({ code: 0, err: '' });
  const [, kid] = /rotated: (\S+) is active; (\S+) verifies through its grace period/.exec(run.out) ?? [];
  expect(run.out).toContain(`${firstKid} verifies through its grace period`);
  expect(run.out).toMatch(
    new RegExp(
      `warning: promoted at once as asked: verifiers whose cached JWKS predates ${kid} reject its tokens until .* UTC`,
    ),
  );

  const { keys, rotation } = await statusJson();
  expect(rotation).toBeNull();
  expect(keys).toEqual(
    expect.arrayContaining([
      expect.objectContaining({ kid, state: 'active' }),
      expect.objectContaining({ kid: firstKid, state: 'grace' }),
    ]),
  );
  activeKid = kid;
});

test('rotate --signal only asks; the rotation follows, its next key published', async () => {
  const run = await keyturn('rotate', KEY_SET, '--signal', '--json');
  expect(run).toMatchObject({ code: 0, err: '' });
  expect(JSON.parse(run.out)).toEqual({ id: KEY_SET, requested: true });
  await waitFor(async () => (await statusJson()).rotation ?? undefined, 15_000, 'the requested rotation', 200);
  expect((await statusJson()).keys.find((k) => k.state === 'active')!.kid).toBe(activeKid);
});

test('rotate --wait waits until the new key signs (a key set whose verifiers cache the JWKS for a second)', async () => {
  await stack.keySets.start(FAST_KEY_SET, { ...DEFAULT_POLICY, jwksMaxAge: '1s', prepublish: '1s' });
  const before = await stack.keySets.waitForActiveKid(FAST_KEY_SET);
  const run = await keyturn('rotate', FAST_KEY_SET, '--reason', 'drill', '--wait');
  expect(run).toMatchObject({ code: 0, err: '' });
  const [, kid] = /rotated: (\S+) is active; (\S+) verifies/.exec(run.out) ?? [];
  expect(run.out).not.toContain('warning');
  expect(kid).not.toBe(before);
  expect(await stack.keySets.waitForActiveKid(FAST_KEY_SET, 1_000)).toBe(kid);
});

test('revoke refuses without a reason before contacting anything, refuses an unknown kid, and revokes', async () => {
  // An address nobody listens on: had the command connected, it would say so instead.
  const nowhere = `127.0.0.1:${await freePort()}`;
  expect(await keyturn('revoke', KEY_SET, firstKid, '--address', nowhere)).toEqual({
    code: 1,
    out: '',
    err: 'keyturn: revoking a key needs a reason: --reason <text> (it goes into the audit trail)\n',
  });
  expect((await keyturn('revoke', KEY_SET, firstKid, '--reason', '  ', '--address', nowhere)).err).toMatch(
    /^keyturn: revoking a key needs a reason/,
  );

  expect(await keyturn('revoke', KEY_SET, 'no-such-kid', '--reason', 'test')).toEqual({
    code: 1,
    out: '',
    err: `keyturn: key set "${KEY_SET}" has no live key "no-such-kid"; \`keyturn status ${KEY_SET}\` lists its keys\n`,
  });

  const run = await keyturn('revoke', KEY_SET, firstKid, '--reason', 'leaked in a log', '--json');
  expect(run).toMatchObject({ code: 0, err: '' });
  expect(JSON.parse(run.out)).toEqual({ id: KEY_SET, revokedKid: firstKid, previousState: 'grace', activeKid });
  expect((await statusJson()).keys.map((k) => k.kid)).not.toContain(firstKid);

  const human = await keyturn('revoke', KEY_SET, activeKid, '--reason', 'drill');
  expect(human.out).toMatch(
    new RegExp(`^revoked ${activeKid} of key set "${KEY_SET}" \\(it was active\\); active key now (\\S+)\\n$`),
  );
  activeKid = (await statusJson()).keys.find((k) => k.state === 'active')!.kid;
});

test('pause and resume show in status', async () => {
  expect((await keyturn('pause', KEY_SET)).err).toMatch(/^keyturn: pausing a key set needs a reason/);
  expect(await keyturn('pause', KEY_SET, '--reason', 'maintenance window')).toMatchObject({
    code: 0,
    out: expect.stringContaining('paused'),
  });
  await waitFor(async () => ((await statusJson()).paused ? true : undefined), 5_000, 'the pause', 100);
  expect((await statusJson()).paused).toEqual({ reason: 'maintenance window', since: ISO });
  expect((await keyturn('status', KEY_SET)).out).toMatch(/^paused: since .* UTC: maintenance window$/m);
  expect((await keyturn('status')).out).toMatch(
    new RegExp(`^${KEY_SET}\\s+active ${activeKid}  next: .*  PAUSED: maintenance window$`, 'm'),
  );

  process.env.KEYTURN_ACTOR = 'change-bot (CHG-42)';
  try {
    expect(await keyturn('resume', KEY_SET)).toMatchObject({ code: 0, out: `key set "${KEY_SET}" resumed\n`, err: '' });
  } finally {
    delete process.env.KEYTURN_ACTOR;
  }
  await waitFor(async () => ((await statusJson()).paused === null ? true : undefined), 5_000, 'the resume', 100);
  // Both on the record, with who asked: the OS user, or KEYTURN_ACTOR where set.
  const actions = (await readAuditTrail(db.pool, KEY_SET)).filter((e) => e.event === 'paused' || e.event === 'resumed');
  expect(actions.map((e) => [e.event, e.actor, e.reason])).toEqual([
    ['paused', expect.stringMatching(/ \(keyturn CLI\)$/), 'maintenance window'],
    ['resumed', 'change-bot (CHG-42)', 'resumed'],
  ]);
});

test('verify exits 0 while the invariants hold and 1 with the violation once the database is tampered with', async () => {
  const healthy = await keyturn('verify');
  expect(healthy).toMatchObject({ code: 0, err: '' });
  expect(healthy.out).toMatch(new RegExp(`^ok   ${KEY_SET}$`, 'm'));
  expect(JSON.parse((await keyturn('verify', KEY_SET, '--json')).out)).toEqual({
    ok: true,
    keySets: [{ id: KEY_SET, ok: true, violations: [], problem: null }],
  });

  await db.pool.query(`UPDATE signing_keys SET demoted_at = now() WHERE key_set_id = $1 AND kid = $2`, [
    KEY_SET,
    activeKid,
  ]);
  try {
    const broken = await keyturn('verify', KEY_SET);
    expect(broken).toEqual({
      code: 1,
      out: `FAIL ${KEY_SET}\n  TIME_MISMATCH: key ${activeKid}: demotedAt differ between the workflow and PostgreSQL\n`,
      err: 'keyturn: 1 invariant violation(s) in 1 of 1 key set(s)\n',
    });
    const json = await keyturn('verify', '--json');
    expect(json.code).toBe(1);
    expect(JSON.parse(json.out)).toMatchObject({
      ok: false,
      keySets: expect.arrayContaining([
        expect.objectContaining({
          id: KEY_SET,
          ok: false,
          violations: [expect.objectContaining({ code: 'TIME_MISMATCH', kid: activeKid })],
        }),
      ]),
    });
  } finally {
    await db.pool.query(`UPDATE signing_keys SET demoted_at = NULL WHERE key_set_id = $1 AND kid = $2`, [
      KEY_SET,
      activeKid,
    ]);
  }
  expect((await keyturn('verify', KEY_SET)).code).toBe(0);
});

test('verify fails with KID_MISMATCH once a stored public key no longer hashes to its kid', async () => {
  const other = await generateSigningKey('ES256');
  const { rows } = await db.pool.query<{ public_jwk: object }>(
    'SELECT public_jwk FROM signing_keys WHERE key_set_id = $1 AND kid = $2',
    [KEY_SET, activeKid],
  );
  // Another key's public members under the active key's kid, as an edit of the row would leave them.
  await db.pool.query('UPDATE signing_keys SET public_jwk = $3 WHERE key_set_id = $1 AND kid = $2', [
    KEY_SET,
    activeKid,
    JSON.stringify({ ...other.publicJwk, kid: activeKid }),
  ]);
  try {
    expect(await keyturn('verify', KEY_SET)).toEqual({
      code: 1,
      out: `FAIL ${KEY_SET}\n  KID_MISMATCH: key ${activeKid} (active): its stored public key's RFC 7638 thumbprint is ${other.kid}, not its kid\n`,
      err: 'keyturn: 1 invariant violation(s) in 1 of 1 key set(s)\n',
    });
  } finally {
    await db.pool.query('UPDATE signing_keys SET public_jwk = $3 WHERE key_set_id = $1 AND kid = $2', [
      KEY_SET,
      activeKid,
      JSON.stringify(rows[0].public_jwk),
    ]);
  }
  expect((await keyturn('verify', KEY_SET)).code).toBe(0);
});

test('status without an id lists key sets from PostgreSQL, or from Temporal visibility without a database', async () => {
  const fromDatabase = await keyturn('status', '--json');
  expect(fromDatabase).toMatchObject({ code: 0, err: '' });
  expect(JSON.parse(fromDatabase.out)).toEqual(
    expect.arrayContaining([expect.objectContaining({ id: KEY_SET, keys: expect.any(Array) })]),
  );

  delete process.env.DATABASE_URL; // the instance file names no database either: it came from DATABASE_URL
  try {
    const fromTemporal = await keyturn('status', '--data-dir', dataDir);
    expect(fromTemporal).toMatchObject({ code: 0, err: '' });
    expect(fromTemporal.out).toMatch(
      new RegExp(`^${KEY_SET}\\s+active ${activeKid}  next: \\w.* at .* UTC \\(in `, 'm'),
    );
  } finally {
    process.env.DATABASE_URL = db.url;
  }
});

test('an unknown key set, a bad option and an unknown namespace fail with one line', async () => {
  const unknown = `keyturn: no key set "nope": apply it first or check --namespace\n`;
  expect(await keyturn('status', 'nope')).toEqual({ code: 1, out: '', err: unknown });
  expect(await keyturn('rotate', 'nope')).toEqual({ code: 1, out: '', err: unknown });
  expect(await keyturn('pause', 'nope', '--reason', 'x')).toEqual({ code: 1, out: '', err: unknown });
  expect(await keyturn('verify', 'nope')).toEqual({ code: 1, out: '', err: unknown });
  expect((await keyturn('status', KEY_SET, '--address', 'localhost')).err).toBe(
    'keyturn: --address must be host:port, e.g. localhost:7233\n',
  );
  expect((await keyturn('status', KEY_SET, '--namespace', 'nowhere')).err).toMatch(
    /^keyturn: Temporal has no namespace "nowhere": check --namespace/,
  );
});

test('an unreachable server fails within seconds with one line', async () => {
  const port = await freePort();
  const started = Date.now();
  const run = await keyturn('status', KEY_SET, '--address', `127.0.0.1:${port}`);
  expect(Date.now() - started).toBeLessThan(8_000);
  expect(run.code).toBe(1);
  expect(run.err).toMatch(
    new RegExp(
      `^keyturn: cannot reach Temporal at 127\\.0\\.0\\.1:${port} \\(from --address\\): (connection refused|no answer within 5 seconds)\\. Start one with \`keyturn dev\`[^\\n]*\\n$`,
    ),
  );

  process.env.TEMPORAL_ADDRESS = `127.0.0.1:${port}`;
  try {
    expect((await keyturn('rotate', KEY_SET)).err).toMatch(
      /^keyturn: cannot reach Temporal at .* \(from TEMPORAL_ADDRESS\): /,
    );
  } finally {
    delete process.env.TEMPORAL_ADDRESS;
  }
});
