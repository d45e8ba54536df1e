import { randomBytes } from 'node:crypto';
import { createServer, connect, type AddressInfo, type Server, type Socket } from 'node:net';
import type { WorkflowHandle } from '@temporalio/client';
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose';
import * as pkcs11 from 'pkcs11js';
import { Registry } from 'prom-client';
import type { AlertNotification } from '../../src/alerts/notification';
import { AwsKmsCustody } from '../../src/custody/aws-kms';
import { CustodyRegistry } from '../../src/custody/custody-registry';
import { Pkcs11Module } from '../../src/custody/pkcs11-module';
import type { CustodySettings } from '../../src/domain/custody-settings';
import type { SigningAlgorithm } from '../../src/domain/algorithms';
import { KeyturnError } from '../../src/domain/errors';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import { KeyRing } from '../../src/issuer/key-ring';
import { startJwksServer, type RunningJwksServer } from '../../src/jwks/server';
import { createLogger } from '../../src/logger';
import { keySetWorkflow } from '../../src/workflows';
import { getStateQuery } from '../../src/workflows/messages';
import { historyText, PRIVATE_MEMBER_KEYS } from '../helpers/history';
import { createKeySetWorker, deliveriesEnded, randomKekRing, settled, uniqueNames } from '../helpers/key-set-worker';
import { startMotoServer, type MotoServer } from '../helpers/moto';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';
import { useTimeSkippingSuite } from '../helpers/time-skipping-suite';
import { waitFor } from '../helpers/wait';

const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;
/** Long enough for a signature that fails at once, far too short for one that waits out the KMS client's timeouts. */
const PROMPT_FAILURE_MS = 10_000;

const suite = useTimeSkippingSuite();
const kekRing = randomKekRing();
let jwks: RunningJwksServer;

beforeAll(async () => {
  jwks = await startJwksServer({
    port: 0,
    host: '127.0.0.1',
    pool: suite.db.pool,
    registry: new Registry(),
    logger: createLogger({ level: 'silent' }),
  });
});
afterAll(async () => {
  await jwks?.close();
});

/**
 * A TCP relay on loopback in front of moto: closed, KMS is unreachable (connections refused, open ones
 * reset) while moto keeps its keys, as AWS KMS does through a network outage; reopened on the same port.
 */
class KmsPath {
  readonly #sockets = new Set<Socket>();
  readonly #server: Server;
  #port = 0;

  private constructor(upstream: URL) {
    this.#server = createServer((client) => {
      const server = connect(Number(upstream.port), upstream.hostname);
      for (const socket of [client, server]) {
        this.#sockets.add(socket);
        socket.on('close', () => this.#sockets.delete(socket));
        socket.on('error', () => socket.destroy());
      }
      client.pipe(server).pipe(client);
      client.on('close', () => server.destroy());
      server.on('close', () => client.destroy());
    });
  }

  static async open(upstream: string): Promise<KmsPath> {
    const path = new KmsPath(new URL(upstream));
    await path.up();
    path.#port = (path.#server.address() as AddressInfo).port;
    return path;
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  async down(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of this.#sockets) socket.destroy();
    await closed;
  }

  async up(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.#port, '127.0.0.1', () => {
        this.#server.off('error', reject);
        resolve();
      });
    });
  }
}

/** A custody backend the test can take away and bring back, with what its failures say. */
interface Backend {
  settings: CustodySettings;
  registry: CustodyRegistry;
  /** Secrets of the backend's access (AWS secret key, token PIN): never in an alert or a history. */
  secrets: string[];
  down(): Promise<void>;
  up(): Promise<void>;
  /** The start of the ERR_CUSTODY_UNAVAILABLE message of a generation for the key set. */
  generationFailure(keySetId: string): string;
  /** The start of the ERR_CUSTODY_UNAVAILABLE message of a signature with the key set's key `kid`. */
  signingFailure(keySetId: string, kid: string): string;
  close(): Promise<void>;
}

async function kmsBackend(): Promise<Backend> {
  const moto: MotoServer = await startMotoServer();
  const path = await KmsPath.open(moto.endpoint).catch(async (error: unknown) => {
    await moto.stop();
    throw error;
  });
  const secretAccessKey = `outage-${randomBytes(12).toString('hex')}`;
  const registry = new CustodyRegistry({
    kekRing,
    factories: {
      'aws-kms': (s) =>
        new AwsKmsCustody({
          region: s.region ?? 'us-east-1',
          endpoint: path.endpoint,
          credentials: { accessKeyId: 'AKIAKEYTURNOUTAGE', secretAccessKey },
        }),
    },
  });
  return {
    settings: { backend: 'aws-kms' },
    registry,
    secrets: [secretAccessKey],
    down: () => path.down(),
    up: () => path.up(),
    generationFailure: (keySetId) => `aws-kms could not generate an ES256 key for key set ${keySetId}: `,
    signingFailure: (keySetId, kid) => `aws-kms could not sign with key ${kid} of key set ${keySetId}: `,
    async close() {
      await registry.close();
      await path.down().catch(() => undefined);
      await moto.stop();
    },
  };
}

/** The token stands in for a removed one while its module is finalised underneath the custody. */
async function tokenBackend(): Promise<Backend> {
  const token: SoftHsmToken = await createSoftHsmToken('keyturn-outage');
  const registry = new CustodyRegistry({ kekRing });
  const module = Pkcs11Module.acquire(token.module);
  return {
    settings: token.settings,
    registry,
    secrets: [token.pin],
    down: async () => module.library.C_Finalize(),
    up: async () => module.library.C_Initialize({ flags: pkcs11.CKF_OS_LOCKING_OK }),
    generationFailure: (keySetId) =>
      `pkcs11 token "${token.label}" could not generate a new ES256 key for key set "${keySetId}": `,
    signingFailure: (keySetId, kid) =>
      `pkcs11 token "${token.label}" could not sign with key ${kid} of key set "${keySetId}": `,
    async close() {
      // The custody's sessions first; the last share of the module finalises it.
      await registry.close();
      module.release();
      await token.close();
    },
  };
}

async function rejection(promise: Promise<unknown>): Promise<KeyturnError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(KeyturnError);
  return error as KeyturnError;
}

async function jwksKids(keySetId: string): Promise<string[]> {
  const response = await fetch(`${jwks.url}/keysets/${keySetId}/jwks.json`);
  expect(response.status).toBe(200);
  return ((await response.json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
}

describe.each([
  ['aws-kms, KMS unreachable', kmsBackend],
  ['pkcs11, the token gone', tokenBackend],
])('custody outage: %s', (_name, makeBackend) => {
  let backend: Backend;
  beforeAll(async () => {
    backend = await makeBackend();
  }, 600_000);
  afterAll(async () => {
    await backend?.close();
  });

  test('generating the next key is a failed step (alerted, backed off, recovered); meanwhile sign fails clearly and the JWKS serves on', async () => {
    const { env, db, bundle } = suite;
    const { keySetId, taskQueue, workflowId } = uniqueNames('outage');
    const alerts: AlertNotification[] = [];
    const worker = await createKeySetWorker({ env, db, bundle, kekRing, taskQueue, alerts, custody: backend.registry });
    let ring: KeyRing | undefined;
    let handle: WorkflowHandle<typeof keySetWorkflow> | undefined;
    let down = false;
    try {
      await worker.runUntil(async () => {
        handle = await env.client.workflow.start(keySetWorkflow, {
          workflowId,
          taskQueue,
          args: [{ keySetId, policy: { ...DEFAULT_POLICY, custody: backend.settings } }],
        });
        const first = (await settled(env, handle)).keys[0];
        expect(first.state).toBe('active');
        ring = await KeyRing.open({
          pool: db.pool,
          kekRing,
          custody: backend.registry,
          keySetIds: [keySetId],
          publicUrl: jwks.url,
          logger: createLogger({ level: 'silent' }),
        });
        const keySetJwks = createRemoteJWKSet(new URL(`${jwks.url}/keysets/${keySetId}/jwks.json`));
        await jwtVerify(await ring.sign(keySetId, { sub: 'before' }), keySetJwks);

        // The backend goes away before the next key is due on day 25 (the policy's 30d rotation, 5d prepublish).
        await backend.down();
        down = true;
        // Day 25 + 12 min: the step has failed after its activity's retries (~31 s) at 0, 1.5, 4 and 8.5 min,
        // and backs off 8 min until its fifth try.
        await env.sleep(25 * DAY + 12 * MINUTE);
        const failing = await handle.query(getStateQuery);
        expect(failing.lastError).toMatchObject({
          step: 'generateNext',
          message: expect.stringContaining(backend.generationFailure(keySetId)),
        });
        // Retried every half minute it would have failed some 20 times by now; backing off, 3 to 5 times.
        expect(failing.lastError!.failures).toBeGreaterThanOrEqual(3);
        expect(failing.lastError!.failures).toBeLessThanOrEqual(5);
        expect(failing.keys.map((k) => [k.kid, k.state])).toEqual([[first.kid, 'active']]);
        // And it waits: three minutes on, still not tried again.
        await env.sleep(3 * MINUTE);
        expect((await handle.query(getStateQuery)).lastError).toEqual(failing.lastError);

        await waitFor(() => (alerts.length > 0 ? true : undefined), 10_000, 'the alert');
        expect(alerts).toHaveLength(1); // one incident however many failures
        expect(alerts[0]).toMatchObject({
          kind: 'opened',
          status: 'firing',
          keySetId,
          step: 'generateNext',
          code: 'ERR_CUSTODY_UNAVAILABLE',
          failures: 1,
          summary: `key set "${keySetId}": generateNext failed 1 time(s) in a row; retrying after a backoff`,
          error: expect.stringContaining(backend.generationFailure(keySetId)),
          hint: expect.stringContaining('the step is retried until it answers'),
        });

        // Signing fails at once, naming the key set and the key; the JWKS still serves the active key.
        const started = Date.now();
        const refused = await rejection(ring.sign(keySetId, { sub: 'during' }));
        expect(Date.now() - started).toBeLessThan(PROMPT_FAILURE_MS);
        expect(refused).toMatchObject({ code: 'ERR_CUSTODY_UNAVAILABLE', keySetId, kid: first.kid });
        expect(refused.message).toContain(backend.signingFailure(keySetId, first.kid));
        expect(await jwksKids(keySetId)).toEqual([first.kid]);

        // Back: the next try (at about 17 min) generates the key and resolves the incident.
        await backend.up();
        down = false;
        await env.sleep(20 * MINUTE);
        const recovered = await settled(env, handle);
        expect(recovered.lastError).toBeNull();
        const next = recovered.keys.find((k) => k.state === 'next')!;
        expect(next).toBeDefined();
        await waitFor(() => (alerts.length > 1 ? true : undefined), 10_000, 'the resolved message');
        expect(alerts.map((a) => [a.kind, a.step, a.summary])).toEqual([
          ['opened', 'generateNext', alerts[0].summary],
          ['resolved', 'generateNext', `key set "${keySetId}" recovered: generateNext succeeded`],
        ]);
        expect(alerts[1].incidentId).toBe(alerts[0].incidentId);

        // The next key is held in custody (no sealed private part stored), non-extractable there.
        const { rows } = await db.pool.query<{
          custody: CustodySettings;
          custody_handle: string | null;
          private_key: Buffer | null;
          alg: SigningAlgorithm;
        }>('SELECT custody, custody_handle, private_key, alg FROM signing_keys WHERE key_set_id = $1 AND kid = $2', [
          keySetId,
          next.kid,
        ]);
        expect(rows[0]).toMatchObject({ custody: backend.settings, private_key: null });
        const custody = await backend.registry.get(backend.settings);
        const held = { keySetId, kid: next.kid, alg: rows[0].alg, handle: rows[0].custody_handle! };
        expect(await custody.properties(held)).toEqual({ extractable: false });

        // The key ring signs again with the active key, and the token verifies against the JWKS, which lists both.
        const token = await ring.sign(keySetId, { sub: 'after' });
        expect(decodeProtectedHeader(token).kid).toBe(first.kid);
        expect((await jwtVerify(token, keySetJwks)).payload.sub).toBe('after');
        await waitFor(
          async () => ((await jwksKids(keySetId)).length === 2 ? true : undefined),
          10_000,
          'the next key in the JWKS',
        );
        expect((await jwksKids(keySetId)).sort()).toEqual([first.kid, next.kid].sort());

        // Nothing secret in what was sent, nor in the workflow's history.
        await deliveriesEnded(env, alerts);
        const sent = JSON.stringify(alerts);
        const history = await historyText(handle);
        for (const text of [sent, history, refused.message]) {
          for (const secret of backend.secrets) expect(text).not.toContain(secret);
          for (const member of PRIVATE_MEMBER_KEYS) expect(text).not.toMatch(member);
        }
        await handle.terminate('test finished');
      });
    } finally {
      if (down) await backend.up();
      await ring?.close();
      // A timer firing for a workflow whose worker is gone would stop the test server's clock.
      if (handle && (await handle.describe()).status.name === 'RUNNING') await handle.terminate('test failed');
    }
  }, 120_000);
});
