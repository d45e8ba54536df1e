import { randomBytes } from 'node:crypto';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { Client } from 'pg';
import { openPrivateKey } from '../../src/crypto/envelope';
import { Kek, KekRing } from '../../src/crypto/kek';
import { KeyRing } from '../../src/issuer/key-ring';
import { createLogger } from '../../src/logger';
import { readAuditTrail, verifyAuditTrail } from '../../src/store/audit-log';
import { KEY_CHANGES_CHANNEL } from '../../src/store/key-set-changes';
import { KeyStore } from '../../src/store/key-store';
import { openActiveKey } from '../helpers/sealed-keys';
import { KeySetDriver, manualChange, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { listPublishedJwks } from '../../src/store/published-keys';
import { countPrivateKeysByKek, rewrapKeySet } from '../../src/store/kek-rewrap';

// Rolling the KEK at the store: keys sealed under KEK A, the ring becomes [B, A], rewrapKeySet
// re-seals them under B, and from then on B alone opens them.

const kekA = new Kek(randomBytes(32));
const kekB = new Kek(randomBytes(32));
const kekC = new Kek(randomBytes(32));
const ringOf = (...keks: Kek[]) => new KekRing(keks);

let db: TestDatabase;
let underA: KeyStore;
let rolled: KeyStore;
const rewrapBy = (keySetId: string) =>
  ({ keySetId, trigger: 'manual', actor: 'alice (keyturn CLI)', reason: 'KEK rolled' }) as const;

beforeAll(async () => {
  db = await createTestDatabase();
  underA = new KeyStore(db.pool, ringOf(kekA));
  rolled = new KeyStore(db.pool, ringOf(kekB, kekA));
});
afterAll(async () => {
  await db?.drop();
});

interface RawKey {
  kid: string;
  state: string;
  kek_id: string | null;
  private_key: Buffer | null;
}

async function rawKeys(keySetId: string): Promise<RawKey[]> {
  const { rows } = await db.pool.query<RawKey>(
    'SELECT kid, state, kek_id, private_key FROM signing_keys WHERE key_set_id = $1 ORDER BY created_at, kid',
    [keySetId],
  );
  return rows;
}

/** Each key's private JWK, opened with `ring`; erased keys map to null. */
async function openAll(keySetId: string, ring: KekRing) {
  const keys = await rawKeys(keySetId);
  return Object.fromEntries(
    keys.map((k) => [k.kid, k.private_key && openPrivateKey(k.private_key, k.kek_id!, ring, { keySetId, kid: k.kid })]),
  );
}

/** A key set under KEK A with a key in each state: destroyed, retired, active, revoked, next. */
async function keySetUnderA() {
  const keySet = await KeySetDriver.register(underA, uniqueKeySetId('rewrap'), testPolicy());
  const destroyed = await keySet.rotate();
  const retired = await keySet.rotate();
  await keySet.retire(destroyed);
  await keySet.destroy(destroyed);
  const active = await keySet.rotate();
  await keySet.retire(retired);
  const revoked = await keySet.addNext();
  await keySet.revoke(revoked);
  const next = await keySet.addNext();
  return { keySetId: keySet.keySetId, kids: { destroyed, retired, active, revoked, next } };
}

test('rewrap re-seals every private key under the current KEK; that KEK alone then opens them, and the audit trail records it', async () => {
  const { keySetId, kids } = await keySetUnderA();
  const before = await openAll(keySetId, ringOf(kekA));
  const erasedBefore = (await rawKeys(keySetId)).filter((k) => k.private_key === null);

  const rewrap = await rewrapKeySet(rolled.pool, rolled.kekRing, rewrapBy(keySetId));
  expect(rewrap).toEqual({ keySetId, from: [kekA.id], to: kekB.id, kids: [kids.retired, kids.active, kids.next] });

  const after = await rawKeys(keySetId);
  expect(after.filter((k) => k.private_key !== null).map((k) => [k.kid, k.kek_id])).toEqual([
    [kids.retired, kekB.id],
    [kids.active, kekB.id],
    [kids.next, kekB.id],
  ]);
  // Keys without a private part are untouched.
  expect(after.filter((k) => k.private_key === null)).toEqual(erasedBefore);
  expect(erasedBefore.map((k) => k.kid)).toEqual([kids.destroyed, kids.revoked]);

  // The same keys, now opened by KEK B alone (with the same key set and kid as authenticated data).
  expect(await openAll(keySetId, ringOf(kekB))).toEqual(before);
  expect((await openActiveKey(db.pool, ringOf(kekB), keySetId))?.kid).toBe(kids.active);
  const ring = await KeyRing.open({
    pool: db.pool,
    kekRing: ringOf(kekB),
    keySetIds: [keySetId],
    logger: createLogger({ level: 'silent' }),
    publicUrl: 'https://keys.example.com',
  });
  try {
    const token = await ring.sign(keySetId, { sub: 'user-42' });
    const { protectedHeader } = await jwtVerify(
      token,
      createLocalJWKSet({ keys: await listPublishedJwks(rolled.pool, keySetId) }),
    );
    expect(protectedHeader.kid).toBe(kids.active);
  } finally {
    await ring.close();
  }

  const [verification] = await verifyAuditTrail(db.pool, keySetId);
  expect(verification.problem).toBeNull();
  const trail = await readAuditTrail(db.pool, keySetId);
  expect(trail.at(-1)).toMatchObject({
    event: 'kek_rewrapped',
    kid: null,
    fromState: null,
    toState: null,
    trigger: 'manual',
    actor: 'alice (keyturn CLI)',
    reason: 'KEK rolled',
    details: { from: [kekA.id], to: kekB.id, kids: [kids.retired, kids.active, kids.next] },
  });
  expect(trail.filter((e) => e.event === 'kek_rewrapped')).toHaveLength(1);
});

test('a second rewrap changes nothing and records nothing', async () => {
  const { keySetId } = await keySetUnderA();
  await rewrapKeySet(rolled.pool, rolled.kekRing, rewrapBy(keySetId));
  const keys = await rawKeys(keySetId);
  const events = (await readAuditTrail(db.pool, keySetId)).length;

  expect(await rewrapKeySet(rolled.pool, rolled.kekRing, rewrapBy(keySetId))).toEqual({
    keySetId,
    from: [],
    to: kekB.id,
    kids: [],
  });
  expect(await rawKeys(keySetId)).toEqual(keys);
  expect(await readAuditTrail(db.pool, keySetId)).toHaveLength(events);
});

test('only the keys under an older KEK are re-sealed; one already under the current KEK keeps its envelope', async () => {
  const keySet = await KeySetDriver.register(underA, uniqueKeySetId('rewrap-mixed'), testPolicy());
  const old = await keySet.rotate();
  const fresh = await new KeySetDriver(rolled, keySet.keySetId).addNext();
  const freshEnvelope = (await rawKeys(keySet.keySetId)).find((k) => k.kid === fresh)!.private_key;

  expect(await rewrapKeySet(rolled.pool, rolled.kekRing, rewrapBy(keySet.keySetId))).toMatchObject({
    from: [kekA.id],
    kids: [old],
  });
  expect((await rawKeys(keySet.keySetId)).find((k) => k.kid === fresh)!.private_key).toEqual(freshEnvelope);
});

test('a key under a KEK that is not configured: an error naming key set, kid and KEK id, and nothing changed in that key set', async () => {
  const keySet = await KeySetDriver.register(underA, uniqueKeySetId('rewrap-unknown'), testPolicy());
  await keySet.rotate();
  // Sealed under C, which the rolled ring lacks; created later than the key under A, which rewrap re-seals first.
  const underC = new KeyStore(db.pool, ringOf(kekC), { clock: () => Date.now() + 60_000 });
  const { kid: lost } = await underC.addNextKey(manualChange(keySet.keySetId), 'ES256');
  const keys = await rawKeys(keySet.keySetId);
  const events = await readAuditTrail(db.pool, keySet.keySetId);

  const failure = rewrapKeySet(rolled.pool, rolled.kekRing, rewrapBy(keySet.keySetId));
  await expect(failure).rejects.toMatchObject({ code: 'ERR_KEK_UNKNOWN', keySetId: keySet.keySetId, kid: lost });
  await expect(failure).rejects.toThrow(
    new RegExp(
      `"${lost}" of key set "${keySet.keySetId}" is sealed with KEK ${kekC.id}, which is not configured .*add that KEK to KEYTURN_KEK`,
    ),
  );
  expect(await rawKeys(keySet.keySetId)).toEqual(keys);
  expect(await readAuditTrail(db.pool, keySet.keySetId)).toEqual(events);
});

test('countPrivateKeysByKek counts the stored private keys per KEK id, with their key sets', async () => {
  const { keySetId } = await keySetUnderA();
  const usage = async () =>
    (await countPrivateKeysByKek(rolled.pool)).find((u) => u.keySetIds.includes(keySetId) && u.kekId !== kekC.id);
  expect(await usage()).toEqual({
    kekId: kekA.id,
    privateKeys: expect.any(Number),
    keySetIds: expect.arrayContaining([keySetId]),
  });
  const totalBefore = (await countPrivateKeysByKek(rolled.pool)).reduce((sum, u) => sum + u.privateKeys, 0);

  await rewrapKeySet(rolled.pool, rolled.kekRing, rewrapBy(keySetId));
  expect((await usage())?.kekId).toBe(kekB.id);
  // Erased keys are not counted, and a rewrap moves keys between KEKs without adding any.
  expect((await countPrivateKeysByKek(rolled.pool)).reduce((sum, u) => sum + u.privateKeys, 0)).toBe(totalBefore);
});

test(`a rewrap is announced on ${KEY_CHANGES_CHANNEL}, a rewrap with nothing to do is not`, async () => {
  const { keySetId } = await keySetUnderA();
  const listener = new Client({ connectionString: db.url });
  await listener.connect();
  try {
    const payloads: string[] = [];
    let announced!: () => void;
    const arrived = new Promise<void>((resolve) => (announced = resolve));
    listener.on('notification', (n) => {
      if (n.channel !== KEY_CHANGES_CHANNEL || n.payload === undefined) return;
      payloads.push(n.payload);
      if (n.payload === 'marker') announced();
    });
    await listener.query(`LISTEN ${KEY_CHANGES_CHANNEL}`);

    await rewrapKeySet(rolled.pool, rolled.kekRing, rewrapBy(keySetId));
    await rewrapKeySet(rolled.pool, rolled.kekRing, rewrapBy(keySetId));
    // Notifications arrive in commit order: once the marker is in, the rewraps' would be too.
    await db.pool.query('SELECT pg_notify($1, $2)', [KEY_CHANGES_CHANNEL, 'marker']);
    await arrived;
    expect(payloads).toEqual([keySetId, 'marker']);
  } finally {
    await listener.end();
  }
});
