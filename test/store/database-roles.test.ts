import { PRIVATE_JWK_MEMBERS } from '../../src/domain/private-jwk';
import { randomBytes } from 'node:crypto';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { Client, Pool } from 'pg';
import { Kek, KekRing } from '../../src/crypto/kek';
import type { Alert } from '../../src/domain/incidents';
import { PUBLISHED_STATES } from '../../src/domain/lifecycle';
import { KeyRing } from '../../src/issuer/key-ring';
import { createLogger } from '../../src/logger';
import { applyMigrations } from '../../src/runtime/database-pool';
import { AlertIncidentStore } from '../../src/store/alert-incidents';
import { verifyAuditTrail } from '../../src/store/audit-log';
import { grantRoles, ROLE_PRIVILEGES } from '../../src/store/database-roles';
import { KEY_CHANGES_CHANNEL } from '../../src/store/key-set-changes';
import { KeyStore } from '../../src/store/key-store';
import { migrate } from '../../src/store/migrate';
import { KeySetDriver, manualChange, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { waitFor } from '../helpers/wait';
import { createLoginRole, createTestDatabase, dropRoles, uniqueRoles, type TestDatabase } from '../helpers/postgres';
import { listKeys } from '../../src/store/stored-keys';
import { listPublishedJwks } from '../../src/store/published-keys';
import { rewrapKeySet } from '../../src/store/kek-rewrap';

// The roles `keyturn migrate` sets up, each used for real: the JWKS server's reads the published keys
// and is refused everything else; the worker's runs every key change without owning the schema.
// The run's PostgreSQL is the DBA's: it creates the login roles, as deploy/postgres does.

const kekA = new Kek(randomBytes(32));
const roles = uniqueRoles();
const silent = createLogger({ level: 'silent' });
let db: TestDatabase;
let owner: KeyStore;
let jwksPool: Pool;
let workerPool: Pool;
const createdByGrant = uniqueRoles();

beforeAll(async () => {
  db = await createTestDatabase();
  owner = new KeyStore(db.pool, new KekRing([kekA]));
  const jwks = await createLoginRole(roles.jwks);
  const worker = await createLoginRole(roles.worker);
  await grantRoles(db.pool, roles);
  jwksPool = new Pool({ connectionString: jwks.urlFor(db.url), max: 2 });
  workerPool = new Pool({ connectionString: worker.urlFor(db.url), max: 4 });
});
afterAll(async () => {
  for (const pool of [jwksPool, workerPool]) {
    // db.drop() (WITH (FORCE)) may end a connection the pool is still closing.
    pool?.on('error', () => undefined);
    await pool?.end();
  }
  await db?.drop();
  await dropRoles([...Object.values(roles), ...Object.values(createdByGrant)]);
});

/** keyturn's tables and views, as the migrations left them. */
async function keyturnRelations(): Promise<{ name: string; kind: 'table' | 'view'; firstColumn: string }[]> {
  const { rows } = await db.pool.query<{ name: string; kind: 'table' | 'view'; first_column: string }>(
    `SELECT c.relname AS name, CASE c.relkind WHEN 'v' THEN 'view' ELSE 'table' END AS kind,
            (SELECT attname FROM pg_attribute WHERE attrelid = c.oid AND attnum = 1) AS first_column
       FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind IN ('r', 'v') ORDER BY 1`,
  );
  return rows.map((r) => ({ name: r.name, kind: r.kind, firstColumn: r.first_column }));
}

/** 'ok', or the SQLSTATE the statement failed with. */
async function outcome(pool: Pool, sql: string): Promise<string> {
  try {
    await pool.query(sql);
    return 'ok';
  } catch (error) {
    return String((error as { code?: string }).code);
  }
}

const PERMISSION_DENIED = '42501';

test('grantRoles creates a missing role without LOGIN, and a second run changes nothing', async () => {
  expect((await grantRoles(db.pool, createdByGrant)).sort()).toEqual(Object.values(createdByGrant).sort());
  const { rows } = await db.pool.query('SELECT rolname, rolcanlogin FROM pg_roles WHERE rolname = ANY($1) ORDER BY 1', [
    Object.values(createdByGrant),
  ]);
  expect(rows).toEqual(
    Object.values(createdByGrant)
      .sort()
      .map((rolname) => ({ rolname, rolcanlogin: false })),
  );
  expect(await grantRoles(db.pool, createdByGrant)).toEqual([]);
  expect(await grantRoles(db.pool, roles)).toEqual([]);
});

test('every table and view of the schema has its privileges written down, so a new one cannot go ungranted', async () => {
  const relations = (await keyturnRelations()).map((r) => r.name);
  expect(Object.keys(ROLE_PRIVILEGES.worker).sort()).toEqual(relations);
  expect(Object.keys(ROLE_PRIVILEGES.jwks).sort()).toEqual(['published_key_sets', 'published_keys']);
});

describe('the JWKS role', () => {
  test('reads through the views exactly what the JWKS server publishes: next, active and grace keys, public parts, and three policy fields', async () => {
    const keySet = await KeySetDriver.register(owner, uniqueKeySetId('views'), {
      ...testPolicy(),
      issuer: 'https://issuer.example',
    });
    const destroyed = await keySet.rotate();
    const retired = await keySet.rotate();
    await keySet.rotate();
    await keySet.retire(destroyed);
    await keySet.destroy(destroyed);
    await keySet.retire(retired);
    await keySet.rotate();
    await keySet.revoke(await keySet.addNext());
    await keySet.addNext();
    const stored = await listKeys(owner.pool, keySet.keySetId);
    expect(new Set(stored.map((k) => k.state))).toEqual(
      new Set(['destroyed', 'retired', 'grace', 'active', 'revoked', 'next']),
    );

    const keys = await jwksPool.query('SELECT * FROM published_keys WHERE key_set_id = $1 ORDER BY created_at, kid', [
      keySet.keySetId,
    ]);
    expect(keys.fields.map((f) => f.name)).toEqual(['key_set_id', 'kid', 'public_jwk', 'created_at']);
    expect(keys.rows.map((r) => r.kid)).toEqual(
      stored.filter((k) => PUBLISHED_STATES.includes(k.state)).map((k) => k.kid),
    );
    for (const { public_jwk: jwk } of keys.rows)
      for (const member of PRIVATE_JWK_MEMBERS) expect(jwk).not.toHaveProperty(member);

    const sets = await jwksPool.query('SELECT * FROM published_key_sets WHERE key_set_id = $1', [keySet.keySetId]);
    expect(sets.rows).toEqual([
      {
        key_set_id: keySet.keySetId,
        version: expect.stringMatching(/^\d+$/),
        algorithm: 'ES256',
        jwks_max_age: '2m',
        issuer: 'https://issuer.example',
      },
    ]);
  });

  test('is refused SELECT on the private keys and on every table, and any write anywhere', async () => {
    expect(await outcome(jwksPool, 'SELECT private_key FROM signing_keys')).toBe(PERMISSION_DENIED);
    for (const { name, kind, firstColumn } of await keyturnRelations()) {
      const readable = name in ROLE_PRIVILEGES.jwks ? 'ok' : PERMISSION_DENIED;
      expect([name, await outcome(jwksPool, `SELECT * FROM ${name} LIMIT 1`)]).toEqual([name, readable]);
      const writes = [
        `INSERT INTO ${name} DEFAULT VALUES`,
        `UPDATE ${name} SET ${firstColumn} = ${firstColumn}`,
        `DELETE FROM ${name}`,
        ...(kind === 'table' ? [`TRUNCATE ${name}`] : []),
      ];
      for (const write of writes) expect([write, await outcome(jwksPool, write)]).toEqual([write, PERMISSION_DENIED]);
    }
    for (const ddl of [
      'CREATE TABLE stash (secret text)',
      'CREATE VIEW leak AS SELECT 1',
      'DROP VIEW published_keys',
    ]) {
      expect([ddl, await outcome(jwksPool, ddl)]).toEqual([ddl, PERMISSION_DENIED]);
    }
  });

  test('may LISTEN for key changes', async () => {
    const listener = new Client({
      connectionString: (jwksPool.options as { connectionString: string }).connectionString,
    });
    await listener.connect();
    try {
      const heard: string[] = [];
      listener.on('notification', (message) => heard.push(message.payload ?? ''));
      await listener.query(`LISTEN ${KEY_CHANGES_CHANNEL}`);
      const keySet = await KeySetDriver.register(owner, uniqueKeySetId('listen'), testPolicy());
      await keySet.addNext();
      await waitFor(() => (heard.includes(keySet.keySetId) ? true : undefined), 2_000, 'the notification');
    } finally {
      await listener.end();
    }
  });

  test('grantRoles refuses a JWKS role that can read signing_keys some other way', async () => {
    const { rows } = await db.pool.query<{ me: string }>('SELECT current_user AS me');
    await expect(grantRoles(db.pool, { ...roles, jwks: rows[0].me })).rejects.toMatchObject({
      code: 'ERR_DATABASE_ROLES',
      message: expect.stringMatching(new RegExp(`^KEYTURN_JWKS_ROLE ${rows[0].me} can read signing_keys`)),
    });
  });
});

describe('the worker role', () => {
  test('runs every key change, signs, verifies the audit trail and records incidents, on an up-to-date schema it does not own', async () => {
    expect(await migrate(workerPool)).toEqual([]);
    const store = new KeyStore(workerPool, new KekRing([kekA]));
    const keySet = await KeySetDriver.register(store, uniqueKeySetId('worker'), testPolicy());
    const first = await keySet.rotate();
    await keySet.rotate();
    await keySet.retire(first);
    await keySet.destroy(first);
    await keySet.revoke(await keySet.addNext());
    await KeySetDriver.register(store, keySet.keySetId, { ...testPolicy(), jwksMaxAge: '1m' });

    const rolledKeks = new KekRing([new Kek(randomBytes(32)), kekA]);
    const rolled = new KeyStore(workerPool, rolledKeks);
    expect(
      (await rewrapKeySet(rolled.pool, rolled.kekRing, { ...manualChange(keySet.keySetId), reason: 'KEK rolled' }))
        .kids,
    ).toHaveLength(1);
    const ring = await KeyRing.open({
      pool: workerPool,
      kekRing: rolledKeks,
      keySetIds: [keySet.keySetId],
      logger: silent,
      publicUrl: 'https://keys.example.com',
    });
    try {
      const token = await ring.sign(keySet.keySetId, { sub: 'user-42' });
      await jwtVerify(token, createLocalJWKSet({ keys: await listPublishedJwks(rolled.pool, keySet.keySetId) }));
    } finally {
      await ring.close();
    }
    // The changes the workflow's commands make: a listing, a withdrawal, a policy, operator actions, a wind-down and its reversal.
    const next = await keySet.addNext();
    await rolled.markListed(manualChange(keySet.keySetId), next, { waitMs: 60_000, notBefore: 0, urls: [] });
    await rolled.withdrawKey(manualChange(keySet.keySetId), next);
    await rolled.recordPolicy(manualChange(keySet.keySetId), { ...testPolicy(), retirement: '2h' }, []);
    await rolled.recordOperatorAction(manualChange(keySet.keySetId), 'paused');
    const activeKid = (await listKeys(rolled.pool, keySet.keySetId)).find((k) => k.state === 'active')!.kid;
    expect(await rolled.windDown(manualChange(keySet.keySetId), [{ kid: activeKid, graceMs: 60_000 }])).toHaveLength(1);
    await rolled.recommission(manualChange(keySet.keySetId));
    expect((await verifyAuditTrail(workerPool, keySet.keySetId))[0].problem).toBeNull();

    const incidents = new AlertIncidentStore(workerPool);
    const alert: Alert = {
      keySetId: keySet.keySetId,
      incident: 'workflow-stopped',
      status: 'firing',
      step: 'supervisor',
      summary: 'restarted',
      workflowId: 'w',
    };
    const notices = await incidents.recordRound({
      firing: [alert],
      unjudged: () => false,
      at: Date.now(),
      reminderMs: 60_000,
    });
    expect(notices.map((n) => n.kind)).toEqual(['opened']);
    expect(
      (await incidents.recordRound({ firing: [], unjudged: () => false, at: Date.now() + 1, reminderMs: 60_000 })).map(
        (n) => n.kind,
      ),
    ).toEqual(['resolved']);
  });

  test('may not rewrite the audit trail, delete a key or change the schema', async () => {
    for (const sql of [
      'UPDATE audit_events SET reason = reason',
      'DELETE FROM audit_events',
      'DELETE FROM signing_keys',
      'TRUNCATE key_operations',
      'INSERT INTO schema_migrations (version, name) VALUES (999, $$x$$)',
      'CREATE TABLE stash (secret text)',
      'ALTER TABLE signing_keys ADD COLUMN copied bytea',
      'DROP VIEW published_keys',
    ]) {
      expect([sql, await outcome(workerPool, sql)]).toEqual([sql, PERMISSION_DENIED]);
    }
  });

  test('finding a migration missing, says to run `keyturn migrate` as the owner instead of trying', async () => {
    const { rows } = await db.pool.query<{ version: number; name: string }>(
      'DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations) RETURNING version, name',
    );
    try {
      const database = { url: db.url, source: 'DATABASE_URL' as const, stop: async () => undefined };
      await expect(applyMigrations(workerPool, database, silent)).rejects.toMatchObject({
        code: 'ERR_SCHEMA_OUTDATED',
        message: expect.stringMatching(
          /its role may not apply them \(.*permission denied.*\): run `keyturn migrate` with the schema owner's DATABASE_URL first/,
        ),
      });
    } finally {
      await db.pool.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
        rows[0].version,
        rows[0].name,
      ]);
    }
  });
});
