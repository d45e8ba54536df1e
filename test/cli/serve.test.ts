import { PRIVATE_JWK_MEMBERS } from '../../src/domain/private-jwk';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { KeyStore } from '../../src/store/key-store';
import { grantRoles } from '../../src/store/database-roles';
import { KeySetDriver, testPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { waitFor } from '../helpers/wait';
import { randomKekRing } from '../helpers/key-set-worker';
import { freePort } from '../helpers/ports';
import {
  createLoginRole,
  createTestDatabase,
  dropRoles,
  uniqueRoles,
  type TestDatabase,
  type TestRole,
} from '../helpers/postgres';

// `keyturn serve` in a process of its own, as a deployment runs it: logged in as the role `keyturn
// migrate` grants the published keys to (KEYTURN_JWKS_ROLE), with no KEK in its environment. The
// key changes are made beside it as the owner, the way the worker makes them.

const ENTRY = path.join(__dirname, '..', 'helpers', 'keyturn-from-source.ts');
const roles = uniqueRoles();
const ungranted = `${roles.jwks}_ungranted`;
let db: TestDatabase;
let jwksRole: TestRole;
let store: KeyStore;
let dataDir: string;

beforeAll(async () => {
  db = await createTestDatabase();
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-serve-'));
  jwksRole = await createLoginRole(roles.jwks);
  await grantRoles(db.pool, roles);
  store = new KeyStore(db.pool, randomKekRing());
});
afterAll(async () => {
  await db?.drop();
  await dropRoles([...Object.values(roles), ungranted]);
  await rm(dataDir, { recursive: true, force: true });
});

interface ServeProcess {
  child: ChildProcess;
  url: string;
  output: string[];
  exited: Promise<number | null>;
}

/** `keyturn serve` with DATABASE_URL and nothing else of keyturn's configuration (but `env`): no KEK, no Temporal. */
async function startServe(databaseUrl: string, env: Record<string, string> = {}): Promise<ServeProcess> {
  const port = await freePort();
  env = {
    PATH: process.env.PATH!,
    HOME: process.env.HOME!,
    DATABASE_URL: databaseUrl,
    KEYTURN_DATA_DIR: dataDir,
    LOG_LEVEL: 'info',
    ...env,
  };
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', ENTRY, 'serve', '--port', String(port), '--host', '127.0.0.1'],
    {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const output: string[] = [];
  child.stdout!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString()));
  const exited = once(child, 'exit').then(([code]) => code as number | null);
  return { child, url: `http://127.0.0.1:${port}`, output, exited };
}

async function stop(serve: ServeProcess): Promise<number | null> {
  if (serve.child.exitCode === null) serve.child.kill('SIGTERM');
  return serve.exited;
}

type Jwks = { keys: Record<string, unknown>[] };

test('serves the JWKS and discovery as the read-only role without a KEK, and follows rotations and a revocation', async () => {
  const keySet = await KeySetDriver.register(store, uniqueKeySetId('serve'), {
    ...testPolicy(),
    issuer: 'https://issuer.example',
  });
  const first = await keySet.rotate();
  const unnamed = await KeySetDriver.register(store, uniqueKeySetId('serve'), testPolicy());
  // Behind a proxy: the discovery documents name the URL verifiers reach, not the one the server listens on.
  const serve = await startServe(jwksRole.urlFor(db.url), { KEYTURN_PUBLIC_URL: 'https://keys.example.com/auth/' });
  const bodies: string[] = [];
  const kids = async () => {
    const response = await fetch(`${serve.url}/keysets/${keySet.keySetId}/jwks.json`);
    const body = await response.text();
    bodies.push(body);
    return { response, kids: (JSON.parse(body) as Jwks).keys.map((k) => k.kid) };
  };
  try {
    await waitFor(
      async () =>
        serve.child.exitCode === null
          ? (await fetch(`${serve.url}/readyz`).catch(() => undefined))?.ok || undefined
          : true,
      30_000,
      'keyturn serve to be ready',
      100,
    );
    expect(serve.child.exitCode).toBeNull();

    const served = await kids();
    expect(served.kids).toEqual([first]);
    expect(served.response.headers.get('cache-control')).toBe('public, max-age=120');
    const discovery = await (
      await fetch(`${serve.url}/keysets/${keySet.keySetId}/.well-known/openid-configuration`)
    ).json();
    expect(discovery).toEqual({
      issuer: 'https://issuer.example',
      jwks_uri: `https://keys.example.com/auth/keysets/${keySet.keySetId}/jwks.json`,
      id_token_signing_alg_values_supported: ['ES256'],
    });
    // Without an issuer in the policy, the issuer is the document's own public base URL.
    expect(
      await (await fetch(`${serve.url}/keysets/${unnamed.keySetId}/.well-known/openid-configuration`)).json(),
    ).toMatchObject({
      issuer: `https://keys.example.com/auth/keysets/${unnamed.keySetId}`,
      jwks_uri: `https://keys.example.com/auth/keysets/${unnamed.keySetId}/jwks.json`,
    });

    const next = await keySet.addNext();
    await waitFor(async () => (await kids()).kids.includes(next) || undefined, 5_000, 'the next key');
    await keySet.promote(next);
    await keySet.retire(first);
    await waitFor(
      async () => JSON.stringify((await kids()).kids) === JSON.stringify([next]) || undefined,
      5_000,
      'the retirement',
    );
    const spare = await keySet.addNext();
    await waitFor(async () => (await kids()).kids.includes(spare) || undefined, 5_000, 'the spare key');
    await keySet.revoke(spare);
    await waitFor(
      async () => JSON.stringify((await kids()).kids) === JSON.stringify([next]) || undefined,
      5_000,
      'the revocation',
    );
  } finally {
    expect(await stop(serve)).toBe(0);
  }
  for (const key of bodies.flatMap((body) => (JSON.parse(body) as Jwks).keys)) {
    for (const member of PRIVATE_JWK_MEMBERS) expect(key).not.toHaveProperty(member);
  }
  const log = serve.output.join('');
  expect(log).toContain('JWKS server running');
  expect(log).not.toContain(new URL(jwksRole.urlFor(db.url)).password);
  // No warning about a KEK it was given: it was given none.
  expect(log).not.toMatch(/KEYTURN_KEK/);
}, 60_000);

test('as a role without the grant it stops at once, saying to run `keyturn migrate` for that role', async () => {
  const role = await createLoginRole(ungranted);
  const serve = await startServe(role.urlFor(db.url));
  expect(await serve.exited).toBe(1);
  expect(serve.output.join('')).toMatch(
    /keyturn: the database role of DATABASE_URL may not read the published keys \(permission denied for view published_key_sets\): run `keyturn migrate` .*KEYTURN_JWKS_ROLE set to this role/,
  );
}, 60_000);
