import { PRIVATE_JWK_MEMBERS } from '../../src/domain/private-jwk';
import { randomUUID } from 'node:crypto';
import { Client, Pool } from 'pg';
import type { KeyState } from '../../src/domain/lifecycle';
import { DEFAULT_POLICY, type KeySetPolicy } from '../../src/domain/policy';
import { readAuditTrail } from '../../src/store/audit-log';
import { KEY_CHANGES_CHANNEL } from '../../src/store/key-set-changes';
import { KeyStore, type KeyChange } from '../../src/store/key-store';
import { loadMigrations, migrate } from '../../src/store/migrate';
import { waitFor } from '../helpers/wait';
import { randomKekRing } from '../helpers/key-set-worker';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { listKeys } from '../../src/store/stored-keys';
import { listPublishedJwks } from '../../src/store/published-keys';
import { getPolicy, listKeySets } from '../../src/store/key-set-registry';

const HOUR = 3_600_000;
const DAY = 86_400_000;
const T0 = Date.UTC(2025, 0, 1);
const at = (day: number) => T0 + day * DAY;
/** What the workflow passes with a promotion under the seed policy. */
const SEED_WINDOWS = { tokenTtlMs: HOUR, demotedGraceMs: 5 * DAY };
/** The test database refuses audit events with this reason, to show a change and its event commit together. */
const AUDIT_FAILS = 'audit insert fails';

let db: TestDatabase;
let store: KeyStore;
const kekRing = randomKekRing();
/** The store stamps each change with its clock: the tests set it to the day the change happens. */
let clockNow = T0;

beforeAll(async () => {
  db = await createTestDatabase();
  store = new KeyStore(db.pool, kekRing, { clock: () => clockNow });
  await db.pool.query(`ALTER TABLE audit_events ADD CONSTRAINT test_audit_can_fail CHECK (reason <> '${AUDIT_FAILS}')`);
});
afterAll(async () => {
  // pool.end() resolves before its connections have closed, and drop() then ends them with
  // DROP DATABASE … WITH (FORCE): a closing connection would report that as an unhandled pool error.
  db?.pool.on('error', () => undefined);
  await db?.drop();
});

let keySetCount = 0;
async function newKeySet(policy: KeySetPolicy = { ...DEFAULT_POLICY }): Promise<string> {
  const keySetId = `ks-${++keySetCount}`;
  clockNow = T0;
  await store.registerKeySet({ keySetId, trigger: 'bootstrap', actor: 'test', reason: 'set up' }, policy, {
    inService: true,
  });
  return keySetId;
}

/** A change made on `day`: the store's clock is moved there as it is made, so make it right before use. */
function change(keySetId: string, day: number, more: Partial<KeyChange> = {}): KeyChange {
  clockNow = at(day);
  return { operationId: randomUUID(), keySetId, trigger: 'scheduled', actor: 'keyturn', reason: `day ${day}`, ...more };
}

const addKey = async (keySetId: string, day: number) => (await store.addNextKey(change(keySetId, day), 'ES256')).kid;

type Walked = { keySetId: string; kid: string };
/** A fresh key set whose first key `kid` has been walked to `state` along the seed schedule. */
async function keyIn(state: KeyState): Promise<Walked> {
  const keySetId = await newKeySet();
  const kid = await addKey(keySetId, 0);
  const done = { keySetId, kid };
  if (state === 'next') return done;
  if (state === 'revoked') {
    await store.revokeKey(change(keySetId, 1, { trigger: 'revocation' }), kid);
    return done;
  }
  await store.promoteNextKey(change(keySetId, 0), kid, SEED_WINDOWS);
  if (state === 'active') return done;
  const nextKid = await addKey(keySetId, 25);
  await store.promoteNextKey(change(keySetId, 30), nextKid, SEED_WINDOWS);
  if (state === 'grace') return done;
  await store.retireKey(change(keySetId, 35), kid);
  if (state === 'retired') return done;
  await store.destroyKey(change(keySetId, 36), kid);
  return done;
}

/** What a test can see of a key set: its keys and its audit trail. */
const snapshot = async (keySetId: string) => ({
  keys: await listKeys(store.pool, keySetId),
  audit: await readAuditTrail(db.pool, keySetId),
});

async function rawKey(keySetId: string, kid: string) {
  const { rows } = await db.pool.query(
    'SELECT state, private_key IS NULL AS erased, kek_id, revocation_reason FROM signing_keys WHERE key_set_id = $1 AND kid = $2',
    [keySetId, kid],
  );
  return rows[0];
}

describe('registerKeySet', () => {
  const who = (keySetId: string, day: number) => {
    clockNow = at(day);
    return { keySetId, trigger: 'manual', actor: 'deploy', reason: 'apply' } as const;
  };
  const register = (keySetId: string, day: number, policy: KeySetPolicy, inService = true) =>
    store.registerKeySet(who(keySetId, day), policy, { inService });

  test('creates the key set and writes a registered event', async () => {
    expect(await register('reg-new', 0, { ...DEFAULT_POLICY })).toEqual([]);
    expect(await readAuditTrail(db.pool, 'reg-new')).toEqual([
      expect.objectContaining({
        event: 'registered',
        kid: null,
        operationId: null,
        ...who('reg-new', 0),
        at: at(0),
        details: { policy: DEFAULT_POLICY },
      }),
    ]);
    const { rows } = await db.pool.query('SELECT policy FROM key_sets WHERE id = $1', ['reg-new']);
    expect(rows[0].policy).toEqual(DEFAULT_POLICY);
  });

  test('registering the same policy again writes nothing (also with its fields in another order)', async () => {
    await register('reg-same', 0, { ...DEFAULT_POLICY });
    await register('reg-same', 1, { ...DEFAULT_POLICY });
    const reordered = Object.fromEntries(Object.entries(DEFAULT_POLICY).reverse()) as unknown as KeySetPolicy;
    await register('reg-same', 2, reordered);
    expect((await readAuditTrail(db.pool, 'reg-same')).map((e) => e.event)).toEqual(['registered']);
  });

  test('a changed policy is stored and writes policy_changed with the previous policy', async () => {
    const changed = { ...DEFAULT_POLICY, rotationPeriod: '60d' };
    await register('reg-changed', 0, { ...DEFAULT_POLICY });
    await register('reg-changed', 2, changed);
    expect((await readAuditTrail(db.pool, 'reg-changed')).at(-1)).toEqual(
      expect.objectContaining({
        event: 'policy_changed',
        ...who('reg-changed', 2),
        at: at(2),
        details: { policy: changed, previous: DEFAULT_POLICY },
      }),
    );
    const { rows } = await db.pool.query('SELECT policy FROM key_sets WHERE id = $1', ['reg-changed']);
    expect(rows[0].policy).toEqual(changed);
  });

  test('with a first key asked for: a new key set is registered with its first key active, in one transaction', async () => {
    const firstKey = {
      algorithm: 'EdDSA' as const,
      tokenTtlMs: HOUR,
      cause: {
        operationId: randomUUID(),
        trigger: 'bootstrap' as const,
        actor: 'keyturn',
        reason: 'no key could sign',
      },
    };
    const live = await store.registerKeySet(who('reg-first', 3), { ...DEFAULT_POLICY }, { inService: true, firstKey });
    expect(live).toEqual([
      {
        kid: expect.any(String),
        alg: 'EdDSA',
        state: 'active',
        createdAt: at(3),
        activatedAt: at(3),
        tokenTtlMs: HOUR,
      },
    ]);
    const stored = await listKeys(store.pool, 'reg-first');
    expect(stored.map((k) => [k.kid, k.state, k.hasPrivateKey, k.thumbprint === k.kid])).toEqual([
      [live[0].kid, 'active', true, true],
    ]);
    expect((await readAuditTrail(db.pool, 'reg-first')).map((e) => [e.event, e.kid, e.trigger, e.operationId])).toEqual(
      [
        ['registered', null, 'manual', null],
        ['generated', live[0].kid, 'bootstrap', firstKey.cause.operationId],
        ['promoted', live[0].kid, 'bootstrap', firstKey.cause.operationId],
      ],
    );
    // Asked again (a retried activity), the key set keeps its key and gets no other.
    expect(
      await store.registerKeySet(who('reg-first', 3), { ...DEFAULT_POLICY }, { inService: true, firstKey }),
    ).toEqual(live);
    expect(await listKeys(store.pool, 'reg-first')).toHaveLength(1);
  });

  test('returns the live keys with their timestamps, for the workflow to resume from', async () => {
    const { keySetId, kid: graceKid } = await keyIn('grace');
    const nextKid = await addKey(keySetId, 55);
    const live = await register(keySetId, 56, { ...DEFAULT_POLICY });
    const activeKid = (await listKeys(store.pool, keySetId)).find((k) => k.state === 'active')!.kid;
    expect(live).toEqual([
      {
        kid: graceKid,
        alg: 'ES256',
        state: 'grace',
        createdAt: at(0),
        activatedAt: at(0),
        tokenTtlMs: HOUR,
        demotedAt: at(30),
        graceEndsAt: at(35),
      },
      { kid: activeKid, alg: 'ES256', state: 'active', createdAt: at(25), activatedAt: at(30), tokenTtlMs: HOUR },
      { kid: nextKid, alg: 'ES256', state: 'next', createdAt: at(55) },
    ]);
  });

  test('a decommissioned key set served again by a fresh workflow is back in service, with a recommissioned event', async () => {
    const { keySetId, kid } = await keyIn('active');
    await store.windDown(change(keySetId, 3), [{ kid, graceMs: DAY }]);
    await register(keySetId, 4, { ...DEFAULT_POLICY }, false);
    expect((await listKeySets(store.pool)).find((k) => k.id === keySetId)?.decommissioned).toBe(true);
    await register(keySetId, 9, { ...DEFAULT_POLICY });
    expect((await listKeySets(store.pool)).find((k) => k.id === keySetId)?.decommissioned).toBe(false);
    expect((await readAuditTrail(db.pool, keySetId)).slice(-2).map((e) => [e.event, e.at])).toEqual([
      ['decommissioned', at(3)],
      ['recommissioned', at(9)],
    ]);
  });
});

describe('a key through its whole life', () => {
  test('next → listed → active → grace → retired → destroyed, each stamped when it happens, with its audit event', async () => {
    const keySetId = await newKeySet();
    const used: { c: KeyChange; day: number }[] = [];
    const by = (day: number, trigger: KeyChange['trigger'] = 'scheduled') => {
      const c = change(keySetId, day, { trigger, actor: `actor-${day}`, reason: `reason-${day}` });
      used.push({ c, day });
      return c;
    };

    const first = await store.addNextKey(by(0, 'bootstrap'), 'ES256');
    expect(first).toEqual({ kid: expect.any(String), alg: 'ES256', state: 'next', createdAt: at(0) });
    expect(await store.promoteNextKey(by(0, 'bootstrap'), first.kid, SEED_WINDOWS)).toEqual({
      active: { ...first, state: 'active', activatedAt: at(0), tokenTtlMs: HOUR },
      demoted: null,
    });
    const second = await store.addNextKey(by(25), 'ES256');
    const listed = await store.markListed(by(25), second.kid, {
      waitMs: 15 * 60_000,
      notBefore: 0,
      urls: ['https://cdn.example/jwks.json'],
    });
    expect(listed).toEqual({ ...second, listedAt: at(25), promotableAt: at(25) + 15 * 60_000 });
    const promotion = await store.promoteNextKey(by(30), second.kid, { tokenTtlMs: 2 * HOUR, demotedGraceMs: 6 * DAY });
    expect(promotion.active).toMatchObject({
      kid: second.kid,
      state: 'active',
      activatedAt: at(30),
      tokenTtlMs: 2 * HOUR,
      listedAt: at(25),
    });
    expect(promotion.demoted).toMatchObject({ kid: first.kid, state: 'grace', demotedAt: at(30), graceEndsAt: at(36) });
    expect(await store.retireKey(by(36), first.kid)).toMatchObject({
      kid: first.kid,
      state: 'retired',
      retiredAt: at(36),
    });
    await store.destroyKey(by(37), first.kid);

    const [k1, k2] = await listKeys(store.pool, keySetId);
    expect(k1).toMatchObject({
      kid: first.kid,
      state: 'destroyed',
      hasPrivateKey: false,
      kekId: null,
      createdAt: at(0),
    });
    expect(k1).toMatchObject({
      activatedAt: at(0),
      demotedAt: at(30),
      graceEndsAt: at(36),
      retiredAt: at(36),
      destroyedAt: at(37),
      revokedAt: null,
    });
    expect(k2).toMatchObject({
      kid: second.kid,
      state: 'active',
      hasPrivateKey: true,
      kekId: kekRing.current.id,
      activatedAt: at(30),
    });
    expect(k2.publicJwk).toMatchObject({ kid: second.kid, alg: 'ES256', kty: 'EC', use: 'sig' });
    expect(await rawKey(keySetId, first.kid)).toMatchObject({ erased: true, kek_id: null });

    const event = (i: number, kid: string, name: string, fromState: KeyState | null, toState: KeyState | null) => ({
      event: name,
      kid,
      fromState,
      toState,
      trigger: used[i].c.trigger,
      actor: used[i].c.actor,
      reason: used[i].c.reason,
      operationId: used[i].c.operationId,
      at: at(used[i].day),
    });
    const audit = await readAuditTrail(db.pool, keySetId);
    expect(audit.slice(1)).toEqual([
      expect.objectContaining(event(0, first.kid, 'generated', null, 'next')),
      expect.objectContaining(event(1, first.kid, 'promoted', 'next', 'active')),
      expect.objectContaining(event(2, second.kid, 'generated', null, 'next')),
      expect.objectContaining({
        ...event(3, second.kid, 'published', null, null),
        details: {
          urls: ['https://cdn.example/jwks.json'],
          promotableAt: new Date(at(25) + 15 * 60_000).toISOString(),
        },
      }),
      expect.objectContaining(event(4, first.kid, 'demoted', 'active', 'grace')),
      expect.objectContaining(event(4, second.kid, 'promoted', 'next', 'active')),
      expect.objectContaining(event(5, first.kid, 'retired', 'grace', 'retired')),
      expect.objectContaining(event(6, first.kid, 'destroyed', 'retired', 'destroyed')),
    ]);
    // The audit trail never holds key material.
    expect(JSON.stringify(audit)).not.toMatch(/"d":/);
  });

  test('a change is stamped once it holds the key set: a change that waited for the lock is not dated back', async () => {
    const keySetId = await newKeySet();
    const holder = await db.pool.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM key_sets WHERE id = $1 FOR UPDATE', [keySetId]);
      const adding = store.addNextKey(change(keySetId, 1), 'ES256');
      // The change waits for the lock; meanwhile the clock moves on, as a slow transaction's would.
      await waitFor(
        async () => {
          const { rows } = await db.pool.query(
            `SELECT count(*)::int AS n FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'`,
          );
          return rows[0].n > 0 ? true : undefined;
        },
        10_000,
        'the change to wait for the key set lock',
      );
      clockNow = at(2);
      await holder.query('COMMIT');
      expect((await adding).createdAt).toBe(at(2));
    } finally {
      holder.release();
    }
  });

  test('a next key that never signed is withdrawn: out of the JWKS, retired, with its event', async () => {
    const { keySetId, kid } = await keyIn('active');
    const nextKid = await addKey(keySetId, 25);
    expect(await store.withdrawKey(change(keySetId, 26, { reason: 'algorithm changed' }), nextKid)).toMatchObject({
      kid: nextKid,
      state: 'retired',
      retiredAt: at(26),
    });
    expect((await listPublishedJwks(store.pool, keySetId)).map((k) => k.kid)).toEqual([kid]);
    expect((await readAuditTrail(db.pool, keySetId)).at(-1)).toMatchObject({
      event: 'withdrawn',
      kid: nextKid,
      fromState: 'next',
      toState: 'retired',
    });
    await expect(store.withdrawKey(change(keySetId, 27), kid)).rejects.toMatchObject({
      code: 'ERR_KEY_STATE_CONFLICT',
    });
  });

  test('a policy change records the policy, the fields before and after, and the windows it lengthens', async () => {
    const { keySetId, kid } = await keyIn('grace');
    const policy = { ...DEFAULT_POLICY, gracePeriod: '9d' };
    const keys = await store.recordPolicy(
      change(keySetId, 31, { trigger: 'manual', actor: 'alice', reason: 'longer grace' }),
      policy,
      [{ kid, graceEndsAt: at(39) }],
    );
    expect(keys.find((k) => k.kid === kid)).toMatchObject({ state: 'grace', graceEndsAt: at(39) });
    expect(await getPolicy(store.pool, keySetId)).toEqual(policy);
    expect((await readAuditTrail(db.pool, keySetId)).at(-1)).toMatchObject({
      event: 'policy_changed',
      actor: 'alice',
      at: at(31),
      details: { fields: ['gracePeriod'], policy, previous: DEFAULT_POLICY, windows: [{ kid, graceEndsAt: at(39) }] },
    });
  });

  test('operator actions that change no key are on the record with who asked', async () => {
    const keySetId = await newKeySet();
    await store.recordOperatorAction(
      change(keySetId, 1, { trigger: 'manual', actor: 'bob', reason: 'change freeze' }),
      'paused',
    );
    await store.recordOperatorAction(
      change(keySetId, 2, { trigger: 'manual', actor: 'bob', reason: 'resumed' }),
      'resumed',
    );
    await store.recordOperatorAction(
      change(keySetId, 3, { trigger: 'manual', actor: 'carol', reason: 'drill' }),
      'rotation_requested',
      { immediately: false },
    );
    expect(
      (await readAuditTrail(db.pool, keySetId)).slice(1).map((e) => [e.event, e.actor, e.reason, e.at, e.details]),
    ).toEqual([
      ['paused', 'bob', 'change freeze', at(1), {}],
      ['resumed', 'bob', 'resumed', at(2), {}],
      ['rotation_requested', 'carol', 'drill', at(3), { immediately: false }],
    ]);
  });

  test.each(['next', 'active', 'grace', 'retired'] as const)(
    'revoking a %s key erases it and records why',
    async (state) => {
      const { keySetId, kid } = await keyIn(state);
      const c = change(keySetId, 40, { trigger: 'revocation', actor: 'alice', reason: 'laptop stolen' });
      expect(await store.revokeKey(c, kid)).toEqual({ previousState: state });
      expect(await rawKey(keySetId, kid)).toEqual({
        state: 'revoked',
        erased: true,
        kek_id: null,
        revocation_reason: 'laptop stolen',
      });
      expect((await listKeys(store.pool, keySetId)).find((k) => k.kid === kid)).toMatchObject({
        revokedAt: at(40),
        hasPrivateKey: false,
      });
      expect((await readAuditTrail(db.pool, keySetId)).at(-1)).toMatchObject({
        event: 'revoked',
        kid,
        fromState: state,
        toState: 'revoked',
        trigger: 'revocation',
        actor: 'alice',
        reason: 'laptop stolen',
        operationId: c.operationId,
        at: at(40),
      });
    },
  );
});

describe('a change and its audit event commit together', () => {
  test('a failing audit insert rolls the new key back, and the operation id stays unused', async () => {
    const keySetId = await newKeySet();
    const before = await snapshot(keySetId);
    const c = change(keySetId, 0, { reason: AUDIT_FAILS });
    await expect(store.addNextKey(c, 'ES256')).rejects.toMatchObject({ code: '23514' });
    expect(await snapshot(keySetId)).toEqual(before);
    // Retried with the same operation id, it now happens (nothing was recorded as done).
    const key = await store.addNextKey({ ...c, reason: 'retry' }, 'ES256');
    expect((await listKeys(store.pool, keySetId)).map((k) => k.kid)).toEqual([key.kid]);
  });

  test('a failing audit insert leaves both keys of a promotion as they were', async () => {
    const { keySetId } = await keyIn('active');
    const nextKid = await addKey(keySetId, 25);
    const before = await snapshot(keySetId);
    await expect(
      store.promoteNextKey(change(keySetId, 30, { reason: AUDIT_FAILS }), nextKid, SEED_WINDOWS),
    ).rejects.toMatchObject({ code: '23514' });
    expect(await snapshot(keySetId)).toEqual(before);
  });
});

describe('idempotency', () => {
  test('addNextKey twice with one operation id: one key, one event, the same kid', async () => {
    const keySetId = await newKeySet();
    const c = change(keySetId, 0);
    const first = await store.addNextKey(c, 'ES256');
    const after = await snapshot(keySetId);
    expect(await store.addNextKey(c, 'ES256')).toEqual(first);
    expect(await snapshot(keySetId)).toEqual(after);
    expect(after.keys).toHaveLength(1);
    expect(after.audit.filter((e) => e.event === 'generated')).toHaveLength(1);
  });

  test('a retried addNextKey finds its first result even after the key has moved on', async () => {
    const keySetId = await newKeySet();
    const c = change(keySetId, 0);
    const first = await store.addNextKey(c, 'ES256');
    await store.promoteNextKey(change(keySetId, 0), first.kid, SEED_WINDOWS);
    expect(await store.addNextKey(c, 'ES256')).toEqual(first);
    expect(await listKeys(store.pool, keySetId)).toHaveLength(1);
  });

  test.each<[string, Exclude<KeyState, 'destroyed' | 'revoked'>, (c: KeyChange, kid: string) => Promise<unknown>]>([
    ['promoteNextKey', 'next', (c, kid) => store.promoteNextKey(c, kid, SEED_WINDOWS)],
    ['retireKey', 'grace', (c, kid) => store.retireKey(c, kid)],
    ['destroyKey', 'retired', (c, kid) => store.destroyKey(c, kid)],
    ['revokeKey', 'active', (c, kid) => store.revokeKey(c, kid)],
  ])('%s twice with one operation id: the same result, changed once', async (_, from, run) => {
    const { keySetId, kid } = await keyIn(from);
    const c = change(keySetId, 40);
    const result = await run(c, kid);
    const after = await snapshot(keySetId);
    expect(await run(c, kid)).toEqual(result);
    expect(await snapshot(keySetId)).toEqual(after);
  });

  test('two concurrent calls with one operation id: one key, both answers name it', async () => {
    const keySetId = await newKeySet();
    const c = change(keySetId, 0);
    const [a, b] = await Promise.all([store.addNextKey(c, 'ES256'), store.addNextKey(c, 'ES256')]);
    expect(a).toEqual(b);
    expect(await listKeys(store.pool, keySetId)).toHaveLength(1);
  });
});

describe('impossible changes are refused and change nothing', () => {
  test.each<[string, KeyState, (c: KeyChange, kid: string) => Promise<unknown>, string]>([
    ['a second next key', 'next', (c) => store.addNextKey(c, 'ES256'), 'ERR_KEY_STATE_CONFLICT'],
    [
      'promoting the active key',
      'active',
      (c, kid) => store.promoteNextKey(c, kid, SEED_WINDOWS),
      'ERR_KEY_STATE_CONFLICT',
    ],
    ['retiring a next key', 'next', (c, kid) => store.retireKey(c, kid), 'ERR_KEY_STATE_CONFLICT'],
    ['retiring the active key', 'active', (c, kid) => store.retireKey(c, kid), 'ERR_KEY_STATE_CONFLICT'],
    ['destroying a grace key', 'grace', (c, kid) => store.destroyKey(c, kid), 'ERR_KEY_STATE_CONFLICT'],
    ['destroying a destroyed key', 'destroyed', (c, kid) => store.destroyKey(c, kid), 'ERR_KEY_STATE_CONFLICT'],
    ['revoking a destroyed key', 'destroyed', (c, kid) => store.revokeKey(c, kid), 'ERR_KEY_STATE_CONFLICT'],
    ['revoking a revoked key', 'revoked', (c, kid) => store.revokeKey(c, kid), 'ERR_KEY_STATE_CONFLICT'],
    [
      'promoting an unknown kid',
      'active',
      (c) => store.promoteNextKey(c, 'no-such-kid', SEED_WINDOWS),
      'ERR_KID_UNKNOWN',
    ],
    ['revoking an unknown kid', 'active', (c) => store.revokeKey(c, 'no-such-kid'), 'ERR_KID_UNKNOWN'],
  ])('%s → %s', async (_, state, run, code) => {
    const { keySetId, kid } = await keyIn(state);
    const before = await snapshot(keySetId);
    const c = change(keySetId, 50);
    await expect(run(c, kid)).rejects.toMatchObject({ code, keySetId });
    expect(await snapshot(keySetId)).toEqual(before);
  });

  test("another key set's kid is unknown here", async () => {
    const { kid } = await keyIn('next');
    const other = await newKeySet();
    await expect(store.promoteNextKey(change(other, 0), kid, SEED_WINDOWS)).rejects.toMatchObject({
      code: 'ERR_KID_UNKNOWN',
      keySetId: other,
      kid,
    });
  });

  test('the conflict names the key in the way', async () => {
    const { keySetId, kid } = await keyIn('next');
    await expect(store.addNextKey(change(keySetId, 1), 'ES256')).rejects.toMatchObject({
      code: 'ERR_KEY_STATE_CONFLICT',
      kid,
    });
  });

  test.each<[string, (c: KeyChange) => Promise<unknown>]>([
    ['addNextKey', (c) => store.addNextKey(c, 'ES256')],
    ['promoteNextKey', (c) => store.promoteNextKey(c, 'k', SEED_WINDOWS)],
    ['retireKey', (c) => store.retireKey(c, 'k')],
    ['destroyKey', (c) => store.destroyKey(c, 'k')],
    ['revokeKey', (c) => store.revokeKey(c, 'k')],
  ])('%s on an unregistered key set → ERR_KEYSET_NOT_FOUND', async (_, run) => {
    await expect(run(change('never-registered', 0))).rejects.toMatchObject({
      code: 'ERR_KEYSET_NOT_FOUND',
      keySetId: 'never-registered',
    });
  });

  test('two concurrent addNextKey calls: exactly one next key, the other call conflicts', async () => {
    const keySetId = await newKeySet();
    const results = await Promise.allSettled([
      store.addNextKey(change(keySetId, 0), 'ES256'),
      store.addNextKey(change(keySetId, 0), 'ES256'),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const rejected = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')!;
    expect(rejected.reason).toMatchObject({ code: 'ERR_KEY_STATE_CONFLICT' });
    const { keys, audit } = await snapshot(keySetId);
    expect(keys.map((k) => k.state)).toEqual(['next']);
    expect(audit.filter((e) => e.event === 'generated')).toHaveLength(1);
  });
});

describe('the one-active and one-next indexes', () => {
  const insertRaw = (keySetId: string, kid: string, state: KeyState) =>
    db.pool.query(
      `INSERT INTO signing_keys (key_set_id, kid, alg, state, public_jwk, created_at) VALUES ($1, $2, 'ES256', $3, '{}', now())`,
      [keySetId, kid, state],
    );

  test('refuse a second active or next key even through raw SQL', async () => {
    const { keySetId } = await keyIn('active');
    await expect(insertRaw(keySetId, 'rogue-active', 'active')).rejects.toMatchObject({
      code: '23505',
      constraint: 'signing_keys_one_active',
    });
    const nextKid = await addKey(keySetId, 25);
    await expect(insertRaw(keySetId, 'rogue-next', 'next')).rejects.toMatchObject({
      code: '23505',
      constraint: 'signing_keys_one_next',
    });
    await expect(
      db.pool.query(`UPDATE signing_keys SET state = 'active' WHERE key_set_id = $1 AND kid = $2`, [keySetId, nextKid]),
    ).rejects.toMatchObject({ code: '23505' });
    // Other key sets and other states are unaffected.
    await expect(insertRaw(keySetId, 'old', 'grace')).resolves.toBeDefined();
    await expect(insertRaw(await newKeySet(), 'elsewhere', 'active')).resolves.toBeDefined();
  });
});

describe('listPublishedJwks', () => {
  test('serves next, active and grace keys, public members only', async () => {
    // Key 1 retired, key 2 active; then key 3 (RS256) replaces key 2, key 4 is revoked, key 5 (EdDSA) is next.
    const { keySetId, kid: retiredKid } = await keyIn('retired');
    const [, { kid: graceKid }] = await listKeys(store.pool, keySetId);
    const rsaKid = (await store.addNextKey(change(keySetId, 55), 'RS256')).kid;
    await store.promoteNextKey(change(keySetId, 60), rsaKid, SEED_WINDOWS);
    const revokedKid = await addKey(keySetId, 61);
    await store.revokeKey(change(keySetId, 62), revokedKid);
    const nextKid = (await store.addNextKey(change(keySetId, 63), 'EdDSA')).kid;
    const activeKid = (await listKeys(store.pool, keySetId)).find((k) => k.state === 'active')!.kid;

    const jwks = await listPublishedJwks(store.pool, keySetId);
    expect(jwks.map((j) => j.kid)).toEqual([graceKid, activeKid, nextKid]);
    expect(jwks.map((j) => j.kid)).not.toContain(retiredKid);
    expect(jwks.map((j) => [j.alg, j.kty])).toEqual([
      ['ES256', 'EC'],
      ['RS256', 'RSA'],
      ['EdDSA', 'OKP'],
    ]);
    for (const jwk of jwks) for (const member of PRIVATE_JWK_MEMBERS) expect(jwk).not.toHaveProperty(member);
  });

  test('is empty for an unknown key set', async () => {
    expect(await listPublishedJwks(store.pool, 'nobody')).toEqual([]);
  });
});

describe('change notifications', () => {
  test(`a committed change is announced on ${KEY_CHANGES_CHANNEL} with the key set id; a refused one is not`, async () => {
    const keySetId = await newKeySet();
    const listener = new Client({ connectionString: db.url });
    await listener.connect();
    try {
      const payloads: string[] = [];
      const arrived = new Promise<void>((resolve) =>
        listener.on('notification', (n) => {
          if (n.channel === KEY_CHANGES_CHANNEL) payloads.push(n.payload ?? '');
          if (n.payload === keySetId) resolve();
        }),
      );
      await listener.query(`LISTEN ${KEY_CHANGES_CHANNEL}`);

      await expect(store.retireKey(change(keySetId, 0), 'no-such-kid')).rejects.toMatchObject({
        code: 'ERR_KID_UNKNOWN',
      });
      await expect(store.addNextKey(change(keySetId, 0, { reason: AUDIT_FAILS }), 'ES256')).rejects.toMatchObject({
        code: '23514',
      });
      await store.addNextKey(change(keySetId, 0), 'ES256');
      await arrived;
      // Notifications arrive in commit order, so any from the refused changes would be here already.
      expect(payloads).toEqual([keySetId]);
    } finally {
      await listener.end();
    }
  });
});

describe('migrate', () => {
  test('an up-to-date database: nothing to apply, however often', async () => {
    expect(await migrate(db.pool)).toEqual([]);
    expect(await Promise.all([migrate(db.pool), migrate(db.pool)])).toEqual([[], []]);
  });

  describe('on an empty database', () => {
    const name = `keyturn_migrate_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
    let admin: Pool;
    let pools: Pool[] = [];

    beforeAll(async () => {
      admin = new Pool({ connectionString: process.env.KEYTURN_TEST_DATABASE_URL, max: 1 });
      await admin.query(`CREATE DATABASE ${name}`);
      const url = new URL(process.env.KEYTURN_TEST_DATABASE_URL!);
      url.pathname = `/${name}`;
      pools = [new Pool({ connectionString: url.toString() }), new Pool({ connectionString: url.toString() })];
    });
    afterAll(async () => {
      await Promise.all(pools.map((p) => p.end()));
      // Without FORCE: PostgreSQL waits (up to 5 s) for the pools' closing connections to go.
      await admin.query(`DROP DATABASE IF EXISTS ${name}`);
      await admin.end();
    });

    test('two processes migrating at once apply each migration once', async () => {
      const all = (await loadMigrations()).map((m) => m.version);
      // In order and none skipped, whoever adds the next one.
      expect(all).toEqual(all.map((_, index) => index + 1));
      const results = await Promise.all(pools.map((p) => migrate(p)));
      expect(results.sort((a, b) => a.length - b.length)).toEqual([[], all]);
      expect(await Promise.all(pools.map((p) => migrate(p)))).toEqual([[], []]);
      const { rows } = await pools[0].query('SELECT version FROM schema_migrations ORDER BY version');
      expect(rows).toEqual(all.map((version) => ({ version })));
    });

    test('a new migration is applied once; a failing one rolls back whole and is not recorded', async () => {
      const shipped = await loadMigrations();
      const version = shipped.length + 1;
      const extra = { version, name: 'extra', sql: 'CREATE TABLE extra (id int)' };
      expect(await migrate(pools[0], [...shipped, extra])).toEqual([version]);
      expect(await migrate(pools[1], [...shipped, extra])).toEqual([]);

      const broken = {
        version: version + 1,
        name: 'broken',
        sql: 'CREATE TABLE half_done (id int); SELECT * FROM no_such_table',
      };
      await expect(migrate(pools[0], [...shipped, extra, broken])).rejects.toThrow(new RegExp(`${version + 1}_broken`));
      const { rows } = await pools[0].query(
        `SELECT to_regclass('half_done') AS t, (SELECT max(version) FROM schema_migrations) AS v`,
      );
      expect(rows).toEqual([{ t: null, v: version }]);
    });
  });
});
