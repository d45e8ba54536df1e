import { randomBytes, randomUUID } from 'node:crypto';
import { Pool } from 'pg';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { hashAuditEvent } from '../../src/store/audit-chain';
import { logAuditEvents } from '../../src/observability/audit-log-lines';
import {
  appendAuditEvent,
  chainUnchainedEvents,
  readAuditTrail,
  verifyAuditTrail,
  type AuditEventKind,
} from '../../src/store/audit-log';
import { inTransaction } from '../../src/store/transaction';
import { KeyStore, type KeyChange } from '../../src/store/key-store';
import { loadMigrations, migrate } from '../../src/store/migrate';
import { KeySetDriver, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { capturingLogger } from '../helpers/logs';
import { randomKekRing } from '../helpers/key-set-worker';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';

// The audit trail's hash chain against a real PostgreSQL: every writer chains, `verifyAuditTrail`
// finds an edited, deleted or truncated trail and names the row, and rows older than the chain are chained by the migration.

let db: TestDatabase;
let store: KeyStore;

beforeAll(async () => {
  db = await createTestDatabase();
  store = new KeyStore(db.pool, randomKekRing());
});
afterAll(async () => {
  await db?.drop();
});

const change = (keySetId: string, reason: string, more: Partial<KeyChange> = {}): KeyChange => ({
  operationId: randomUUID(),
  keySetId,
  trigger: 'manual',
  actor: 'test',
  reason,
  ...more,
});

/** A key set with a few events: registered, then two rotations (generated, promoted, generated, demoted, promoted). */
async function keySetWithEvents(prefix: string): Promise<string> {
  const keySet = await KeySetDriver.register(store, uniqueKeySetId(prefix), testPolicy());
  await keySet.rotate();
  await keySet.rotate();
  return keySet.keySetId;
}

async function verifyOne(keySetId: string) {
  const [result] = await verifyAuditTrail(db.pool, keySetId);
  return result;
}

const rowId = async (keySetId: string, seq: number): Promise<number> =>
  Number(
    (await db.pool.query('SELECT id FROM audit_events WHERE key_set_id = $1 AND seq = $2', [keySetId, seq])).rows[0].id,
  );

/** Each event's seq, links and hash are what the chain says they must be, and the head names the last. */
async function expectChained(keySetId: string): Promise<void> {
  const trail = await readAuditTrail(db.pool, keySetId);
  let previous: string | null = null;
  trail.forEach((e, index) => {
    expect(e).toMatchObject({ seq: index + 1, prevHash: previous });
    expect(e.hash).toBe(hashAuditEvent({ ...e, occurredAt: e.at, seq: index + 1, prevHash: previous }));
    previous = e.hash;
  });
  const { rows } = await db.pool.query('SELECT audit_head_seq, audit_head_hash FROM key_sets WHERE id = $1', [
    keySetId,
  ]);
  expect(rows[0]).toEqual({ audit_head_seq: String(trail.length), audit_head_hash: previous });
}

test('every kind of change is chained, and the chain verifies', async () => {
  const keySetId = uniqueKeySetId('every-kind');
  const register = (policy = DEFAULT_POLICY, inService = true) =>
    store.registerKeySet({ keySetId, trigger: 'bootstrap', actor: 'test', reason: 'apply' }, policy, { inService });
  const windows = { tokenTtlMs: 3_600_000, demotedGraceMs: 60_000 };
  await register();
  await register({ ...DEFAULT_POLICY, rotationPeriod: '60d' });
  const first = await store.addNextKey(change(keySetId, 'first'), 'ES256');
  await store.promoteNextKey(change(keySetId, 'first'), first.kid, windows);
  const second = await store.addNextKey(change(keySetId, 'second'), 'ES256');
  await store.markListed(change(keySetId, 'listed'), second.kid, { waitMs: 60_000, notBefore: 0, urls: [] });
  await store.promoteNextKey(change(keySetId, 'second'), second.kid, windows);
  await store.retireKey(change(keySetId, 'grace over'), first.kid);
  await store.destroyKey(change(keySetId, 'retirement over'), first.kid);
  await store.revokeKey(change(keySetId, 'leaked', { trigger: 'revocation' }), second.kid);
  await store.withdrawKey(
    change(keySetId, 'algorithm changed'),
    (await store.addNextKey(change(keySetId, 'third'), 'ES256')).kid,
  );
  await store.recordPolicy(change(keySetId, 'longer grace'), { ...DEFAULT_POLICY, gracePeriod: '6d' }, []);
  await store.recordOperatorAction(change(keySetId, 'freeze'), 'paused');
  await store.recordOperatorAction(change(keySetId, 'thaw'), 'resumed');
  await store.recordOperatorAction(change(keySetId, 'drill'), 'rotation_requested');
  const fourth = await store.addNextKey(change(keySetId, 'fourth'), 'ES256');
  await store.windDown(change(keySetId, 'decommissioned'), [{ kid: fourth.kid, graceMs: 60_000 }]);
  await store.recommission(change(keySetId, 'listed again'));

  const events = (await readAuditTrail(db.pool, keySetId)).map((e) => e.event);
  const everyKind: AuditEventKind[] = [
    'registered',
    'policy_changed',
    'generated',
    'published',
    'promoted',
    'demoted',
    'withdrawn',
    'retired',
    'destroyed',
    'revoked',
    'paused',
    'resumed',
    'rotation_requested',
    'decommissioned',
    'recommissioned',
  ];
  expect(new Set(events)).toEqual(new Set(everyKind));
  await expectChained(keySetId);
  expect(await verifyOne(keySetId)).toEqual({
    keySetId,
    events: events.length,
    head: { seq: events.length, hash: expect.stringMatching(/^[0-9a-f]{64}$/) },
    problem: null,
  });
});

test('a replayed operation or a refused change adds nothing to the chain', async () => {
  const keySetId = await keySetWithEvents('replay');
  const before = await verifyOne(keySetId);
  const c = change(keySetId, 'once');
  await store.addNextKey(c, 'ES256');
  await store.addNextKey(c, 'ES256');
  await expect(store.retireKey(change(keySetId, 'no such key'), 'nope')).rejects.toMatchObject({
    code: 'ERR_KID_UNKNOWN',
  });
  expect(await verifyOne(keySetId)).toMatchObject({ events: before.events + 1, problem: null });
});

test('each committed event is also one info-level JSON log line with stable fields; a rolled-back one is not', async () => {
  const log = capturingLogger();
  const stop = logAuditEvents(log.logger);
  let keySetId: string;
  try {
    keySetId = await keySetWithEvents('logged');
    await inTransaction(db.pool, async (tx) => {
      await appendAuditEvent(tx, {
        keySetId,
        event: 'paused',
        trigger: 'manual',
        actor: 'test',
        reason: 'rolled back',
        at: Date.now(),
      });
      throw new Error('roll back');
    }).catch(() => undefined);
  } finally {
    stop();
  }
  const lines = log
    .text()
    .trim()
    .split('\n')
    .map(
      (line) => JSON.parse(line) as { level: number; msg: string; keySetId: string; audit: Record<string, unknown> },
    );
  const trail = await readAuditTrail(db.pool, keySetId);
  expect(lines.map((l) => [l.level, l.msg, l.keySetId])).toEqual(trail.map(() => [30, 'audit event', keySetId]));
  expect(lines.map((l) => l.audit)).toEqual(
    trail.map((e) => ({
      keySetId,
      seq: e.seq,
      hash: e.hash,
      event: e.event,
      kid: e.kid,
      fromState: e.fromState,
      toState: e.toState,
      trigger: e.trigger,
      actor: e.actor,
      reason: e.reason,
      operationId: e.operationId,
      occurredAt: new Date(e.at).toISOString(),
      details: e.details,
      prevHash: e.prevHash,
    })),
  );
  // No key material in them, even though the events are about keys.
  expect(log.text()).not.toMatch(/"d":|privateJwk|BEGIN PRIVATE/);
});

describe('tampering is detected and the row named', () => {
  test("an edited reason: that event's hash no longer matches", async () => {
    const keySetId = await keySetWithEvents('edit');
    await db.pool.query(`UPDATE audit_events SET reason = 'routine' WHERE key_set_id = $1 AND seq = 3`, [keySetId]);
    const id = await rowId(keySetId, 3);
    expect((await verifyOne(keySetId)).problem).toEqual({
      kind: 'edited',
      seq: 3,
      id,
      message: expect.stringContaining(
        `audit event seq 3 (row id ${id}) was edited: its hash does not match its contents; compare`,
      ),
    });
  });

  test('edited details (jsonb) and an edited time are caught too', async () => {
    const keySetId = await keySetWithEvents('edit-details');
    await db.pool.query(
      `UPDATE audit_events SET details = jsonb_set(details, '{alg}', '"RS256"') WHERE key_set_id = $1 AND seq = 2`,
      [keySetId],
    );
    expect((await verifyOne(keySetId)).problem).toMatchObject({ kind: 'edited', seq: 2 });

    const other = await keySetWithEvents('edit-time');
    await db.pool.query(
      `UPDATE audit_events SET occurred_at = occurred_at - interval '1 day' WHERE key_set_id = $1 AND seq = 4`,
      [other],
    );
    expect((await verifyOne(other)).problem).toMatchObject({ kind: 'edited', seq: 4 });
  });

  test('an event rewritten with a freshly computed hash: its successor gives it away', async () => {
    const keySetId = await keySetWithEvents('rehash');
    const [, , third] = await readAuditTrail(db.pool, keySetId);
    const forged = hashAuditEvent({ ...third, occurredAt: third.at, seq: 3, reason: 'routine' });
    await db.pool.query(`UPDATE audit_events SET reason = 'routine', hash = $2 WHERE id = $1`, [third.id, forged]);
    expect((await verifyOne(keySetId)).problem).toMatchObject({
      kind: 'edited',
      seq: 3,
      id: third.id,
      message: expect.stringContaining('seq 4'),
    });
  });

  test('a deleted event in the middle: the gap is named', async () => {
    const keySetId = await keySetWithEvents('delete-middle');
    const after = await rowId(keySetId, 4);
    await db.pool.query('DELETE FROM audit_events WHERE key_set_id = $1 AND seq = 3', [keySetId]);
    expect((await verifyOne(keySetId)).problem).toEqual({
      kind: 'deleted',
      seq: 4,
      id: after,
      message: expect.stringContaining(`audit event seq 3 is missing before seq 4 (row id ${after}): deleted`),
    });
  });

  test('a deleted last event: the head on the key set row still names it', async () => {
    const keySetId = await keySetWithEvents('delete-last');
    const { events } = await verifyOne(keySetId);
    await db.pool.query('DELETE FROM audit_events WHERE key_set_id = $1 AND seq = $2', [keySetId, events]);
    expect((await verifyOne(keySetId)).problem).toEqual({
      kind: 'head_mismatch',
      message: expect.stringMatching(
        new RegExp(
          `^the audit trail ends at seq ${events - 1} but the key set's head records seq ${events} \\(hash [0-9a-f]{12}…\\): the newest 1 event\\(s\\) were deleted`,
        ),
      ),
    });
  });

  test('an event without a hash cannot be written at all', async () => {
    const keySetId = await keySetWithEvents('unchained');
    await expect(
      db.pool.query(
        `INSERT INTO audit_events (key_set_id, event, trigger, actor, reason, occurred_at) VALUES ($1, 'promoted', 'manual', 'mallory', 'x', now())`,
        [keySetId],
      ),
    ).rejects.toMatchObject({ code: '23514', constraint: 'audit_events_chained' });
    await expect(
      db.pool.query('UPDATE audit_events SET hash = NULL WHERE key_set_id = $1', [keySetId]),
    ).rejects.toMatchObject({ code: '23514' });
  });

  test('verifying every key set reports the broken one and passes the others', async () => {
    const intact = await keySetWithEvents('intact');
    const broken = await keySetWithEvents('broken');
    await db.pool.query(`UPDATE audit_events SET actor = 'someone else' WHERE key_set_id = $1 AND seq = 1`, [broken]);
    const results = await verifyAuditTrail(db.pool);
    expect(results.find((r) => r.keySetId === intact)).toMatchObject({ events: 6, problem: null });
    expect(results.find((r) => r.keySetId === broken)).toMatchObject({
      events: 6,
      problem: { kind: 'edited', seq: 1 },
    });
    expect(results.map((r) => r.keySetId)).toEqual([...results.map((r) => r.keySetId)].sort());
  });
});

test('an unregistered key set is an error naming it, for reading and for verifying', async () => {
  const notFound = {
    code: 'ERR_KEYSET_NOT_FOUND',
    keySetId: 'nobody',
    message: expect.stringContaining('key set "nobody" is not registered'),
  };
  await expect(readAuditTrail(db.pool, 'nobody')).rejects.toMatchObject(notFound);
  await expect(verifyAuditTrail(db.pool, 'nobody')).rejects.toMatchObject(notFound);
});

test('concurrent changes to two key sets, and to one, keep every chain valid', async () => {
  const a = await KeySetDriver.register(store, uniqueKeySetId('concurrent-a'), testPolicy());
  const b = await KeySetDriver.register(store, uniqueKeySetId('concurrent-b'), testPolicy());
  const rotations = async (keySet: KeySetDriver) => {
    for (let i = 0; i < 5; i += 1) await keySet.rotate();
  };
  // Policy changes race with the rotations of their own key set: all of them queue on its row lock.
  const policyChanges = (keySet: KeySetDriver) =>
    ['2h', '3h', '4h'].map((rotationPeriod) =>
      store.registerKeySet(
        { keySetId: keySet.keySetId, trigger: 'manual', actor: 'test', reason: rotationPeriod },
        { ...testPolicy(), rotationPeriod },
        { inService: true },
      ),
    );
  await Promise.all([rotations(a), rotations(b), ...policyChanges(a), ...policyChanges(b)]);

  for (const keySet of [a, b]) {
    await expectChained(keySet.keySetId);
    expect(await verifyOne(keySet.keySetId)).toMatchObject({ events: 1 + 5 * 2 + 4 + 3, problem: null });
  }
});

describe('events written before the chain existed', () => {
  const name = `keyturn_prechain_${randomBytes(6).toString('hex')}`;
  let admin: Pool;
  let pool: Pool;

  beforeAll(async () => {
    admin = new Pool({ connectionString: process.env.KEYTURN_TEST_DATABASE_URL, max: 1 });
    await admin.query(`CREATE DATABASE ${name}`);
    const url = new URL(process.env.KEYTURN_TEST_DATABASE_URL!);
    url.pathname = `/${name}`;
    pool = new Pool({ connectionString: url.toString(), max: 3 });
  });
  afterAll(async () => {
    pool.on('error', () => undefined);
    await pool?.end();
    await admin?.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin?.end();
  });

  /** An event as keyturn wrote them before migration 3: no seq, no hash. */
  const legacyEvent = (keySetId: string, event: string, reason: string, details: object, at: string) =>
    pool.query(
      `INSERT INTO audit_events (key_set_id, kid, event, from_state, to_state, trigger, actor, reason, operation_id, occurred_at, details)
       VALUES ($1, $2, $3, NULL, NULL, 'scheduled', 'keyturn', $4, $5, $6, $7)`,
      [
        keySetId,
        event === 'registered' ? null : `kid-${reason}`,
        event,
        reason,
        event === 'registered' ? null : randomUUID(),
        at,
        JSON.stringify(details),
      ],
    );

  test('are chained by the migration, in id order, and then verify; later changes extend the chain', async () => {
    const before = (await loadMigrations()).filter((m) => m.version < 3);
    expect(await migrate(pool, before)).toEqual([1, 2]);
    for (const id of ['old-a', 'old-b'])
      await pool.query('INSERT INTO key_sets (id, policy) VALUES ($1, $2)', [id, JSON.stringify(DEFAULT_POLICY)]);
    // Interleaved key sets, and details whose member order jsonb changes, with numbers, nesting and non-ASCII text.
    await legacyEvent('old-a', 'registered', 'apply', { policy: DEFAULT_POLICY }, '2024-01-01T00:00:00.123Z');
    await legacyEvent(
      'old-b',
      'registered',
      'apply',
      { policy: { ...DEFAULT_POLICY, algorithm: 'RS256' } },
      '2024-01-02T00:00:00Z',
    );
    await legacyEvent(
      'old-a',
      'generated',
      'a1',
      { kekId: 'kek-Ω', alg: 'ES256', n: [1.5, 1e21, -0.25], '10': { z: 1, a: 2 } },
      '2024-01-03T00:00:00Z',
    );
    await legacyEvent('old-a', 'promoted', 'a1', {}, '2024-01-04T00:00:00Z');
    await legacyEvent('old-b', 'generated', 'b1', { alg: 'RS256', kekId: 'k1' }, '2024-01-05T00:00:00Z');

    const applied = await migrate(pool);
    expect(applied[0]).toBe(3);

    const results = await verifyAuditTrail(pool);
    expect(results).toEqual([
      { keySetId: 'old-a', events: 3, head: { seq: 3, hash: expect.any(String) }, problem: null },
      { keySetId: 'old-b', events: 2, head: { seq: 2, hash: expect.any(String) }, problem: null },
    ]);
    expect((await readAuditTrail(pool, 'old-a')).map((e) => [e.event, e.seq])).toEqual([
      ['registered', 1],
      ['generated', 2],
      ['promoted', 3],
    ]);

    // Idempotent: a second pass finds nothing to chain and changes no hash.
    const client = await pool.connect();
    try {
      expect(await chainUnchainedEvents(client)).toBe(0);
    } finally {
      client.release();
    }
    expect(await migrate(pool)).toEqual([]);
    expect(await verifyAuditTrail(pool)).toEqual(results);

    // New events continue the migrated chain.
    const legacyStore = new KeyStore(pool, randomKekRing());
    await legacyStore.addNextKey(change('old-b', 'after the upgrade'), 'ES256');
    expect(await verifyAuditTrail(pool, 'old-b')).toEqual([
      { keySetId: 'old-b', events: 3, head: { seq: 3, hash: expect.any(String) }, problem: null },
    ]);
    expect((await readAuditTrail(pool, 'old-b')).at(-1)).toMatchObject({
      seq: 3,
      prevHash: results[1].head.hash,
      reason: 'after the upgrade',
    });
  });
});
