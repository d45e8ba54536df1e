import { randomBytes } from 'node:crypto';
import { KeySetClient } from '../../src/client/key-set-client';
import { KeyturnError } from '../../src/domain/errors';
import { startTestDevStack, type TestDevStack } from '../helpers/dev-stack';

// What KeySetClient offers a deployment script beyond the messages the CLI's commands send one by
// one: connecting as the CLI does, `apply` of one key set's policy, and `verify`. Against a real
// Temporal dev server, the worker and a database of this file's own.

let running: TestDevStack;
let keySets: KeySetClient;

beforeAll(async () => {
  running = await startTestDevStack('key-set-client');
  const { stack } = running;
  // The environment a deployment script would have; connect reads it as the CLI does.
  keySets = await KeySetClient.connect({
    env: {
      TEMPORAL_ADDRESS: stack.temporalAddress,
      TEMPORAL_NAMESPACE: stack.namespace,
      KEYTURN_TASK_QUEUE: stack.taskQueue,
    },
  });
}, 120_000);

afterAll(async () => {
  await keySets?.close();
  await running?.stop();
});

const uniqueId = (name: string) => `${name}-${randomBytes(3).toString('hex')}`;

test('apply starts a key set, then leaves a matching policy alone and sends a changed one', async () => {
  const id = uniqueId('apply');
  const created = await keySets.apply(id, { rotationPeriod: '30d' }, { requestedBy: 'key-set-client.test' });
  expect(created).toMatchObject({
    created: true,
    recommissioned: false,
    policy: { algorithm: 'ES256', rotationPeriod: '30d' },
  });

  expect(await keySets.apply(id, { rotationPeriod: '30d' })).toMatchObject({
    created: false,
    recommissioned: false,
    changed: [],
  });

  const changed = await keySets.apply(id, { rotationPeriod: '20d', issuer: 'https://issuer.example' });
  expect(changed.created).toBe(false);
  expect([...changed.changed].sort()).toEqual(['issuer', 'rotationPeriod']);
  expect(changed.previous.rotationPeriod).toBe('30d');
  expect((await keySets.getState(id)).policy).toMatchObject({
    rotationPeriod: '20d',
    issuer: 'https://issuer.example',
  });

  // The whole policy is sent: an optional field left out is removed.
  expect((await keySets.apply(id, { rotationPeriod: '20d' })).changed).toEqual(['issuer']);
});

test('apply takes a decommissioned key set back into service', async () => {
  const id = uniqueId('recommission');
  await keySets.apply(id, {});
  await keySets.decommission(id, { reason: 'retired service', requestedBy: 'key-set-client.test' });
  expect((await keySets.getState(id)).decommissioned).not.toBeNull();

  expect(await keySets.apply(id, {})).toMatchObject({ created: false, recommissioned: true });
  expect((await keySets.getState(id)).decommissioned).toBeNull();
});

test('apply refuses a bad policy before anything is sent, naming every field at fault', async () => {
  const id = uniqueId('refused');
  const refusal = await keySets
    .apply(id, { rotationPeriod: 'soon', prepublish: '40d' })
    .catch((error: unknown) => error);
  expect(refusal).toBeInstanceOf(KeyturnError);
  expect(refusal).toMatchObject({
    code: 'ERR_POLICY_INVALID',
    message: expect.stringMatching(/rotationPeriod.*"soon"/),
  });
  expect(await keySets.isRunning(id)).toBe(false);
});

test('verify checks the workflow against PostgreSQL', async () => {
  const id = uniqueId('verify');
  await keySets.apply(id, {});
  await keySets.waitForActiveKid(id);
  expect(await keySets.verify(id, { databaseUrl: running.db.url })).toEqual({
    keySetId: id,
    violations: [],
    problem: null,
  });

  await expect(keySets.verify(uniqueId('unknown'), { databaseUrl: running.db.url })).rejects.toMatchObject({
    code: 'ERR_KEYSET_NOT_FOUND',
  });
});

test('connect says where it looked when no Temporal answers', async () => {
  await expect(KeySetClient.connect({ address: '127.0.0.1:1', env: {} })).rejects.toThrow(
    /127\.0\.0\.1:1 \(given to KeySetClient\.connect\)/,
  );
});
