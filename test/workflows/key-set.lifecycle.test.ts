import { openPrivateKey } from '../../src/crypto/envelope';
import type { KekRing } from '../../src/crypto/kek';
import type { CustodyRegistry } from '../../src/custody/custody-registry';
import type { CustodySettings } from '../../src/domain/custody-settings';
import type { KeyState } from '../../src/domain/lifecycle';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { KeyStore } from '../../src/store/key-store';
import type { StoredKey } from '../../src/store/stored-keys';
import { keySetWorkflow } from '../../src/workflows';
import { createKeySetWorker, randomKekRing, settled, uniqueNames } from '../helpers/key-set-worker';
import type { TestDatabase } from '../helpers/postgres';
import { useTimeSkippingSuite } from '../helpers/time-skipping-suite';
import { CUSTODY_BACKENDS_UNDER_TEST, useCustodyBackends } from '../helpers/custody';
import { historyText, PRIVATE_MEMBER_KEYS, recordHistory } from '../helpers/history';
import { listKeys } from '../../src/store/stored-keys';
import { listPublishedJwks } from '../../src/store/published-keys';
import { readAuditTrail } from '../../src/store/audit-log';

const DAY = 86_400_000;
const HOUR = 3_600_000;

/**
 * Under the seed policy (30d active, 5d prepublish, 5d grace, 1d retirement) key n (n >= 1) is
 * generated on day 30(n-1)-5 (key 1 at day 0), active from day 30(n-1), in grace from day 30n,
 * retired from day 30n+5 and destroyed on day 30n+6. Written out here, apart from the code under test.
 */
function expectedStates(day: number): KeyState[] {
  const states: KeyState[] = [];
  for (let n = 1; n === 1 || 30 * (n - 1) - 5 <= day; n++) {
    const activeFrom = 30 * (n - 1);
    if (day < activeFrom) states.push('next');
    else if (day < 30 * n) states.push('active');
    else if (day < 30 * n + 5) states.push('grace');
    else if (day < 30 * n + 6) states.push('retired');
    else states.push('destroyed');
  }
  return states;
}

const suite = useTimeSkippingSuite();
const custodyOf = useCustodyBackends();

describe.each(CUSTODY_BACKENDS_UNDER_TEST)('a key set under the seed policy, its keys held %s', (backend) => {
  test('lives through 100 days: right keys published and stored at every transition', async () => {
    const { env, db, bundle } = suite;
    const custody = custodyOf(backend);
    const kekRing = randomKekRing();
    const { keySetId, taskQueue, workflowId } = uniqueNames('seed');
    const registry = custody.registry(kekRing);
    const keyStore = new KeyStore(db.pool, kekRing, { custody: registry });
    const worker = await createKeySetWorker({ env, db, bundle, kekRing, taskQueue, custody: registry });

    await worker.runUntil(async () => {
      const handle = await env.client.workflow.start(keySetWorkflow, {
        workflowId,
        taskQueue,
        args: [{ keySetId, policy: { ...DEFAULT_POLICY, ...(custody.settings && { custody: custody.settings }) } }],
      });
      const first = await settled(env, handle);
      const activatedAt = first.keys[0].activatedAt!;
      const kidsInOrder: string[] = [];

      for (const day of [0, 24, 25, 29, 30, 34, 35, 36, 55, 60, 65, 66, 85, 90, 95, 96, 100]) {
        // An hour after the day's transitions, which fall on whole days after the first activation.
        const target = activatedAt + day * DAY + HOUR;
        await env.sleep(target - (await env.currentTimeMs()));
        const status = await settled(env, handle);
        const stored = await listKeys(keyStore.pool, keySetId);
        for (const key of stored) if (!kidsInOrder.includes(key.kid)) kidsInOrder.push(key.kid);
        const byKid = new Map(stored.map((k) => [k.kid, k]));

        const expected = expectedStates(day);
        expect({ day, states: kidsInOrder.map((kid) => byKid.get(kid)!.state) }).toEqual({ day, states: expected });
        expect(stored.filter((k) => k.state === 'active')).toHaveLength(1);

        const published = (await listPublishedJwks(keyStore.pool, keySetId)).map((jwk) => jwk.kid).sort();
        const shouldPublish = kidsInOrder.filter((_, i) => ['next', 'active', 'grace'].includes(expected[i])).sort();
        expect({ day, published }).toEqual({ day, published: shouldPublish });

        // The workflow agrees with the database, times included.
        const live = stored.filter((k) => !['destroyed', 'revoked'].includes(k.state));
        expect(status.keys.map((k) => [k.kid, k.state, k.activatedAt ?? null, k.demotedAt ?? null])).toEqual(
          live.map((k) => [k.kid, k.state, k.activatedAt, k.demotedAt]),
        );
        for (const key of stored)
          expect({ kid: key.kid, hasPrivateKey: key.hasPrivateKey }).toEqual({
            kid: key.kid,
            hasPrivateKey: !['destroyed'].includes(key.state),
          });
      }
      // Keys 1 to 4; key 5 is not due until day 115.
      expect(kidsInOrder).toHaveLength(4);

      // A key's private part is never in history; sealed, never in plaintext; in a KMS or on a token, never out of it.
      const history = await historyText(handle);
      for (const member of PRIVATE_MEMBER_KEYS) expect(history).not.toMatch(member);
      const keys = await listKeys(keyStore.pool, keySetId);
      if (backend === 'sealed') {
        await assertNoPlaintextPrivateKeys(db, kekRing, keySetId, history, keys);
        await recordHistory(handle, 'seed-policy-100-days');
      } else {
        await assertHeldInCustody(db, registry, keySetId, keys);
      }
      await handle.terminate('test finished');
    });
  });
});

/**
 * No row holds a sealed key; each key still held is non-extractable by its backend's own account and
 * signs; each destroyed key signs no more.
 */
async function assertHeldInCustody(db: TestDatabase, registry: CustodyRegistry, keySetId: string, keys: StoredKey[]) {
  const { rows } = await db.pool.query<{ kid: string; custody: CustodySettings; custody_handle: string }>(
    'SELECT kid, custody, custody_handle FROM signing_keys WHERE key_set_id = $1 AND private_key IS NULL AND kek_id IS NULL',
    [keySetId],
  );
  expect(rows).toHaveLength(keys.length);
  for (const key of keys) {
    const row = rows.find((r) => r.kid === key.kid)!;
    const custody = await registry.get(row.custody);
    expect(custody.privateKeysPassThroughKeyturn).toBe(false);
    const held = { keySetId, kid: key.kid, alg: key.alg, handle: row.custody_handle };
    const signature = async () => (await custody.signer(held))(Buffer.from('header.payload'));
    if (key.hasPrivateKey) {
      expect(await custody.properties(held)).toEqual({ extractable: false });
      expect((await signature()).length).toBe(64); // ES256: r‖s
    } else {
      await expect(signature()).rejects.toMatchObject({ code: 'ERR_CUSTODY_KEY_MISSING', kid: key.kid });
    }
  }
  // The audit trail says where each destroyed key was destroyed.
  const destroyed = (await readAuditTrail(db.pool, keySetId)).filter((e) => e.event === 'custody_destroyed');
  expect(destroyed.map((e) => [e.kid, e.details])).toEqual(
    keys
      .filter((key) => key.state === 'destroyed')
      .map((key) => [
        key.kid,
        {
          custody: rows.find((r) => r.kid === key.kid)!.custody.backend,
          handle: rows.find((r) => r.kid === key.kid)!.custody_handle,
        },
      ]),
  );
}

async function assertNoPlaintextPrivateKeys(
  db: TestDatabase,
  kekRing: KekRing,
  keySetId: string,
  history: string,
  keys: StoredKey[],
) {
  const { rows } = await db.pool.query<{ kid: string; private_key: Buffer; kek_id: string }>(
    'SELECT kid, private_key, kek_id FROM signing_keys WHERE key_set_id = $1 AND private_key IS NOT NULL',
    [keySetId],
  );
  expect(rows.length).toBe(keys.filter((k) => k.hasPrivateKey).length);
  expect(rows.length).toBeGreaterThan(0);
  for (const row of rows) {
    const jwk = openPrivateKey(row.private_key, row.kek_id, kekRing, { keySetId, kid: row.kid });
    expect(row.private_key.includes(Buffer.from(jwk.d!))).toBe(false);
    expect(row.private_key.includes(Buffer.from('"d"'))).toBe(false);
    expect(history.includes(jwk.d!)).toBe(false);
  }
}
