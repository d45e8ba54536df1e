import { PRIVATE_JWK_MEMBERS } from '../../src/domain/private-jwk';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { Pool } from 'pg';
import { Registry } from 'prom-client';
import { KeyRing } from '../../src/issuer/key-ring';
import { startJwksServer, type RunningJwksServer } from '../../src/jwks/server';
import { createLogger } from '../../src/logger';
import { createMetricsRegistry } from '../../src/observability/metrics';
import { generateSigningKey } from '../../src/crypto/generate';
import { KEY_CHANGES_CHANNEL } from '../../src/store/key-set-changes';
import { KeyStore } from '../../src/store/key-store';
import { KeySetDriver, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { capturingLogger } from '../helpers/logs';
import { waitFor } from '../helpers/wait';
import { randomKekRing } from '../helpers/key-set-worker';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { listKeys } from '../../src/store/stored-keys';
import { openActiveKey } from '../helpers/sealed-keys';
import { listPublishedJwks } from '../../src/store/published-keys';

const kekRing = randomKekRing();
const captured = capturingLogger();
/** Every body the tests received, to search for private members at the end. */
const bodies: string[] = [];
let db: TestDatabase;
let store: KeyStore;
let registry: Registry;
let server: RunningJwksServer;
let defaultKeySet: KeySetDriver;

beforeAll(async () => {
  delete process.env.KEYTURN_ISSUER;
  db = await createTestDatabase();
  store = new KeyStore(db.pool, kekRing);
  defaultKeySet = await KeySetDriver.register(store, 'default', testPolicy());
  await defaultKeySet.rotate();
  // Every key set's series (KEYTURN_METRICS_PER_KEY_SET); the outage test's server shows the default.
  registry = createMetricsRegistry({ perKeySet: true });
  // A poll once a minute: whatever shows up sooner in these tests came by NOTIFY.
  server = await startJwksServer({
    port: 0,
    host: '127.0.0.1',
    pool: db.pool,
    registry,
    logger: captured.logger,
    defaultKeySetId: 'default',
    pollIntervalMs: 60_000,
  });
});
afterAll(async () => {
  await server?.close();
  await db?.drop();
});

interface Fetched {
  status: number;
  headers: Headers;
  text: string;
  json<T = Record<string, unknown>>(): T;
}

async function get(path: string, init: RequestInit = {}, base = server.url): Promise<Fetched> {
  const response = await fetch(`${base}${path}`, init);
  const text = await response.text();
  bodies.push(text);
  return { status: response.status, headers: response.headers, text, json: <T>() => JSON.parse(text) as T };
}

type Jwks = { keys: Record<string, unknown>[] };
const servedKids = async (keySetId: string) =>
  (await get(`/keysets/${keySetId}/jwks.json`)).json<Jwks>().keys.map((k) => k.kid);

describe('the JWKS of a key set', () => {
  test('lists exactly its next, active and grace keys, each public only with kid, alg and use', async () => {
    // One key in each state: destroyed, retired, grace, active, revoked, next.
    const keySet = await KeySetDriver.register(store, uniqueKeySetId('states'), testPolicy());
    const destroyed = await keySet.rotate();
    const retired = await keySet.rotate();
    const grace = await keySet.rotate();
    await keySet.retire(destroyed);
    await keySet.destroy(destroyed);
    await keySet.retire(retired);
    const active = await keySet.rotate();
    await keySet.revoke(await keySet.addNext());
    const next = await keySet.addNext();
    const states = Object.fromEntries((await listKeys(store.pool, keySet.keySetId)).map((k) => [k.kid, k.state]));
    expect(Object.values(states).sort()).toEqual(['active', 'destroyed', 'grace', 'next', 'retired', 'revoked']);
    expect([states[grace], states[active], states[next]]).toEqual(['grace', 'active', 'next']);

    // The cache follows the changes' notices within milliseconds; the last may still be on its way.
    const published = [grace, active, next].sort();
    await waitFor(
      async () =>
        JSON.stringify((await servedKids(keySet.keySetId)).sort()) === JSON.stringify(published) ? true : undefined,
      2_000,
      'the last change',
    );
    const response = await get(`/keysets/${keySet.keySetId}/jwks.json`);

    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    const { keys } = response.json<Jwks>();
    expect(keys.map((k) => k.kid).sort()).toEqual(published);
    const stored = await listPublishedJwks(store.pool, keySet.keySetId);
    expect(keys).toEqual(stored);
    for (const key of keys) {
      expect(key).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
      for (const member of PRIVATE_JWK_MEMBERS) expect(key).not.toHaveProperty(member);
    }
    expect(Object.keys(response.json())).toEqual(['keys']);
  });

  test('has a strong ETag; a matching If-None-Match gets 304, a changed JWKS a new ETag', async () => {
    const keySet = await KeySetDriver.register(store, uniqueKeySetId('etag'), testPolicy());
    await keySet.rotate();
    const path = `/keysets/${keySet.keySetId}/jwks.json`;

    const first = await get(path);
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"[A-Za-z0-9_-]{43}"$/);
    expect((await get(path)).headers.get('etag')).toBe(etag);

    for (const ifNoneMatch of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
      const notModified = await get(path, { headers: { 'if-none-match': ifNoneMatch } });
      expect(notModified.status).toBe(304);
      expect(notModified.text).toBe('');
      expect(notModified.headers.get('etag')).toBe(etag);
      expect(notModified.headers.get('cache-control')).toBe('public, max-age=120');
    }
    expect((await get(path, { headers: { 'if-none-match': '"something-else"' } })).status).toBe(200);

    const kid = await keySet.addNext();
    await waitFor(
      async () => ((await servedKids(keySet.keySetId)).includes(kid) ? true : undefined),
      2_000,
      'the new kid',
    );
    const changed = await get(path, { headers: { 'if-none-match': etag } });
    expect(changed.status).toBe(200);
    expect(changed.headers.get('etag')).not.toBe(etag);
  });

  test('HEAD answers the headers of GET without the body', async () => {
    const response = await fetch(`${server.url}/keysets/default/jwks.json`, { method: 'HEAD' });
    const full = await get('/keysets/default/jwks.json');
    expect(response.status).toBe(200);
    expect(await response.text()).toBe('');
    expect(response.headers.get('etag')).toBe(full.headers.get('etag'));
    expect(response.headers.get('content-length')).toBe(String(Buffer.byteLength(full.text)));
  });

  test("Cache-Control is public with the policy's jwksMaxAge in seconds", async () => {
    const keySet = await KeySetDriver.register(store, uniqueKeySetId('maxage'), {
      ...testPolicy(),
      jwksMaxAge: '90s',
      prepublish: '10m',
    });
    await keySet.rotate();
    const response = await get(`/keysets/${keySet.keySetId}/jwks.json`);
    expect(response.headers.get('cache-control')).toBe('public, max-age=90');
  });

  test('a new key, a revocation and a retirement show in the served JWKS as they commit (NOTIFY)', async () => {
    const keySet = await KeySetDriver.register(store, uniqueKeySetId('notify'), testPolicy());
    const first = await keySet.rotate();
    expect(await servedKids(keySet.keySetId)).toEqual([first]);

    /** Milliseconds from a change's commit (its KeyStore call returning) until the served JWKS satisfies `check`. */
    const latency = async (change: () => Promise<unknown>, check: (kids: unknown[]) => boolean): Promise<number> => {
      await change();
      const committed = performance.now();
      await waitFor(
        async () => (check(await servedKids(keySet.keySetId)) ? true : undefined),
        10_000,
        'the JWKS to change',
        1,
      );
      return performance.now() - committed;
    };
    let next = '';
    const published = await latency(
      async () => (next = await keySet.addNext()),
      (kids) => kids.includes(next),
    );
    await keySet.promote(next); // changes no published key: next and active are both in the JWKS
    const revoked = await latency(
      () => keySet.revoke(first),
      (kids) => !kids.includes(first),
    );
    const second = await keySet.rotate();
    const retiredLatency = await latency(
      () => keySet.retire(next),
      (kids) => !kids.includes(next) && kids.includes(second),
    );

    console.log(
      `commit → served JWKS: new next key ${published.toFixed(1)} ms, revocation ${revoked.toFixed(1)} ms, ` +
        `retirement ${retiredLatency.toFixed(1)} ms (each includes the test's own polling: one HTTP request per millisecond or so)`,
    );
  });

  test('an unknown key set is a 404 with a JSON error naming it', async () => {
    const response = await get('/keysets/no-such-set/jwks.json');
    expect(response.status).toBe(404);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(response.json()).toEqual({ error: 'key set not found', keySetId: 'no-such-set' });
    expect((await get('/keysets/no-such-set/.well-known/openid-configuration')).status).toBe(404);
  });

  test('a key whose kid is not the thumbprint of its public key is left out, counted and logged by key set and kid', async () => {
    const keySet = await KeySetDriver.register(store, uniqueKeySetId('mismatch'), testPolicy());
    const active = await keySet.rotate();
    const next = await keySet.addNext();
    await waitFor(
      async () => ((await servedKids(keySet.keySetId)).includes(next) ? true : undefined),
      2_000,
      'the next key',
    );
    // The series is there before any refusal, so that Prometheus' increase() sees the first one.
    const refusedBefore = sample(
      (await get('/metrics')).text,
      `keyturn_jwks_refused_keys_total{key_set="${keySet.keySetId}"}`,
    );
    expect(refusedBefore).toBe(0);

    // The next key's row now holds another key's public members under its kid, as an edit of the row would.
    const other = await generateSigningKey('ES256');
    await db.pool.query('UPDATE signing_keys SET public_jwk = $3 WHERE key_set_id = $1 AND kid = $2', [
      keySet.keySetId,
      next,
      JSON.stringify({ ...other.publicJwk, kid: next }),
    ]);
    await db.pool.query('SELECT pg_notify($1, $2)', [KEY_CHANGES_CHANNEL, keySet.keySetId]); // an edit outside keyturn announces nothing

    await waitFor(
      async () => ((await servedKids(keySet.keySetId)).includes(next) ? undefined : true),
      2_000,
      'the key to be left out',
    );
    expect(await servedKids(keySet.keySetId)).toEqual([active]);
    expect(sample((await get('/metrics')).text, `keyturn_jwks_refused_keys_total{key_set="${keySet.keySetId}"}`)).toBe(
      refusedBefore + 1,
    );
    const logged = captured
      .text()
      .split('\n')
      .filter((line) => line.includes('left out of the JWKS'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(logged).toEqual([expect.objectContaining({ level: 50, keySetId: keySet.keySetId, kid: next })]);
    expect(captured.text()).not.toContain(other.publicJwk.x);
  });

  test('a key set registered after start is found on first request', async () => {
    const keySet = await KeySetDriver.register(store, uniqueKeySetId('late'), testPolicy());
    // Asked for at once, before the registration's notice may have arrived: the request looks it up.
    const response = await get(`/keysets/${keySet.keySetId}/jwks.json`);
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({ keys: [] });
  });
});

describe('discovery', () => {
  test('the default key set: issuer is the server, jwks_uri its well-known JWKS', async () => {
    const response = await get('/.well-known/openid-configuration');
    expect(response.status).toBe(200);
    expect(response.json()).toEqual({
      issuer: server.url,
      jwks_uri: `${server.url}/.well-known/jwks.json`,
      id_token_signing_alg_values_supported: ['ES256'],
    });
    const jwks = await get('/.well-known/jwks.json');
    expect(jwks.text).toBe((await get('/keysets/default/jwks.json')).text);
    // Under its own path too, the default key set has one issuer: the one its tokens carry.
    expect((await get('/keysets/default/.well-known/openid-configuration')).json()).toMatchObject({
      issuer: server.url,
      jwks_uri: `${server.url}/keysets/default/jwks.json`,
    });
  });

  test('per key set: the issuer from its policy if it names one, else the key set URL', async () => {
    const plain = await KeySetDriver.register(store, uniqueKeySetId('disc'), testPolicy('EdDSA'));
    await plain.rotate();
    const named = await KeySetDriver.register(store, uniqueKeySetId('disc'), {
      ...testPolicy('RS256'),
      issuer: 'https://login.example.com',
    } as ReturnType<typeof testPolicy>);
    await named.rotate();

    expect((await get(`/keysets/${plain.keySetId}/.well-known/openid-configuration`)).json()).toEqual({
      issuer: `${server.url}/keysets/${plain.keySetId}`,
      jwks_uri: `${server.url}/keysets/${plain.keySetId}/jwks.json`,
      id_token_signing_alg_values_supported: ['EdDSA'],
    });
    expect((await get(`/keysets/${named.keySetId}/.well-known/openid-configuration`)).json()).toMatchObject({
      issuer: 'https://login.example.com',
      id_token_signing_alg_values_supported: ['RS256'],
    });
  });

  test('a verifier that starts from discovery verifies a token of the key ring, issuer included', async () => {
    const plain = await KeySetDriver.register(store, uniqueKeySetId('disc'), testPolicy());
    await plain.rotate();
    const ring = await KeyRing.open({
      pool: db.pool,
      kekRing,
      keySetIds: ['default', plain.keySetId],
      logger: createLogger({ level: 'silent' }),
      publicUrl: server.url,
    });
    try {
      for (const [keySetId, path] of [
        ['default', '/.well-known/openid-configuration'],
        [plain.keySetId, `/keysets/${plain.keySetId}/.well-known/openid-configuration`],
      ]) {
        const token = await ring.sign(keySetId, { sub: 'alice' }, { ttl: '1m' });
        const discovery = (await get(path)).json<{ issuer: string; jwks_uri: string }>();
        const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(discovery.jwks_uri)), {
          algorithms: ['ES256'],
          issuer: discovery.issuer,
        });
        expect(payload.sub).toBe('alice');
      }
    } finally {
      await ring.close();
    }
  });
});

/** The value of one series in a /metrics text, e.g. `name{label="value"}`; NaN when absent. */
const sample = (text: string, series: string) =>
  Number(new RegExp(`^${series.replace(/[{}()+.]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);

describe('health, readiness and metrics', () => {
  test('/healthz and /readyz answer 200 once the key sets are loaded', async () => {
    expect((await get('/healthz')).json()).toEqual({ status: 'ok' });
    const ready = await get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.json()).toEqual({ status: 'ready' });
  });

  test('with the database unreachable the server starts, is alive, and is not ready', async () => {
    const deadPool = new Pool({ host: '127.0.0.1', port: 1, user: 'x', database: 'x', connectionTimeoutMillis: 500 });
    const silent = createLogger({ level: 'silent' });
    const unready = await startJwksServer({
      port: 0,
      host: '127.0.0.1',
      pool: deadPool,
      registry: new Registry(),
      logger: silent,
    });
    try {
      expect((await get('/healthz', {}, unready.url)).status).toBe(200);
      const readiness = await get('/readyz', {}, unready.url);
      expect(readiness.status).toBe(503);
      expect(readiness.json()).toEqual({ status: 'not ready', reasons: ['key sets not loaded yet'] });
      const jwks = await get('/keysets/default/jwks.json', {}, unready.url);
      expect(jwks.status).toBe(503);
    } finally {
      await unready.close();
      await deadPool.end();
    }
  });

  test('through a database outage it stays ready and serves the JWKS until that is older than jwksMaxAge, then is ready again once back', async () => {
    const own = await createTestDatabase();
    const ownStore = new KeyStore(own.pool, kekRing);
    const keySet = await KeySetDriver.register(ownStore, uniqueKeySetId('outage'), {
      ...testPolicy(),
      jwksMaxAge: '5s',
    });
    const kid = await keySet.rotate();
    const ownRegistry = new Registry();
    const outage = await startJwksServer({
      port: 0,
      host: '127.0.0.1',
      pool: own.pool,
      registry: ownRegistry,
      logger: createLogger({ level: 'silent' }),
      pollIntervalMs: 100,
    });
    let restore: (() => Promise<void>) | undefined;
    // A registry that does not report every key set: the oldest view, of the one key set here.
    const age = async () =>
      sample((await get('/metrics', {}, outage.url)).text, 'keyturn_key_view_age_seconds{view="jwks"}');
    const jwksPath = `/keysets/${keySet.keySetId}/jwks.json`;
    try {
      expect((await get('/readyz', {}, outage.url)).json()).toEqual({ status: 'ready' });
      expect(await age()).toBe(0);
      const served = (await get(jwksPath, {}, outage.url)).text;
      // Requests by code only: no series names a key set.
      const counted = (await get('/metrics', {}, outage.url)).text;
      expect(sample(counted, 'keyturn_jwks_requests_total{code="200"}')).toBeGreaterThanOrEqual(1);
      expect(counted).not.toContain('key_set=');

      restore = await own.cutOff();
      // The server notices at once (its LISTEN connection ends) and keeps serving what it has.
      const degraded = await waitFor(
        async () => {
          const readiness = await get('/readyz', {}, outage.url);
          return readiness.json().warnings === undefined ? undefined : readiness;
        },
        5_000,
        'the outage to be noticed',
      );
      expect(degraded.status).toBe(200);
      expect(degraded.json()).toEqual({
        status: 'ready',
        warnings: [
          expect.stringMatching(
            /^PostgreSQL last confirmed the keys \d+s ago: serving the JWKS from memory \(ready while within each key set's jwksMaxAge\)$/,
          ),
        ],
      });
      const during = await get(jwksPath, {}, outage.url);
      expect([during.status, during.text]).toEqual([200, served]);

      const unready = await waitFor(
        async () => {
          const readiness = await get('/readyz', {}, outage.url);
          return readiness.status === 503 ? readiness : undefined;
        },
        20_000,
        'readiness to end',
        100,
      );
      expect(unready.json()).toEqual({
        status: 'not ready',
        reasons: [
          expect.stringMatching(
            new RegExp(
              `^key set "${keySet.keySetId}": PostgreSQL last confirmed the keys \\d+s ago, longer than its jwksMaxAge 5s$`,
            ),
          ),
        ],
      });
      expect(await age()).toBeGreaterThan(5);
      // Readiness is for the load balancer: whoever asks still gets the keys.
      expect((await get(jwksPath, {}, outage.url)).json<Jwks>().keys.map((k) => k.kid)).toEqual([kid]);

      await restore();
      restore = undefined;
      await waitFor(
        async () => ((await get('/readyz', {}, outage.url)).text === '{"status":"ready"}' ? true : undefined),
        20_000,
        'ready again',
        100,
      );
      expect(await age()).toBe(0);
    } finally {
      await restore?.();
      await outage.close();
      await own.drop();
    }
  });

  test('a key set whose JWKS cannot be rebuilt keeps its last one and a warning, ages in the metric, and does not take the server offline', async () => {
    const keySet = await KeySetDriver.register(store, uniqueKeySetId('broken'), testPolicy());
    const kid = await keySet.rotate();
    await waitFor(async () => ((await servedKids(keySet.keySetId)).includes(kid) ? true : undefined), 2_000, 'the key');
    const { rows } = await db.pool.query<{ public_jwk: Record<string, unknown> }>(
      'SELECT public_jwk FROM signing_keys WHERE kid = $1',
      [kid],
    );
    const setPublicJwk = async (jwk: object) => {
      await db.pool.query('UPDATE signing_keys SET public_jwk = $2 WHERE kid = $1', [kid, JSON.stringify(jwk)]);
      await db.pool.query('SELECT pg_notify($1, $2)', [KEY_CHANGES_CHANNEL, keySet.keySetId]);
    };
    const age = async () =>
      sample((await get('/metrics')).text, `keyturn_key_view_age_seconds{view="jwks",key_set="${keySet.keySetId}"}`);
    // 0 once the view is confirmed since the listener (re)connected: a reconnect just before ages it until the repair poll.
    await waitFor(async () => ((await age()) === 0 ? true : undefined), 10_000, 'a fresh view');

    // A row the build refuses (no alg): the rebuild fails, and the key set keeps the JWKS it had.
    await setPublicJwk({ ...rows[0].public_jwk, alg: undefined });
    try {
      const warned = await waitFor(
        async () => {
          const readiness = await get('/readyz');
          return readiness.json().warnings === undefined ? undefined : readiness;
        },
        5_000,
        'the warning',
      );
      expect([warned.status, warned.json()]).toEqual([
        200,
        {
          status: 'ready',
          warnings: [
            expect.stringMatching(
              new RegExp(
                `^key set "${keySet.keySetId}": its JWKS could not be rebuilt for \\d+s: serving the last one built$`,
              ),
            ),
          ],
        },
      ]);
      expect(await servedKids(keySet.keySetId)).toEqual([kid]);
      expect(await age()).toBeGreaterThan(0);
    } finally {
      await setPublicJwk(rows[0].public_jwk);
    }
    await waitFor(
      async () => ((await get('/readyz')).text === '{"status":"ready"}' ? true : undefined),
      5_000,
      'the warning to go',
    );
    expect(await age()).toBe(0);
  });

  test('/metrics counts requests by key set and code, with made-up ids under one label, and times them by route', async () => {
    const before = (await get('/metrics')).text;
    await get('/keysets/default/jwks.json');
    await get('/keysets/made-up-1/jwks.json');
    await get('/keysets/made-up-2/jwks.json');
    const response = await get('/metrics');
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    const { text } = response;
    const grew = (series: string) => sample(text, series) - (sample(before, series) || 0);
    expect(grew('keyturn_jwks_requests_total{key_set="default",code="200"}')).toBe(1);
    expect(grew('keyturn_jwks_requests_total{key_set="(unknown)",code="404"}')).toBe(2);
    expect(text).not.toContain('made-up');
    // A histogram as Prometheus reads one: cumulative buckets up to +Inf, which equals the count.
    expect(text).toContain('# TYPE keyturn_jwks_request_duration_seconds histogram');
    expect(grew('keyturn_jwks_request_duration_seconds_count{route="jwks"}')).toBe(3);
    const buckets = [
      ...text.matchAll(/^keyturn_jwks_request_duration_seconds_bucket\{le="([^"]+)",route="jwks"\} (\d+)$/gm),
    ];
    expect(buckets.map((m) => m[1])).toEqual([
      '0.0001',
      '0.00025',
      '0.0005',
      '0.001',
      '0.0025',
      '0.005',
      '0.01',
      '0.025',
      '0.05',
      '0.1',
      '0.25',
      '1',
      '+Inf',
    ]);
    const counts = buckets.map((m) => Number(m[2]));
    expect(counts).toEqual([...counts].sort((a, b) => a - b));
    expect(counts.at(-1)).toBe(sample(text, 'keyturn_jwks_request_duration_seconds_count{route="jwks"}'));
    expect(sample(text, 'keyturn_jwks_request_duration_seconds_sum{route="jwks"}')).toBeGreaterThan(0);
  });
});

describe('the polling fallback', () => {
  test('a policy change reaches Cache-Control (and: configured issuer and public URL)', async () => {
    const keySet = await KeySetDriver.register(store, uniqueKeySetId('poll'), testPolicy());
    await keySet.rotate();
    const polling = await startJwksServer({
      port: 0,
      host: '127.0.0.1',
      pool: db.pool,
      registry: new Registry(),
      logger: createLogger({ level: 'silent' }),
      pollIntervalMs: 200,
      issuer: 'https://issuer.example',
      publicUrl: 'https://keys.example.com/',
    });
    try {
      const path = `/keysets/${keySet.keySetId}/jwks.json`;
      expect((await get(path, {}, polling.url)).headers.get('cache-control')).toBe('public, max-age=120');
      expect(
        (await get(`/keysets/${keySet.keySetId}/.well-known/openid-configuration`, {}, polling.url)).json(),
      ).toMatchObject({
        issuer: 'https://issuer.example',
        jwks_uri: `https://keys.example.com/keysets/${keySet.keySetId}/jwks.json`,
      });

      await KeySetDriver.register(store, keySet.keySetId, { ...testPolicy(), jwksMaxAge: '1m' });
      await waitFor(
        async () =>
          (await get(path, {}, polling.url)).headers.get('cache-control') === 'public, max-age=60' ? true : undefined,
        2_000,
        'the new max-age',
      );
    } finally {
      await polling.close();
    }
  });
});

describe('closing', () => {
  test('close() returns with an idle keep-alive connection open, without waiting for it, and the port stops answering', async () => {
    const closing = await startJwksServer({
      port: 0,
      host: '127.0.0.1',
      pool: db.pool,
      registry: new Registry(),
      logger: createLogger({ level: 'silent' }),
    });
    expect((await get('/keysets/default/jwks.json', {}, closing.url)).status).toBe(200);
    const started = performance.now();
    await closing.close();
    // Waiting for the idle connection would take its keep-alive timeout (5 s): an outcome, not a speed.
    expect(performance.now() - started).toBeLessThan(4_000);
    await expect(fetch(`${closing.url}/healthz`)).rejects.toThrow();
  });

  test('given a database URL instead of a pool, it serves from a pool of its own, which close() ends', async () => {
    const url = new URL(db.url);
    url.searchParams.set('application_name', 'jwks-own-pool');
    const ownConnections = async () =>
      Number(
        (
          await db.pool.query<{ n: string }>(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE application_name = 'jwks-own-pool'",
          )
        ).rows[0].n,
      );
    // No registry and no logger: a library user's first try.
    const own = await startJwksServer({ port: 0, host: '127.0.0.1', databaseUrl: url.toString() });
    expect((await get('/keysets/default/jwks.json', {}, own.url)).json<Jwks>().keys.map((k) => k.kid)).toEqual(
      await servedKids('default'),
    );
    expect((await get('/metrics', {}, own.url)).text).toContain('keyturn_jwks_requests_total');
    expect(await ownConnections()).toBeGreaterThan(0);
    await own.close();
    await waitFor(async () => (await ownConnections()) === 0 || undefined, 5_000, 'its connections to end', 50);
  });

  test('refuses both a pool and a database URL, or neither', async () => {
    const message = 'startJwksServer needs either a pool or a databaseUrl';
    await expect(startJwksServer({ port: 0, pool: db.pool, databaseUrl: db.url })).rejects.toThrow(message);
    await expect(startJwksServer({ port: 0 })).rejects.toThrow(message);
  });
});

test('no response and no log line carried private key material', async () => {
  const privateValues: string[] = [];
  for (const keySetId of ['default']) {
    const opened = await openActiveKey(store.pool, store.kekRing, keySetId);
    privateValues.push(String(opened!.privateJwk.d));
  }
  const everything = [...bodies, captured.text()].join('\n');
  for (const member of PRIVATE_JWK_MEMBERS) expect(everything).not.toMatch(new RegExp(`"${member}"\\s*:`));
  for (const value of privateValues) expect(everything).not.toContain(value);
  expect(captured.text()).toContain('JWKS rebuilt');
});
