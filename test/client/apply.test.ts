import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ScheduleNotFoundError, type Client } from '@temporalio/client';
import { WorkflowNotFoundError } from '@temporalio/common';
import { applyKeySets, SUPERVISOR_WORKFLOW_ID, type ApplyReport } from '../../src/client/apply';
import { runCli } from '../../src/cli/main';
import { connectClient } from '../../src/client/connect';
import { parseKeySetsFile } from '../../src/client/key-sets-file';
import type { DevStack } from '../../src/dev/dev-stack';
import { DEFAULT_POLICY } from '../../src/domain/policy';
import {
  getStateQuery,
  keySetWorkflowId,
  SUPERVISOR_SCHEDULE_ID,
  SUPERVISOR_WORKFLOW_TYPE,
} from '../../src/workflows/messages';
import { waitFor } from '../helpers/wait';
import { startTestDevStack, type TestDevStack } from '../helpers/dev-stack';

// `apply` against a real Temporal dev server, the worker and a database of this file's own. Each
// test names key sets of its own; the prune test, which decommissions every key set the file does
// not list, runs last.

let running: TestDevStack;
let dataDir: string;
let stack: DevStack;
let client: Client;
const savedEnv = { ...process.env };

beforeAll(async () => {
  running = await startTestDevStack('apply');
  ({ stack, dataDir } = running);
  client = await connectClient({ address: stack.temporalAddress, namespace: stack.namespace, origin: 'the test' });
}, 120_000);

afterAll(async () => {
  await client?.connection.close();
  await running?.stop();
});

afterEach(() => {
  jest.restoreAllMocks();
  process.env = { ...savedEnv };
});

const ids = (...names: string[]) => names.map((name) => `${name}-${randomBytes(3).toString('hex')}`);

/** A key sets file: each key set with the seed policy plus `fields`. */
function yaml(keySets: Record<string, Record<string, string>>, interval?: string): string {
  const lines = interval ? ['supervisor:', `  interval: ${interval}`, 'keySets:'] : ['keySets:'];
  for (const [id, fields] of Object.entries(keySets)) {
    lines.push(`  - id: ${id}`, ...Object.entries(fields).map(([field, value]) => `    ${field}: ${value}`));
  }
  return `${lines.join('\n')}\n`;
}

function apply(text: string, options: { prune?: boolean; dryRun?: boolean } = {}): Promise<ApplyReport> {
  return applyKeySets(client, parseKeySetsFile(text), { taskQueue: stack.taskQueue, ...options });
}

/** Every execution, running or not, ever started under the key set's workflow id. */
async function executions(keySetId: string): Promise<number> {
  const query = `WorkflowId = '${keySetWorkflowId(keySetId)}'`;
  // Visibility lags a little behind the start: wait for the first, then for any straggler.
  await waitFor(
    async () => ((await client.workflow.count(query)).count > 0 ? true : undefined),
    10_000,
    `${keySetId} in visibility`,
    100,
  );
  await new Promise((resolve) => setTimeout(resolve, 500));
  return (await client.workflow.count(query)).count;
}

const policyOf = async (keySetId: string) =>
  (await client.workflow.getHandle(keySetWorkflowId(keySetId)).query(getStateQuery)).policy;

async function exists(keySetId: string): Promise<boolean> {
  return client.workflow
    .getHandle(keySetWorkflowId(keySetId))
    .describe()
    .then(
      () => true,
      (error: unknown) => (error instanceof WorkflowNotFoundError ? false : Promise.reject(error)),
    );
}

/** `keyturn apply` in-process, on this file's Temporal; resolves with exit code and output. */
async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  process.env.KEYTURN_TASK_QUEUE = stack.taskQueue;
  process.env.KEYTURN_DATA_DIR = dataDir;
  process.env.LOG_LEVEL = 'silent';
  const stdout: string[] = [];
  const stderr: string[] = [];
  jest.spyOn(console, 'log').mockImplementation((...parts: unknown[]) => void stdout.push(parts.join(' ')));
  jest
    .spyOn(process.stderr, 'write')
    .mockImplementation((chunk: string | Uint8Array) => stderr.push(String(chunk)) > 0);
  const code = await runCli(['apply', '--address', stack.temporalAddress, ...args]);
  jest.restoreAllMocks();
  return { code, stdout: stdout.join('\n'), stderr: stderr.join('') };
}

async function fileWith(text: string): Promise<string> {
  const file = path.join(dataDir, `keysets-${randomBytes(3).toString('hex')}.yaml`);
  await writeFile(file, text);
  return file;
}

test('applied twice: one workflow per key set, and the second run leaves everything alone', async () => {
  const [a, b] = ids('twice-a', 'twice-b');
  const text = yaml({ [a]: {}, [b]: { algorithm: 'EdDSA' } });

  expect(await apply(text)).toMatchObject({
    dryRun: false,
    created: [a, b],
    changed: [],
    unchanged: [],
    pruned: [],
    warnings: [],
  });
  expect(await apply(text)).toMatchObject({
    created: [],
    changed: [],
    unchanged: [a, b],
    schedule: 'unchanged',
    warnings: [],
  });

  expect(await executions(a)).toBe(1);
  expect(await executions(b)).toBe(1);
  expect(await policyOf(b)).toEqual({ ...DEFAULT_POLICY, algorithm: 'EdDSA' });
});

test('two applies at once: still one workflow per key set', async () => {
  const keySets = ids('together-a', 'together-b', 'together-c');
  const text = yaml(Object.fromEntries(keySets.map((id) => [id, {}])));

  const reports = await Promise.all([apply(text), apply(text)]);

  for (const report of reports) expect([...report.created, ...report.unchanged].sort()).toEqual([...keySets].sort());
  for (const id of keySets) expect(await executions(id)).toBe(1);
});

test('a changed policy is sent to the running workflow and reported with its fields', async () => {
  const [id] = ids('changed');
  await apply(yaml({ [id]: {} }));
  const file = await fileWith(
    yaml({ [id]: { rotationPeriod: '10d', gracePeriod: '2d', issuer: 'https://auth.example' } }),
  );

  const { code, stdout, stderr } = await cli(['-f', file]);

  expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  expect(stdout).toContain(`applied ${file} to ${stack.temporalAddress}`);
  expect(stdout).toMatch(
    new RegExp(
      `changed\\s+${id}: rotationPeriod 30d → 10d, gracePeriod 5d → 2d, issuer \\(none\\) → https://auth.example`,
    ),
  );
  expect(await policyOf(id)).toEqual({
    ...DEFAULT_POLICY,
    rotationPeriod: '10d',
    gracePeriod: '2d',
    issuer: 'https://auth.example',
  });

  const again = await cli(['-f', file, '--json']);
  expect(again.code).toBe(0);
  expect(JSON.parse(again.stdout)).toMatchObject({ created: [], changed: [], unchanged: [id] });
});

test('two applies at once with different policies: the Update applied last wins, in the workflow and in PostgreSQL alike', async () => {
  const [id] = ids('racing');
  const [tenDays, twentyDays] = [
    yaml({ [id]: { rotationPeriod: '10d' } }),
    yaml({ [id]: { rotationPeriod: '20d', retirement: '2d' } }),
  ];

  await Promise.all([apply(tenDays), apply(twentyDays)]);

  const inWorkflow = await policyOf(id);
  expect([
    { ...DEFAULT_POLICY, rotationPeriod: '10d' },
    { ...DEFAULT_POLICY, rotationPeriod: '20d', retirement: '2d' },
  ]).toContainEqual(inWorkflow);
  const stored = await running.db.pool.query('SELECT policy FROM key_sets WHERE id = $1', [id]);
  expect(stored.rows[0].policy).toEqual(inWorkflow);
  expect(await executions(id)).toBe(1);
});

test('a field left out of the file is removed from the running policy (issuer, publishedAt)', async () => {
  const [id] = ids('removed');
  await apply(yaml({ [id]: { issuer: 'https://auth.example', publishedAt: '["https://cdn.example/jwks.json"]' } }));
  expect(await policyOf(id)).toMatchObject({
    issuer: 'https://auth.example',
    publishedAt: ['https://cdn.example/jwks.json'],
  });

  const report = await apply(yaml({ [id]: {} }));
  expect(report.changed).toEqual([
    {
      id,
      fields: ['issuer', 'publishedAt'],
      from: { issuer: 'https://auth.example', publishedAt: ['https://cdn.example/jwks.json'] },
      to: {},
    },
  ]);
  expect(report.warnings).toEqual([]);
  expect(await policyOf(id)).toEqual(DEFAULT_POLICY);
});

test("a policy above the worker's ceilings is refused by the key set's workflow, in one line naming the field", async () => {
  const [id] = ids('too-long');
  // The worker's default ceiling for maxTokenTtl is a day.
  const file = await fileWith(yaml({ [id]: { maxTokenTtl: '2d', gracePeriod: '3d' } }));

  const { code, stderr } = await cli(['-f', file]);

  expect(code).toBe(1);
  expect(stderr.trimEnd()).not.toContain('\n');
  expect(stderr).toContain(`key set "${id}"`);
  expect(stderr).toContain(
    "maxTokenTtl: 2d is above this deployment's ceiling 1d (KEYTURN_MAX_TOKEN_TTL_CEILING on the worker)",
  );
  expect((await running.db.pool.query('SELECT 1 FROM key_sets WHERE id = $1', [id])).rowCount).toBe(0);
});

test('an invalid file is refused whole, every problem listed, and nothing changes', async () => {
  const [existing, fresh] = ids('kept', 'not-created');
  await apply(yaml({ [existing]: {} }));
  const file = await fileWith(
    yaml({
      [existing]: { rotationPeriod: '7d' }, // valid on its own: must not be applied either
      [fresh]: {},
      'bad id!': {},
      broken: { algorithm: 'HS256', gracePeriod: '1m' },
    }),
  );

  const { code, stdout, stderr } = await cli(['-f', file]);

  expect(code).toBe(1);
  expect(stdout).toBe('');
  expect(stderr.trimEnd()).not.toContain('\n');
  expect(stderr).toMatch(/^keyturn: .*keysets-\w+\.yaml has 3 problems, nothing was applied: /);
  expect(stderr).toContain('line 5: keySets[2].id: "bad id!" is not a valid key set id');
  expect(stderr).toContain('line 7: key set "broken" algorithm: "HS256" is not supported');
  expect(stderr).toContain('line 8: key set "broken" gracePeriod: 1m is shorter than maxTokenTtl 1h');
  expect(await exists(fresh)).toBe(false);
  expect(await policyOf(existing)).toEqual(DEFAULT_POLICY);
});

test('--dry-run prints the plan and changes nothing', async () => {
  const [existing, fresh] = ids('dry-kept', 'dry-new');
  await apply(yaml({ [existing]: {} }, '5m'));
  const before = await client.schedule.getHandle(SUPERVISOR_SCHEDULE_ID).describe();
  const file = await fileWith(yaml({ [existing]: { retirement: '2d' }, [fresh]: {} }, '7m'));

  const { code, stdout } = await cli(['-f', file, '--dry-run', '--json']);

  expect(code).toBe(0);
  expect(JSON.parse(stdout)).toEqual({
    dryRun: true,
    created: [fresh],
    changed: [{ id: existing, fields: ['retirement'], from: { retirement: '1d' }, to: { retirement: '2d' } }],
    unchanged: [],
    recommissioned: [],
    pruned: [],
    schedule: 'updated',
    warnings: [],
  });
  const human = await cli(['-f', file, '--dry-run']);
  expect(human.stdout).toMatch(/^dry run, nothing changed: /);
  expect(human.stdout).toMatch(new RegExp(`would create\\s+${fresh}`));

  expect(await exists(fresh)).toBe(false);
  expect(await policyOf(existing)).toEqual(DEFAULT_POLICY);
  expect((await client.schedule.getHandle(SUPERVISOR_SCHEDULE_ID).describe()).spec.intervals).toEqual(
    before.spec.intervals,
  );
});

test('the supervisor schedule exists after apply with the interval of the file and overlap SKIP; applying again updates it', async () => {
  const handle = client.schedule.getHandle(SUPERVISOR_SCHEDULE_ID);
  await handle
    .delete()
    .catch((error: unknown) => (error instanceof ScheduleNotFoundError ? undefined : Promise.reject(error)));
  const [id] = ids('scheduled');

  expect((await apply(yaml({ [id]: {} }))).schedule).toBe('created');
  let schedule = await handle.describe();
  expect(schedule.spec.intervals).toEqual([expect.objectContaining({ every: 5 * 60_000 })]);
  expect(schedule.policies.overlap).toBe('SKIP');
  expect(schedule.action).toMatchObject({
    type: 'startWorkflow',
    workflowType: SUPERVISOR_WORKFLOW_TYPE,
    taskQueue: stack.taskQueue,
    workflowId: SUPERVISOR_WORKFLOW_ID,
  });

  expect((await apply(yaml({ [id]: {} }, '10m'))).schedule).toBe('updated');
  schedule = await handle.describe();
  expect(schedule.spec.intervals).toEqual([expect.objectContaining({ every: 10 * 60_000 })]);
  expect(schedule.policies.overlap).toBe('SKIP');
  expect(schedule.action).toMatchObject({ workflowType: SUPERVISOR_WORKFLOW_TYPE, workflowId: SUPERVISOR_WORKFLOW_ID });

  expect((await apply(yaml({ [id]: {} }, '10m'))).schedule).toBe('unchanged');
});

test('a key set whose workflow was terminated runs again once the supervisor schedule fires', async () => {
  const [id] = ids('supervised');
  await apply(yaml({ [id]: {} }));
  const handle = client.workflow.getHandle(keySetWorkflowId(id));
  const activeKid = await stack.keySets.waitForActiveKid(id);
  await handle.terminate('an operator mistake');

  await client.schedule.getHandle(SUPERVISOR_SCHEDULE_ID).trigger();

  await waitFor(
    async () => ((await handle.describe()).status.name === 'RUNNING' ? true : undefined),
    20_000,
    'the restarted workflow',
    200,
  );
  // The new run resumed from PostgreSQL: the same key is active, none was generated.
  expect(await stack.keySets.waitForActiveKid(id)).toBe(activeKid);
  expect((await handle.query(getStateQuery)).keys.map((k) => k.kid)).toEqual([activeKid]);
  expect(await executions(id)).toBe(2);
});

test('a file of many key sets: applied concurrently, reported in the file’s order, its progress on stderr one line per tenth', async () => {
  const keySets = ids(...Array.from({ length: 120 }, (_, i) => `many-${i}`));
  const file = await fileWith(yaml(Object.fromEntries(keySets.map((id) => [id, {}]))));

  const { code, stdout, stderr } = await cli(['-f', file, '--json', '--concurrency', '16']);

  expect(code).toBe(0);
  expect(JSON.parse(stdout)).toMatchObject({ created: keySets, changed: [], unchanged: [], recommissioned: [] });
  const lines = stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(10);
  expect(lines[0]).toMatch(/^key sets applied: 12 of 120 done \(10%\), [\d.,]+\/s, 108 left, about \d+ (s|min)$/);
  expect(lines[9]).toMatch(/^key sets applied: 120 of 120 done \(100%\), [\d.,]+\/s, in \d+ (s|min)$/);
  // Applied again: every one found running, its policy unchanged.
  const again = await cli(['-f', file, '--json']);
  expect({ code: again.code, lastLine: again.stderr.trimEnd().split('\n').at(-1) }).toEqual({
    code: 0,
    lastLine: expect.stringMatching(/^key sets applied: 120 of 120 done/),
  });
  expect(JSON.parse(again.stdout)).toMatchObject({ created: [], changed: [], unchanged: keySets });
  for (const id of keySets.slice(0, 3)) expect(await executions(id)).toBe(1);
});

test('--concurrency takes a whole number from 1 to 1000', async () => {
  const file = await fileWith(yaml({ [ids('bounds')[0]]: {} }));
  for (const bad of ['0', '1001', 'many', '2.5']) {
    const { code, stderr } = await cli(['-f', file, '--concurrency', bad]);
    expect({ bad, code, stderr }).toEqual({
      bad,
      code: 1,
      stderr: expect.stringContaining('--concurrency <n> takes a whole number from 1 to 1000'),
    });
  }
});

test('--prune decommissions the running key sets the file does not list, once', async () => {
  const [kept] = ids('pruning-kept');
  const others = await runningKeySets();
  expect(others.length).toBeGreaterThan(0);
  const text = yaml({ [kept]: {} }, '10m');

  const plan = await apply(text, { prune: true, dryRun: true });
  expect(plan.pruned).toEqual(others);
  expect((await client.workflow.getHandle(keySetWorkflowId(others[0])).query(getStateQuery)).decommissioned).toBeNull();

  const report = await apply(text, { prune: true });
  expect(report).toMatchObject({ created: [kept], pruned: others });
  for (const id of others) {
    const state = await client.workflow.getHandle(keySetWorkflowId(id)).query(getStateQuery);
    expect(state.decommissioned).toMatchObject({ reason: 'pruned by apply' });
  }
  expect((await client.workflow.getHandle(keySetWorkflowId(kept)).query(getStateQuery)).decommissioned).toBeNull();

  // Already winding down: nothing more to do.
  expect(await apply(text, { prune: true })).toMatchObject({ created: [], unchanged: [kept], pruned: [] });

  // Listed again while winding down: back in service, with a new key, and seen by status and the supervisor.
  const [listedAgain] = others;
  const relisted = await apply(yaml({ [kept]: {}, [listedAgain]: {} }, '10m'));
  expect(relisted).toMatchObject({ recommissioned: [listedAgain], pruned: [] });
  await stack.keySets.waitForActiveKid(listedAgain);
  expect(
    (await client.workflow.getHandle(keySetWorkflowId(listedAgain)).query(getStateQuery)).decommissioned,
  ).toBeNull();
  const stored = await running.db.pool.query('SELECT decommissioned_at FROM key_sets WHERE id = $1', [listedAgain]);
  expect(stored.rows[0].decommissioned_at).toBeNull();
});

async function runningKeySets(): Promise<string[]> {
  const found: string[] = [];
  for await (const execution of client.workflow.list({
    query: `WorkflowType = 'keySetWorkflow' AND ExecutionStatus = 'Running'`,
  })) {
    found.push(execution.workflowId.replace(/^keyset\//, ''));
  }
  return found.sort();
}
