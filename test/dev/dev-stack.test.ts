import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { sidePool } from '../helpers/postgres';
import { assertPortFree } from '../../src/runtime/port-check';
import { startTemporalDevServer } from '../../src/dev/temporal-dev-server';
import { createLogger } from '../../src/logger';
import type { InstanceInfo } from '../../src/runtime/instance-file';
import { getStateQuery, keySetWorkflowId } from '../../src/workflows/messages';
import { ActiveKidSearchAttribute, KeySetIdSearchAttribute } from '../../src/workflows/search-attributes';
import { waitFor } from '../helpers/wait';
import { freePort } from '../helpers/ports';
import { freeDevPorts, startDev as startKeyturnDev, stopDev, type DevPorts } from '../helpers/keyturn-dev';
import type { ManagedProcess } from '../../src/runtime/managed-process';

// `keyturn dev` for real: embedded PostgreSQL, the Temporal dev server (the cached CLI) and the
// worker, on free ports in a temporary data folder, in a process of its own that is stopped with
// SIGINT like Ctrl-C. The steps build on each other, so they run in order.

const run = promisify(execFile);
let dataDir: string;
let ports: DevPorts;
let dev: ManagedProcess | undefined;
let firstActiveKid: string;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-dev-'));
  // mkdtemp makes it 0700; run as root, PostgreSQL runs as the `postgres` user and must get through.
  await chmod(dataDir, 0o755);
  ports = await freeDevPorts();
});

afterAll(async () => {
  if (dev) await stopDev(dev);
  await rm(dataDir, { recursive: true, force: true });
});

it('starts PostgreSQL, Temporal and the worker, and the default key set gets an active key', async () => {
  dev = await startDev();

  const instance = JSON.parse(await readFile(path.join(dataDir, 'instance.json'), 'utf8')) as InstanceInfo;
  expect(instance).toMatchObject({
    temporalAddress: `127.0.0.1:${ports.temporal}`,
    namespace: 'default',
    webUiUrl: `http://127.0.0.1:${ports.ui}`,
    databaseUrl: expect.stringContaining(`@127.0.0.1:${ports.pg}/`),
    kekFile: path.join(dataDir, 'kek'),
  });
  // The file says where the KEK is, never what it is.
  const kek = (await readFile(path.join(dataDir, 'kek'), 'utf8')).trim();
  expect(JSON.stringify(instance)).not.toContain(kek);
  expect(dev.output()).not.toContain(kek);

  firstActiveKid = await activeKidFromWorkflow(instance);
  // The JWKS server runs inside `keyturn dev` too, serving the default key set.
  const jwks = (await (await fetch(`http://127.0.0.1:${ports.jwks}/.well-known/jwks.json`)).json()) as {
    keys: { kid: string }[];
  };
  expect(jwks.keys.map((key) => key.kid)).toEqual([firstActiveKid]);
  expect(dev.output()).toContain(`http://127.0.0.1:${ports.jwks}/.well-known/jwks.json`);
  expect(dev.output()).toContain(`http://127.0.0.1:${ports.jwks}/metrics`);
  expect(await activeKidsInDatabase(instance)).toEqual([firstActiveKid]);
}, 60_000);

it("serves the worker's and the JWKS server's metrics on one endpoint, and the Temporal SDK's on their own port", async () => {
  const metrics = await (await fetch(`http://127.0.0.1:${ports.jwks}/metrics`)).text();
  expect(metrics).toContain('keyturn_keys{key_set="default",state="active"} 1');
  expect(metrics).toContain('keyturn_stored_keys{state="active"} 1');
  expect(metrics).toMatch(
    /keyturn_activity_duration_seconds_count\{activity="registerKeySet",outcome="success"\} [1-9]/,
  );
  expect(metrics).toContain('keyturn_jwks_requests_total{key_set="default",code="200"}');
  expect(metrics).toContain('keyturn_rotations_total{key_set="default",trigger="manual"} 0');
  expect(dev!.output()).toContain(`http://127.0.0.1:${ports.sdkMetrics}/metrics`);
  const sdk = await (await fetch(`http://127.0.0.1:${ports.sdkMetrics}/metrics`)).text();
  expect(sdk).toMatch(/^temporal_\w+/m);
});

it('refuses a second dev server on the occupied port, naming the port', async () => {
  expect(dev).toBeDefined();
  const elsewhere = await mkdtemp(path.join(os.tmpdir(), 'keyturn-dev-second-'));
  try {
    const logger = createLogger({ level: 'silent' });
    const outcome = await startTemporalDevServer({
      dataDir: elsewhere,
      port: ports.temporal,
      uiPort: await freePort(),
      logger,
    }).then(
      // Started after all: stop it so the run can end, and fail below.
      async (server) => void (await server.stop()),
      (error: Error) => error,
    );
    expect(outcome).toBeInstanceOf(Error);
    expect((outcome as Error).message).toContain(`port ${ports.temporal} on 127.0.0.1 is already in use`);
    expect((outcome as Error).message).toContain('--temporal-port');
  } finally {
    await rm(elsewhere, { recursive: true, force: true });
  }
});

it('runs the signer beside the JWKS server with no client; a client added beside it and `token sign` beside it sign tokens the JWKS verifies under its issuer', async () => {
  const banner = dev!.output();
  const signerUrl = new RegExp(`signer +(http://127\\.0\\.0\\.1:${ports.signer})/v1/keysets/<id>/sign`).exec(
    banner,
  )?.[1];
  expect(signerUrl).toBe(`http://127.0.0.1:${ports.signer}`);
  expect(banner).toContain('keyturn signer client add <name> --key-sets default');
  const instance = JSON.parse(await readFile(path.join(dataDir, 'instance.json'), 'utf8')) as InstanceInfo;
  const pool = sidePool(instance.databaseUrl!, 1);
  try {
    expect((await pool.query('SELECT count(*)::int AS n FROM signer_clients')).rows[0].n).toBe(0);
  } finally {
    await pool.end();
  }

  // As an operator beside `keyturn dev` would: a process of its own, finding the database in the instance file.
  const env: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'silent' };
  delete env.DATABASE_URL;
  const added = await run(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(__dirname, '..', 'helpers', 'keyturn-from-source.ts'),
      ...['signer', 'client', 'add', 'dev-test', '--key-sets', 'default', '--data-dir', dataDir, '--json'],
    ],
    { env },
  );
  const { secret } = JSON.parse(added.stdout) as { secret: string };
  const token = await waitFor(
    async () => {
      const response = await fetch(`${signerUrl}/v1/keysets/default/sign`, {
        method: 'POST',
        headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
        body: JSON.stringify({ claims: { sub: 'dev' }, ttl: '1m' }),
      });
      return response.ok ? ((await response.json()) as { token: string }).token : undefined;
    },
    10_000,
    'a token from the signer',
    100,
  );
  const jwksUrl = `http://127.0.0.1:${ports.jwks}`;
  const jwks = createRemoteJWKSet(new URL(`${jwksUrl}/.well-known/jwks.json`));
  const { payload } = await jwtVerify(token, jwks, { issuer: jwksUrl });
  expect(payload.sub).toBe('dev');

  // `keyturn token sign` beside it names the issuer the dev JWKS server's discovery does, not PORT's default.
  const signed = await run(
    process.execPath,
    [
      '--import',
      'tsx',
      path.join(__dirname, '..', 'helpers', 'keyturn-from-source.ts'),
      ...['token', 'sign', 'default', '--sub', 'cli', '--data-dir', dataDir],
    ],
    { env },
  );
  const { payload: cliPayload } = await jwtVerify(signed.stdout.trim(), jwks, { issuer: jwksUrl });
  expect(cliPayload.sub).toBe('cli');
});

it('stops cleanly on SIGINT, and a restart on the same data folder has the same active key', async () => {
  expect(await stopDev(dev!)).toBe(0);
  dev = undefined;
  for (const port of Object.values(ports))
    await expect(assertPortFree('127.0.0.1', port, 'test', '')).resolves.toBeUndefined();
  await expect(stat(path.join(dataDir, 'instance.json'))).rejects.toMatchObject({ code: 'ENOENT' });

  dev = await startDev();
  const instance = JSON.parse(await readFile(path.join(dataDir, 'instance.json'), 'utf8')) as InstanceInfo;
  expect(await activeKidFromWorkflow(instance)).toBe(firstActiveKid);
  expect(await activeKidsInDatabase(instance)).toEqual([firstActiveKid]);
}, 60_000);

/** `keyturn dev` on the test's ports and folder, with every key set's series (the metrics test reads the default key set's). */
function startDev(): Promise<ManagedProcess> {
  return startKeyturnDev(dataDir, ports, { env: { LOG_LEVEL: 'warn', KEYTURN_METRICS_PER_KEY_SET: 'true' } });
}

/** The active kid as the workflow reports it through its getState query, once there is one. */
async function activeKidFromWorkflow(instance: InstanceInfo): Promise<string> {
  const connection = await Connection.connect({ address: instance.temporalAddress });
  try {
    const handle = new Client({ connection, namespace: instance.namespace }).workflow.getHandle(
      keySetWorkflowId('default'),
    );
    const deadline = Date.now() + 20_000;
    for (;;) {
      const status = await handle.query(getStateQuery).catch(() => undefined);
      const active = status?.keys.find((key) => key.state === 'active');
      if (active) {
        // The Web UI's list can filter on these: kept current by the workflow.
        const description = await handle.describe();
        expect(description.typedSearchAttributes.get(KeySetIdSearchAttribute)).toBe('default');
        await waitFor(
          async () =>
            (await handle.describe()).typedSearchAttributes.get(ActiveKidSearchAttribute) === active.kid || undefined,
          10_000,
          'ActiveKid search attribute',
          200,
        );
        expect(await description.staticSummary()).toBe('JWT key set default — ES256, rotates every 30d');
        return active.kid;
      }
      if (Date.now() > deadline) throw new Error(`no active key: ${JSON.stringify(status)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  } finally {
    await connection.close();
  }
}

async function activeKidsInDatabase(instance: InstanceInfo): Promise<string[]> {
  const pool = sidePool(instance.databaseUrl!, 1);
  try {
    const { rows } = await pool.query<{ kid: string }>(
      "SELECT kid FROM signing_keys WHERE key_set_id = 'default' AND state = 'active'",
    );
    return rows.map((row) => row.kid);
  } finally {
    await pool.end();
  }
}
