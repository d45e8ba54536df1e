import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { KeyStore, type KeyChange } from '../../src/store/key-store';
import { randomKekRing } from '../helpers/key-set-worker';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { runKeyturn as keyturn } from '../helpers/cli';

// `keyturn audit` in-process through runCli against a database of this file's own, found through
// DATABASE_URL. The audit commands need neither Temporal nor a KEK: neither is configured here.

const DAY = 86_400_000;
const NOW = Date.now();
/** Whole seconds, so the table's times (to the second) can be written out. */
const daysAgo = (days: number) => Math.floor((NOW - days * DAY) / 1000) * 1000;
const utc = (ms: number) => new Date(ms).toISOString().slice(0, 19).replace('T', ' ');

let db: TestDatabase;
let store: KeyStore;
let emptyDataDir: string;
let kids: { first: string; second: string };
const savedEnv = { ...process.env };
const KEY_SET = 'audited';

/** The store stamps each change with its clock: this one says `days` ago, as it is made. */
let clockNow = Date.now();
const change = (keySetId: string, days: number, actor: string, reason: string): KeyChange => {
  clockNow = daysAgo(days);
  return { operationId: randomUUID(), keySetId, trigger: 'manual', actor, reason };
};
const SEED_WINDOWS = { tokenTtlMs: 3_600_000, demotedGraceMs: 5 * 86_400_000 };

beforeAll(async () => {
  db = await createTestDatabase();
  store = new KeyStore(db.pool, randomKekRing(), { clock: () => clockNow });
  emptyDataDir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-audit-cli-'));
  clockNow = daysAgo(10);
  await store.registerKeySet(
    { keySetId: KEY_SET, trigger: 'bootstrap', actor: 'deploy', reason: 'apply' },
    { ...DEFAULT_POLICY },
    { inService: true },
  );
  const first = await store.addNextKey(change(KEY_SET, 10, 'keyturn', 'bootstrap'), 'ES256');
  await store.promoteNextKey(change(KEY_SET, 10, 'keyturn', 'bootstrap'), first.kid, SEED_WINDOWS);
  const second = await store.addNextKey(change(KEY_SET, 5, 'keyturn', 'scheduled'), 'ES256');
  await store.promoteNextKey(
    change(KEY_SET, 1, 'alice (keyturn CLI)', 'drill\n\u001b[2Jcleared'),
    second.kid,
    SEED_WINDOWS,
  );
  kids = { first: first.kid, second: second.kid };
  // A key set that happens to be named like the subcommand.
  clockNow = daysAgo(2);
  await store.registerKeySet(
    { keySetId: 'verify', trigger: 'bootstrap', actor: 'deploy', reason: 'apply' },
    { ...DEFAULT_POLICY },
    { inService: true },
  );

  for (const name of ['TEMPORAL_ADDRESS', 'TEMPORAL_NAMESPACE', 'KEYTURN_KEK', 'KEYTURN_DEBUG'])
    delete process.env[name];
  Object.assign(process.env, { DATABASE_URL: db.url, KEYTURN_DATA_DIR: emptyDataDir, LOG_LEVEL: 'silent' });
});

afterAll(async () => {
  process.env = { ...savedEnv };
  await db?.drop();
  await rm(emptyDataDir, { recursive: true, force: true });
});

test('audit <id> prints the trail as a table, times in UTC, free text on one line', async () => {
  const { first, second } = kids;
  const run = await keyturn('audit', KEY_SET);
  expect(run).toMatchObject({ code: 0, err: '' });
  const lines = run.out.trimEnd().split('\n');
  expect(lines[0]).toBe(`audit trail of key set ${KEY_SET}: 6 event(s)`);
  expect(lines.slice(1).map((line) => line.trim().split(/\s{2,}/))).toEqual([
    ['TIME (UTC)', 'SEQ', 'EVENT', 'KID', 'FROM→TO', 'TRIGGER', 'ACTOR', 'REASON'],
    [utc(daysAgo(10)), '1', 'registered', '-', '-', 'bootstrap', 'deploy', 'apply'],
    [utc(daysAgo(10)), '2', 'generated', first, '→next', 'manual', 'keyturn', 'bootstrap'],
    [utc(daysAgo(10)), '3', 'promoted', first, 'next→active', 'manual', 'keyturn', 'bootstrap'],
    [utc(daysAgo(5)), '4', 'generated', second, '→next', 'manual', 'keyturn', 'scheduled'],
    [utc(daysAgo(1)), '5', 'demoted', first, 'active→grace', 'manual', 'alice (keyturn CLI)', 'drill [2Jcleared'],
    [utc(daysAgo(1)), '6', 'promoted', second, 'next→active', 'manual', 'alice (keyturn CLI)', 'drill [2Jcleared'],
  ]);
  // Columns line up: each kid starts under the header's KID.
  const kidColumn = lines[1].indexOf('KID');
  for (const line of lines.slice(3)) expect([first, second]).toContain(line.slice(kidColumn, kidColumn + first.length));
});

test('audit <id> --json prints the events as an array with ISO times, details and hashes', async () => {
  const run = await keyturn('audit', KEY_SET, '--json');
  expect(run).toMatchObject({ code: 0, err: '' });
  const events = JSON.parse(run.out) as Record<string, unknown>[];
  expect(events).toHaveLength(6);
  expect(events[0]).toEqual({
    id: expect.any(Number),
    keySetId: KEY_SET,
    seq: 1,
    at: new Date(daysAgo(10)).toISOString(),
    event: 'registered',
    kid: null,
    fromState: null,
    toState: null,
    trigger: 'bootstrap',
    actor: 'deploy',
    reason: 'apply',
    operationId: null,
    details: { policy: DEFAULT_POLICY },
    prevHash: null,
    hash: expect.stringMatching(/^[0-9a-f]{64}$/),
  });
  expect(events[1]).toMatchObject({
    seq: 2,
    event: 'generated',
    kid: kids.first,
    toState: 'next',
    prevHash: events[0].hash,
    details: { alg: 'ES256' },
  });
  expect(events.at(-1)).toMatchObject({ seq: 6, reason: 'drill\n\u001b[2Jcleared' });
  // Kids, reasons and ids only: no key material.
  expect(run.out).not.toMatch(/"(d|p|q|k|priv)":/);
});

test('--since takes a duration back from now or an ISO 8601 time, UTC unless it has a zone', async () => {
  const seqs = async (since: string) => {
    const run = await keyturn('audit', KEY_SET, '--since', since, '--json');
    expect(run).toMatchObject({ code: 0, err: '' });
    return (JSON.parse(run.out) as { seq: number }[]).map((e) => e.seq);
  };
  expect(await seqs('7d')).toEqual([4, 5, 6]);
  expect(await seqs('48h')).toEqual([5, 6]);
  const oneDayAgo = daysAgo(1);
  expect(await seqs(new Date(oneDayAgo).toISOString())).toEqual([5, 6]);
  expect(await seqs(new Date(oneDayAgo + 1).toISOString())).toEqual([]);
  expect(await seqs(new Date(oneDayAgo).toISOString().slice(0, 10))).toEqual([5, 6]);
  // The same instant written two hours ahead with its zone; without the zone, that time is read as UTC.
  const twoHoursAhead = new Date(oneDayAgo + 2 * 3_600_000).toISOString().slice(0, 19);
  expect(await seqs(`${twoHoursAhead}+02:00`)).toEqual([5, 6]);
  expect(await seqs(twoHoursAhead)).toEqual([]);

  const table = await keyturn('audit', KEY_SET, '--since', '1h');
  expect(table).toMatchObject({ code: 0, err: '' });
  expect(table.out).toMatch(
    new RegExp(`^no audit events for key set ${KEY_SET} since \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC\\n$`),
  );

  for (const bad of ['yesterday', '7 days', '2025-13-01', '2025-01-31 12:00']) {
    expect(await keyturn('audit', KEY_SET, '--since', bad)).toEqual({
      code: 1,
      out: '',
      err: 'keyturn: --since must be an ISO 8601 time (2025-01-31, 2025-01-31T12:00:00Z; UTC when no zone is given) or a duration back from now (7d, 12h)\n',
    });
  }
});

test('audit verify: ok with the event count and head; exit 1 naming the key set and row once a row is edited', async () => {
  const healthy = await keyturn('audit', 'verify');
  expect(healthy).toMatchObject({ code: 0, err: '' });
  expect(healthy.out).toMatch(
    new RegExp(
      `^ok   ${KEY_SET} \\(6 event\\(s\\), head [0-9a-f]{12}\\)\\nok   verify \\(1 event\\(s\\), head [0-9a-f]{12}\\)\\n$`,
    ),
  );
  const json = JSON.parse((await keyturn('audit', 'verify', KEY_SET, '--json')).out) as unknown;
  expect(json).toEqual({
    ok: true,
    keySets: [
      {
        id: KEY_SET,
        ok: true,
        events: 6,
        head: { seq: 6, hash: expect.stringMatching(/^[0-9a-f]{64}$/) },
        problem: null,
      },
    ],
  });

  const { rows } = await db.pool.query(
    `UPDATE audit_events SET reason = 'nothing happened' WHERE key_set_id = $1 AND seq = 6 RETURNING id`,
    [KEY_SET],
  );
  try {
    const broken = await keyturn('audit', 'verify');
    expect(broken.code).toBe(1);
    expect(broken.out.split('\n')).toEqual([
      `FAIL ${KEY_SET}: audit event seq 6 (row id ${rows[0].id}) was edited: its hash does not match its contents; ` +
        'compare audit_events with a backup and find out who had write access to the database',
      expect.stringMatching(/^ok {3}verify \(1 event\(s\), head [0-9a-f]{12}\)$/),
      '',
    ]);
    expect(broken.err).toBe(`keyturn: the audit trail of 1 of 2 key set(s) is broken: ${KEY_SET}\n`);
    const brokenJson = await keyturn('audit', 'verify', KEY_SET, '--json');
    expect(brokenJson.code).toBe(1);
    expect(JSON.parse(brokenJson.out)).toEqual({
      ok: false,
      keySets: [
        {
          id: KEY_SET,
          ok: false,
          events: 6,
          head: expect.objectContaining({ seq: 6 }),
          problem: { kind: 'edited', seq: 6, id: Number(rows[0].id), message: expect.any(String) },
        },
      ],
    });
    // Only the key set asked about is checked.
    expect(await keyturn('audit', 'verify', 'verify')).toMatchObject({ code: 0, err: '' });
  } finally {
    await db.pool.query(`UPDATE audit_events SET reason = $2 WHERE id = $1`, [rows[0].id, 'drill\n\u001b[2Jcleared']);
  }
  expect((await keyturn('audit', 'verify', KEY_SET)).code).toBe(0);
});

test('an unknown key set, a missing id and a missing database fail with one line', async () => {
  const unknown =
    'keyturn: key set "nope" is not registered, so it has no audit trail: check the id (`keyturn status` lists the key sets)\n';
  expect(await keyturn('audit', 'nope')).toEqual({ code: 1, out: '', err: unknown });
  expect(await keyturn('audit', 'verify', 'nope')).toEqual({ code: 1, out: '', err: unknown });
  expect(await keyturn('audit')).toMatchObject({
    code: 1,
    out: '',
    err: expect.stringContaining("missing required argument 'id'"),
  });

  delete process.env.DATABASE_URL;
  try {
    expect(await keyturn('audit', KEY_SET)).toEqual({
      code: 1,
      out: '',
      err: 'keyturn: the audit trail is in PostgreSQL: set DATABASE_URL, or run this beside `keyturn dev` (--data-dir)\n',
    });
  } finally {
    process.env.DATABASE_URL = db.url;
  }
});

test('a key set named verify is read with audit show', async () => {
  const run = await keyturn('audit', 'show', 'verify');
  expect(run).toMatchObject({ code: 0, err: '' });
  expect(run.out).toMatch(/^audit trail of key set verify: 1 event\(s\)\n/);
});
