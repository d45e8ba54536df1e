import { createLocalJWKSet, jwtVerify } from 'jose';
import { KeyRing } from '../../src/issuer/key-ring';
import { createLogger } from '../../src/logger';
import { listPublishedJwks } from '../../src/store/published-keys';
import { KeyStore } from '../../src/store/key-store';
import { CUSTODY_BACKENDS_UNDER_TEST, useCustodyBackends } from '../helpers/custody';
import { KeySetDriver, secondsPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { randomKekRing } from '../helpers/key-set-worker';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';

// The key ring encodes each token in buffers it reuses from one token to the next, and a KMS or a token
// signs asynchronously: many tokens signed at once must each be signed over their own signing input.

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db?.drop();
});
const custodyOf = useCustodyBackends();

describe.each(CUSTODY_BACKENDS_UNDER_TEST)('keys held %s', (backend) => {
  test.each(['ES256', 'RS256'] as const)(
    '%s: tokens signed at once, of different lengths, each verify',
    async (alg) => {
      const custody = custodyOf(backend);
      const kekRing = randomKekRing();
      const registry = custody.registry(kekRing);
      const store = new KeyStore(db.pool, kekRing, { custody: registry });
      const keySetId = uniqueKeySetId(`many-${alg.toLowerCase()}`);
      const policy = { ...secondsPolicy(), algorithm: alg, issuer: 'https://issuer.example' };
      await (
        await KeySetDriver.register(store, keySetId, {
          ...policy,
          ...(custody.settings && { custody: custody.settings }),
        })
      ).rotate();
      const ring = await KeyRing.open({
        pool: db.pool,
        kekRing,
        custody: registry,
        keySetIds: [keySetId],
        logger: createLogger({ level: 'silent' }),
      });
      try {
        const subjects = Array.from({ length: 32 }, (_, i) => `user-${'x'.repeat(i * 7)}-${i}`);
        const tokens = await Promise.all(subjects.map((sub) => ring.sign(keySetId, { sub })));
        const jwks = createLocalJWKSet({ keys: await listPublishedJwks(db.pool, keySetId) });
        const verified = await Promise.all(tokens.map(async (token) => (await jwtVerify(token, jwks)).payload.sub));
        expect(verified).toEqual(subjects);
      } finally {
        await ring.close();
      }
    },
  );
});
