import { DescribeKeyCommand, KMSClient, ListKeysCommand } from '@aws-sdk/client-kms';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { AwsKmsCustody } from '../../src/custody/aws-kms';
import { CustodyRegistry } from '../../src/custody/custody-registry';
import { KeyRing } from '../../src/issuer/key-ring';
import { createLogger } from '../../src/logger';
import { listPublishedJwks } from '../../src/store/published-keys';
import { KeyStore, type OrphanedKey } from '../../src/store/key-store';
import { KeySetDriver, manualChange, secondsPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { randomKekRing } from '../helpers/key-set-worker';
import { startMotoServer, type MotoServer } from '../helpers/moto';
import { waitFor } from '../helpers/wait';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';

// A key set's custody is a policy field like any other: changed, it holds from the next key generated,
// and the keys made before stay where they were made until they are destroyed. A key generated and not
// kept leaves nothing behind in KMS.

const ISSUER = 'https://issuer.example';

let db: TestDatabase;
let moto: MotoServer;
let kms: KMSClient;
let registry: CustodyRegistry;
let store: KeyStore;

beforeAll(async () => {
  [db, moto] = await Promise.all([createTestDatabase(), startMotoServer()]);
  kms = new KMSClient(moto.clientOptions);
  const kekRing = randomKekRing();
  registry = new CustodyRegistry({ kekRing, factories: { 'aws-kms': () => new AwsKmsCustody(moto.clientOptions) } });
  store = new KeyStore(db.pool, kekRing, { custody: registry });
}, 600_000);

afterAll(async () => {
  await registry?.close();
  kms?.destroy();
  await Promise.all([moto?.stop(), db?.drop()]);
});

const kmsKeyCount = async () => (await kms.send(new ListKeysCommand({}))).Keys?.length ?? 0;
const custodyOf = async (keySetId: string, kid: string) =>
  (
    await db.pool.query<{ backend: string; handle: string | null; sealed: boolean }>(
      `SELECT custody->>'backend' AS backend, custody_handle AS handle, private_key IS NOT NULL AS sealed
         FROM signing_keys WHERE key_set_id = $1 AND kid = $2`,
      [keySetId, kid],
    )
  ).rows[0];

test('moving a key set from sealed to aws-kms: the next key is made in KMS, the active one signs until promoted away', async () => {
  const keySetId = uniqueKeySetId('move');
  const sealedPolicy = { ...secondsPolicy(), issuer: ISSUER };
  const driver = await KeySetDriver.register(store, keySetId, sealedPolicy);
  const sealedKid = await driver.rotate();
  const ring = await KeyRing.open({
    pool: db.pool,
    kekRing: store.kekRing,
    custody: registry,
    keySetIds: [keySetId],
    logger: createLogger({ level: 'silent' }),
  });
  try {
    await KeySetDriver.register(store, keySetId, { ...sealedPolicy, custody: { backend: 'aws-kms' } });
    const kmsKid = await driver.addNext();
    expect(await custodyOf(keySetId, sealedKid)).toEqual({ backend: 'sealed', handle: null, sealed: true });
    const held = await custodyOf(keySetId, kmsKid);
    expect(held).toEqual({ backend: 'aws-kms', handle: expect.stringMatching(/^arn:aws:kms:/), sealed: false });
    const described = await kms.send(new DescribeKeyCommand({ KeyId: held.handle! }));
    expect([described.KeyMetadata?.KeyState, described.KeyMetadata?.KeySpec]).toEqual(['Enabled', 'ECC_NIST_P256']);

    const jwks = createLocalJWKSet({ keys: await listPublishedJwks(db.pool, keySetId) });
    const verifiedKid = async () =>
      (await jwtVerify(await ring.sign(keySetId, { sub: 'u' }), jwks, { issuer: ISSUER })).protectedHeader.kid;
    expect(await verifiedKid()).toBe(sealedKid);
    await driver.promote(kmsKid);
    // The promotion reaches the ring by NOTIFY.
    await waitFor(
      () => (ring.activeKid(keySetId) === kmsKid ? true : undefined),
      5_000,
      'the ring to sign with the KMS key',
    );
    expect(await verifiedKid()).toBe(kmsKid);
  } finally {
    await ring.close();
  }
});

test('a key generated for a key set that turns out to have keys already is destroyed in KMS again', async () => {
  const keySetId = uniqueKeySetId('kept');
  const policy = { ...secondsPolicy(), custody: { backend: 'aws-kms' as const } };
  const bootstrap = (reason: string) => ({
    algorithm: policy.algorithm,
    tokenTtlMs: 2_000,
    cause: { ...manualChange(keySetId, reason), trigger: 'bootstrap' as const },
  });
  const change = { keySetId, trigger: 'manual' as const, actor: 'test', reason: 'register' };
  const first = await store.registerKeySet(change, policy, { inService: true, firstKey: bootstrap('first') });
  expect(first.map((k) => k.state)).toEqual(['active']);
  const before = await kmsKeyCount();

  // A workflow restarted on the same key set asks for a first key again: the key set has one, so it is not stored.
  const again = await store.registerKeySet(change, policy, { inService: true, firstKey: bootstrap('again') });
  expect(again.map((k) => k.kid)).toEqual(first.map((k) => k.kid));
  const keys = (await kms.send(new ListKeysCommand({}))).Keys ?? [];
  expect(keys).toHaveLength(before + 1);
  const states = await Promise.all(
    keys.map(async (k) => (await kms.send(new DescribeKeyCommand({ KeyId: k.KeyId! }))).KeyMetadata?.KeyState),
  );
  expect(states.filter((state) => state === 'PendingDeletion')).toHaveLength(1);
});

test('a key generated and not kept that KMS will not destroy is reported as orphaned, with its handle', async () => {
  class UndestroyableKms extends AwsKmsCustody {
    override async destroy(): Promise<void> {
      throw new Error('KMS refused the deletion');
    }
  }
  const orphans: OrphanedKey[] = [];
  const failing = new CustodyRegistry({
    kekRing: store.kekRing,
    factories: { 'aws-kms': () => new UndestroyableKms(moto.clientOptions) },
  });
  const orphaning = new KeyStore(db.pool, store.kekRing, { custody: failing, onOrphanedKey: (o) => orphans.push(o) });
  try {
    const keySetId = uniqueKeySetId('orphan');
    const policy = { ...secondsPolicy(), custody: { backend: 'aws-kms' as const } };
    const change = { keySetId, trigger: 'manual' as const, actor: 'test', reason: 'register' };
    const firstKey = (reason: string) => ({
      algorithm: policy.algorithm,
      tokenTtlMs: 2_000,
      cause: { ...manualChange(keySetId, reason), trigger: 'bootstrap' as const },
    });
    const [first] = await orphaning.registerKeySet(change, policy, { inService: true, firstKey: firstKey('first') });
    expect(orphans).toEqual([]);

    await orphaning.registerKeySet(change, policy, { inService: true, firstKey: firstKey('again') });
    expect(orphans).toEqual([
      {
        keySetId,
        kid: expect.not.stringMatching(first.kid),
        custody: { backend: 'aws-kms' },
        handle: expect.stringMatching(/^arn:aws:kms:/),
        error: new Error('KMS refused the deletion'),
      },
    ]);
    const state = (await kms.send(new DescribeKeyCommand({ KeyId: orphans[0].handle }))).KeyMetadata?.KeyState;
    expect(state).toBe('Enabled');
  } finally {
    await failing.close();
  }
});

test('a KMS key whose handle was changed to name another key never signs: the ring refuses it as not matching its kid', async () => {
  const keySetId = uniqueKeySetId('swapped');
  const policy = { ...secondsPolicy(), issuer: ISSUER, custody: { backend: 'aws-kms' as const } };
  const kid = await (await KeySetDriver.register(store, keySetId, policy)).rotate();
  // Another KMS key, as someone who can write the database and create KMS keys could make.
  const other = await (await registry.get(policy.custody)).generate('ES256', { keySetId: 'elsewhere' });
  await db.pool.query('UPDATE signing_keys SET custody_handle = $3 WHERE key_set_id = $1 AND kid = $2', [
    keySetId,
    kid,
    other.handle,
  ]);
  const ring = await KeyRing.open({
    pool: db.pool,
    kekRing: store.kekRing,
    custody: registry,
    logger: createLogger({ level: 'silent' }),
  });
  try {
    await expect(ring.sign(keySetId, { sub: 'u' })).rejects.toMatchObject({
      code: 'ERR_KID_MISMATCH',
      keySetId,
      kid,
      message: expect.stringContaining('signs with another key than its stored public key'),
    });
  } finally {
    await ring.close();
  }
});
