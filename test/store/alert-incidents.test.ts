import type { Alert } from '../../src/domain/incidents';
import { AlertIncidentStore, type SupervisionRound } from '../../src/store/alert-incidents';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const T0 = Date.UTC(2026, 1, 1);
const REMINDER = 4 * HOUR;

let db: TestDatabase;
let store: AlertIncidentStore;
beforeAll(async () => {
  db = await createTestDatabase();
  store = new AlertIncidentStore(db.pool);
  await db.pool.query(`INSERT INTO key_sets (id, policy) VALUES ('a', '{}'), ('b', '{}')`);
});
afterAll(async () => {
  await db?.drop();
});
beforeEach(async () => {
  await db.pool.query('DELETE FROM alert_incidents');
});

const noActiveKey = (keySetId: string): Alert => ({
  keySetId,
  incident: 'invariant:NO_ACTIVE_KEY',
  status: 'firing',
  step: 'supervisor',
  summary: `key set "${keySetId}": no active key: nothing can sign`,
  code: 'NO_ACTIVE_KEY',
  error: `key set "${keySetId}" has no active key: nothing can sign`,
  workflowId: `keyset/${keySetId}`,
});
const round = (at: number, firing: Alert[], unjudged: SupervisionRound['unjudged'] = () => false) =>
  store.recordRound({ firing, unjudged, at, reminderMs: REMINDER });

test('a finding seen round after round is one incident: opened, suppressed, reminded of, then resolved once no round finds it', async () => {
  expect(await round(T0, [noActiveKey('a')])).toEqual([
    {
      alert: noActiveKey('a'),
      kind: 'opened',
      incident: { key: 'invariant:NO_ACTIVE_KEY', openedAt: T0, notifiedAt: T0, notifications: 1 },
    },
  ]);
  for (let at = T0 + 5 * MINUTE; at < T0 + REMINDER; at += HOUR) {
    expect((await round(at, [noActiveKey('a')])).map((n) => n.kind)).toEqual([null]);
  }
  const reminder = await round(T0 + REMINDER + 5 * MINUTE, [noActiveKey('a')]);
  expect(reminder).toEqual([
    expect.objectContaining({ kind: 'reminder', incident: expect.objectContaining({ notifications: 2 }) }),
  ]);

  const resolved = await round(T0 + REMINDER + 10 * MINUTE, []);
  expect(resolved).toEqual([
    {
      alert: { ...noActiveKey('a'), status: 'resolved' },
      kind: 'resolved',
      incident: expect.objectContaining({ openedAt: T0, notifications: 2 }),
    },
  ]);
  expect(await round(T0 + REMINDER + 15 * MINUTE, [])).toEqual([]);

  // It stays on record; the next time it fires it is a new incident.
  const { rows } = await db.pool.query('SELECT incident, notifications, resolved_at FROM alert_incidents');
  expect(rows).toEqual([
    { incident: 'invariant:NO_ACTIVE_KEY', notifications: 2, resolved_at: new Date(T0 + REMINDER + 10 * MINUTE) },
  ]);
  expect((await round(T0 + 5 * HOUR, [noActiveKey('a')]))[0].kind).toBe('opened');
});

test('incidents of a key set the round could not check stay open; others resolve', async () => {
  await round(T0, [noActiveKey('a'), noActiveKey('b')]);
  const notices = await round(T0 + 5 * MINUTE, [], (keySetId) => keySetId === 'b');
  expect(notices.map((n) => [n.alert.keySetId, n.kind])).toEqual([['a', 'resolved']]);
  expect((await round(T0 + 10 * MINUTE, [noActiveKey('b')]))[0].kind).toBeNull();
});

test('a round retried with the same time announces again what its first attempt announced', async () => {
  await round(T0, [noActiveKey('b')]);
  const first = await round(T0 + 5 * MINUTE, [noActiveKey('a')]);
  const retried = await round(T0 + 5 * MINUTE, [noActiveKey('a')]);
  expect(first.map((n) => [n.alert.keySetId, n.kind])).toEqual([
    ['a', 'opened'],
    ['b', 'resolved'],
  ]);
  expect(retried).toEqual(first);
  const { rows } = await db.pool.query('SELECT count(*)::int AS n FROM alert_incidents');
  expect(rows[0].n).toBe(2);
});
