import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { Pool } from 'pg';
import { runCli } from '../../src/cli/main';
import { loadMigrations } from '../../src/store/migrate';
import { freePort } from '../helpers/ports';
import { createLoginRole, dropRoles, uniqueRoles } from '../helpers/postgres';

// The CLI in-process through runCli (commander's parseAsync), against a database of its own in the
// run's PostgreSQL. What a command prints is captured; the process is never exited.

let admin: Pool;
let databaseName: string;
let databaseUrl: string;
const savedEnv = { ...process.env };
let stdout: string[];
let stderr: string[];
// The roles `keyturn migrate` creates here: unique, since roles belong to the whole server.
const roles = uniqueRoles();

beforeAll(async () => {
  const serverUrl = process.env.KEYTURN_TEST_DATABASE_URL;
  if (!serverUrl)
    throw new Error(
      'KEYTURN_TEST_DATABASE_URL is not set: run the tests through jest (its global setup starts PostgreSQL)',
    );
  admin = new Pool({ connectionString: serverUrl, max: 1 });
  // Not createTestDatabase(): that one comes migrated, and `migrate` must find an empty database.
  databaseName = `keyturn_cli_${randomBytes(6).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${databaseName}`);
  const url = new URL(serverUrl);
  url.pathname = `/${databaseName}`;
  databaseUrl = url.toString();
});

afterAll(async () => {
  await admin.query(`DROP DATABASE IF EXISTS ${databaseName} WITH (FORCE)`);
  await admin.end();
  await dropRoles(Object.values(roles));
});

beforeEach(() => {
  for (const name of ['DATABASE_URL', 'TEMPORAL_ADDRESS', 'KEYTURN_KEK', 'KEYTURN_DEBUG']) delete process.env[name];
  process.env.LOG_LEVEL = 'silent';
  Object.assign(process.env, {
    KEYTURN_JWKS_ROLE: roles.jwks,
    KEYTURN_WORKER_ROLE: roles.worker,
    KEYTURN_SIGNER_ROLE: roles.signer,
  });
  stdout = [];
  stderr = [];
  jest.spyOn(console, 'log').mockImplementation((...args: unknown[]) => void stdout.push(args.join(' ')));
  jest
    .spyOn(process.stderr, 'write')
    .mockImplementation((chunk: string | Uint8Array) => stderr.push(String(chunk)) > 0);
});

afterEach(() => {
  jest.restoreAllMocks();
  process.env = { ...savedEnv };
});

describe('keyturn migrate', () => {
  it('applies the migrations to DATABASE_URL and prints the versions, then finds nothing to apply', async () => {
    process.env.DATABASE_URL = databaseUrl;

    const shipped = (await loadMigrations()).map((m) => m.version);
    expect(await runCli(['migrate'])).toBe(0);
    expect(stdout).toEqual([
      expect.stringMatching(new RegExp(`^applied migrations ${shipped.join(', ')} to postgres://.*/keyturn_cli_`)),
    ]);
    const { rows } = await withDatabase((db) =>
      db.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version'),
    );
    expect(rows.map((r) => r.version)).toEqual(shipped);

    stdout = [];
    expect(await runCli(['migrate', '--json'])).toBe(0);
    expect(JSON.parse(stdout.join(''))).toMatchObject({ applied: [], latest: shipped.at(-1) });
    expect(stderr).toEqual([]);
  });

  it('says which SQL a DBA must run where the migrating role may not create roles, and finishes once it has run', async () => {
    const suffix = randomBytes(4).toString('hex');
    const dba = {
      jwks: `keyturn_jwks_dba_${suffix}`,
      worker: `keyturn_worker_dba_${suffix}`,
      signer: `keyturn_signer_dba_${suffix}`,
    };
    const owner = await createLoginRole(`keyturn_owner_${suffix}`, 'NOCREATEROLE');
    const database = `keyturn_dba_${suffix}`;
    // As deploy/postgres/init-databases.sh sets one up: owned by keyturn's role, closed to PUBLIC.
    await admin.query(`CREATE DATABASE ${database} OWNER ${owner.name}`);
    await admin.query(`REVOKE CONNECT ON DATABASE ${database} FROM PUBLIC`);
    const url = new URL(databaseUrl);
    url.pathname = `/${database}`;
    try {
      Object.assign(process.env, {
        DATABASE_URL: owner.urlFor(url.toString()),
        KEYTURN_JWKS_ROLE: dba.jwks,
        KEYTURN_WORKER_ROLE: dba.worker,
        KEYTURN_SIGNER_ROLE: dba.signer,
      });

      expect(await runCli(['migrate'])).toBe(1);
      expect(stderr).toEqual([
        `keyturn: the schema is up to date, but ${owner.name}, the role migrating it, may not set up the roles keyturn's processes log in as: ` +
          `have a DBA run CREATE ROLE "${dba.jwks}" LOGIN PASSWORD '<password>'; CREATE ROLE "${dba.worker}" LOGIN PASSWORD '<password>'; ` +
          `CREATE ROLE "${dba.signer}" LOGIN PASSWORD '<password>'; ` +
          '(choosing the passwords), then run `keyturn migrate` again; or set KEYTURN_JWKS_ROLE, KEYTURN_WORKER_ROLE and KEYTURN_SIGNER_ROLE to roles that exist\n',
      ]);

      // The DBA runs it, choosing a password.
      const password = randomBytes(12).toString('hex');
      for (const [statement] of stderr[0].matchAll(/CREATE ROLE [^;]+/g))
        await admin.query(statement.replace('<password>', password));
      stdout = [];
      stderr = [];
      expect(await runCli(['migrate'])).toBe(0);
      expect(stdout).toEqual([
        expect.stringMatching(
          new RegExp(
            `^nothing to apply: .* is at migration \\d+; roles: ${dba.jwks} reads the published keys only, ${dba.worker} reads and writes rows, ${dba.signer} signs and reads the signing clients$`,
          ),
        ),
      ]);
      // keyturn migrate granted CONNECT, which PUBLIC lacks here, and the published keys.
      url.username = dba.jwks;
      url.password = password;
      const jwks = new Pool({ connectionString: url.toString(), max: 1 });
      // DROP DATABASE ... WITH (FORCE) below may end its connection before it has closed.
      jwks.on('error', () => undefined);
      try {
        expect((await jwks.query('SELECT * FROM published_key_sets')).rows).toEqual([]);
      } finally {
        await jwks.end();
      }
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await dropRoles([owner.name, dba.jwks, dba.worker, dba.signer]);
    }
  });

  it('never prints the database password', async () => {
    process.env.DATABASE_URL = databaseUrl;
    const password = new URL(databaseUrl).password;

    expect(await runCli(['migrate'])).toBe(0);
    expect(stdout.join('')).toContain(':***@');
    if (password) expect(stdout.join('')).not.toContain(`:${password}@`);
  });
});

describe('failures become one line and exit code 1', () => {
  it('worker with DATABASE_URL but no KEYTURN_KEK names KEYTURN_KEK and how to make one', async () => {
    process.env.DATABASE_URL = databaseUrl;

    expect(await runCli(['worker'])).toBe(1);
    expect(stderr).toHaveLength(1);
    expect(stderr[0]).toMatch(/^keyturn: KEYTURN_KEK is not set.*openssl rand -base64 32.*\n$/);
    expect(stderr[0].trimEnd()).not.toContain('\n');
    expect(stderr[0]).not.toMatch(/\n\s+at /);
  });

  it('worker with Temporal unreachable says where it looked, within seconds', async () => {
    process.env.DATABASE_URL = databaseUrl;
    process.env.KEYTURN_KEK = randomBytes(32).toString('base64');
    process.env.TEMPORAL_ADDRESS = `127.0.0.1:${await freePort()}`;
    process.env.KEYTURN_METRICS_PORT = String(await freePort());
    process.env.KEYTURN_SDK_METRICS_PORT = String(await freePort());
    const started = Date.now();

    expect(await runCli(['worker'])).toBe(1);
    expect(stderr).toEqual([
      expect.stringMatching(
        /^keyturn: cannot reach Temporal at 127\.0\.0\.1:\d+ \(from TEMPORAL_ADDRESS\): connection refused\. Start one with `keyturn dev`/,
      ),
    ]);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('worker with its metrics port taken names the port and the variable that moves it', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '0.0.0.0', resolve));
    try {
      process.env.DATABASE_URL = databaseUrl;
      process.env.KEYTURN_KEK = randomBytes(32).toString('base64');
      process.env.KEYTURN_METRICS_PORT = String((taken.address() as AddressInfo).port);

      expect(await runCli(['worker'])).toBe(1);
      expect(stderr).toEqual([
        expect.stringMatching(
          new RegExp(
            `^keyturn: port ${process.env.KEYTURN_METRICS_PORT} on 0\\.0\\.0\\.0 is already in use .*worker's metrics endpoint.*KEYTURN_METRICS_PORT`,
          ),
        ),
      ]);
    } finally {
      taken.close();
    }
  });

  it('a bad environment variable is named', async () => {
    process.env.LOG_LEVEL = 'loud';

    expect(await runCli(['migrate'])).toBe(1);
    expect(stderr).toEqual([expect.stringMatching(/^keyturn: invalid environment: LOG_LEVEL must be one of .*\n$/)]);
  });

  it('a bad option value names the option', async () => {
    expect(await runCli(['dev', '--temporal-port', 'many'])).toBe(1);
    expect(stderr.join('')).toMatch(/^keyturn: option '--temporal-port <port>' argument 'many' is invalid/);
  });

  it('a kid starting with "-" is taken as the kid, not as an unknown option', async () => {
    // Refused for the missing reason, before anything is contacted: the kid itself was accepted.
    expect(
      await runCli(['revoke', 'ks', '-ElcXEmFgLFnzdAkC8crykzuVMUOIwQ4uFlcsSAblSQ', '--address', '127.0.0.1:1']),
    ).toBe(1);
    expect(stderr.join('')).toMatch(/^keyturn: revoking a key needs a reason/);
  });

  it('KEYTURN_DEBUG adds the stack trace', async () => {
    process.env.DATABASE_URL = databaseUrl;
    process.env.KEYTURN_DEBUG = '1';

    expect(await runCli(['worker'])).toBe(1);
    expect(stderr[0]).toMatch(/^keyturn: KEYTURN_KEK is not set/);
    expect(stderr.slice(1).join('')).toMatch(/\n\s+at /);
  });
});

async function withDatabase<T>(use: (db: Pool) => Promise<T>): Promise<T> {
  const db = new Pool({ connectionString: databaseUrl, max: 1 });
  try {
    return await use(db);
  } finally {
    await db.end();
  }
}
