import { createLogger } from '../../src/logger';
import { connectionConfigOf, subscribeToKeyChanges, type KeyEvents } from '../../src/store/key-events';
import { KeyStore } from '../../src/store/key-store';
import { KeySetDriver, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { waitFor } from '../helpers/wait';
import { randomKekRing } from '../helpers/key-set-worker';
import { createTestDatabase, type TestDatabase, terminateListeners } from '../helpers/postgres';

const logger = createLogger({ level: 'silent' });
let db: TestDatabase;
let store: KeyStore;
const open: KeyEvents[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  store = new KeyStore(db.pool, randomKekRing());
});
afterEach(async () => {
  await Promise.all(open.splice(0).map((events) => events.close()));
});
afterAll(async () => {
  await db?.drop();
});

/** A subscription that records what it was told. */
async function subscribe(applicationName: string, pollIntervalMs = 60_000) {
  const changes: string[] = [];
  let checks = 0;
  const events = await subscribeToKeyChanges({
    connection: connectionConfigOf(db.pool),
    onChange: (keySetId) => void changes.push(keySetId),
    checkAll: async () => void (checks += 1),
    logger,
    pollIntervalMs,
    applicationName,
  });
  open.push(events);
  return { events, changes, checks: () => checks };
}

test('every committed key change is announced with its key set id', async () => {
  const { events, changes } = await subscribe('events-announce');
  expect(events.listening).toBe(true);
  const keySet = await KeySetDriver.register(store, uniqueKeySetId('announce'), testPolicy());

  await keySet.rotate();

  // One notice per change: registration (a new policy), generate, then promote.
  await waitFor(() => (changes.length >= 3 ? true : undefined), 2_000, 'three notices');
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(changes).toEqual([keySet.keySetId, keySet.keySetId, keySet.keySetId]);
});

test('a dropped connection is re-established, and the repair runs for what was missed meanwhile', async () => {
  const { events, changes, checks } = await subscribe('events-reconnect');
  const keySet = await KeySetDriver.register(store, uniqueKeySetId('reconnect'), testPolicy());

  expect(await terminateListeners(db.pool, 'events-reconnect')).toBe(1);
  await waitFor(() => (events.listening ? undefined : true), 2_000, 'the loss to be noticed');
  const kid = await keySet.addNext(); // announced while nobody listens: lost
  await waitFor(() => (events.listening ? true : undefined), 5_000, 'the reconnect');
  await waitFor(() => (checks() >= 1 ? true : undefined), 2_000, 'the repair after reconnecting');

  changes.length = 0; // the registration's notice may or may not have arrived before the drop
  await keySet.promote(kid);
  await waitFor(() => (changes.length >= 1 ? true : undefined), 2_000, 'a notice after reconnecting');
  expect(changes).toEqual([keySet.keySetId]);
});

test('knownAt: a read after LISTEN took effect is current while the connection lasts; across a drop it is as old as it is', async () => {
  const { events } = await subscribe('events-known-at');
  const readAt = Date.now();
  expect(events.knownAt(readAt, readAt + 60_000)).toBe(readAt + 60_000);

  expect(await terminateListeners(db.pool, 'events-known-at')).toBe(1);
  await waitFor(() => (events.listening ? undefined : true), 2_000, 'the loss to be noticed');
  expect(events.knownAt(readAt, readAt + 60_000)).toBe(readAt);
  await waitFor(() => (events.listening ? true : undefined), 5_000, 'the reconnect');
  // A change may have gone unannounced while it was down: only a read since the reconnect is current.
  expect(events.knownAt(readAt, readAt + 60_000)).toBe(readAt);
  const readAgainAt = Date.now();
  expect(events.knownAt(readAgainAt, readAgainAt + 1_000)).toBe(readAgainAt + 1_000);
});

test('the poll runs on its interval whether or not anything is announced', async () => {
  const { checks } = await subscribe('events-poll', 100);
  await new Promise((resolve) => setTimeout(resolve, 550));
  expect(checks()).toBeGreaterThanOrEqual(4);
});

test('an unreachable database: subscribing still succeeds, polling goes on, close() ends it all', async () => {
  let checks = 0;
  const events = await subscribeToKeyChanges({
    // Port 1 on loopback: refused at once.
    connection: { host: '127.0.0.1', port: 1, user: 'nobody', database: 'nothing', connectionTimeoutMillis: 1_000 },
    onChange: () => undefined,
    checkAll: async () => {
      checks += 1;
      throw new Error('database down');
    },
    logger,
    pollIntervalMs: 50,
  });
  expect(events.listening).toBe(false);
  await waitFor(() => (checks >= 2 ? true : undefined), 2_000, 'polls');
  await events.close();
  const after = checks;
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(checks).toBe(after);
});

test('after close() nothing more is announced', async () => {
  const { events, changes } = await subscribe('events-close');
  await events.close();
  expect(events.listening).toBe(false);
  const keySet = await KeySetDriver.register(store, uniqueKeySetId('closed'), testPolicy());
  await keySet.addNext();
  await new Promise((resolve) => setTimeout(resolve, 200));
  expect(changes).toEqual([]);
  const { rows } = await db.pool.query(`SELECT 1 FROM pg_stat_activity WHERE application_name = 'events-close'`);
  expect(rows).toHaveLength(0);
});
