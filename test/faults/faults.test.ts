import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection, WorkflowUpdateStage, type UpdateDefinition } from '@temporalio/client';
import { Pool } from 'pg';
import { KeySetClient } from '../../src/client/key-set-client';
import { parseKekRing } from '../../src/crypto/kek';
import { policyTimings } from '../../src/domain/policy';
import { KeyRing } from '../../src/issuer/key-ring';
import { createLogger } from '../../src/logger';
import {
  decommissionUpdate,
  keySetWorkflowId,
  recommissionUpdate,
  revokeKeyUpdate,
  updatePolicyUpdate,
} from '../../src/workflows/messages';
import { ExternalPostgres } from '../helpers/external-postgres';
import { faultPointEnv, waitForFaultPoints, type FaultMoment, type FaultPoint } from '../helpers/fault-points';
import { keySetProblems } from '../helpers/key-set-problems';
import { secondsPolicy, uniqueKeySetId } from '../helpers/key-sets';
import { waitFor } from '../helpers/wait';
import {
  keyturnEnv,
  runKeyturnProcess,
  startJwksServer,
  startWorker,
  type Deployment,
} from '../helpers/keyturn-processes';
import { ProcessGroup } from '../helpers/processes';
import { TemporalServer } from '../helpers/temporal-server';
import { TokenTraffic } from '../helpers/token-traffic';

// keyturn deployed as in production, on loopback: PostgreSQL and the Temporal dev server as processes
// of their own, `keyturn serve` and `keyturn worker` as processes, a key ring in this process signing
// tokens throughout and a cache-abiding verifier per key set checking them. Then faults: the worker
// SIGKILLed at every key change boundary, two workers at once, PostgreSQL down across transitions,
// Temporal killed and restarted. After each, for every key set involved: no unexpired token rejected,
// no key duplicated or lost, one active key, every lifecycle window honoured as the audit trail's
// recorded times show; at the end, `keyturn verify` passes for all of them. The steps build on each
// other, so they run in order.

/** Seconds-long, so that a key set reaches any step of its lifecycle within about ten seconds. */
const POLICY = secondsPolicy();
const { rotationPeriodMs, prepublishMs, gracePeriodMs, retirementMs } = policyTimings(POLICY);

/**
 * The task queue of every scenario. The first uses three more: a worker's pool holds ten PostgreSQL
 * connections and each stopped key change keeps its own, so the fault points are split over four
 * workers: the lifecycle's key changes and the operator commands' changes, each stopped before its
 * commits and after.
 */
const QUEUE = 'keyturn';
const SECOND_QUEUE = 'keyturn-after-commit';
const COMMANDS_QUEUE = 'keyturn-commands';
const COMMANDS_SECOND_QUEUE = 'keyturn-commands-after-commit';

/** How long recovery may take: a killed worker's activities are retried only once their start-to-close timeout ends. */
const RECOVERY_TIMEOUT_MS = 120_000;
/** How long before its key sets' transitions fall due an outage begins, and how long it lasts. */
const OUTAGE_LEAD_MS = 500;
const OUTAGE_MS = 4_000;

const logger = createLogger({ level: 'silent' });
/** PostgreSQL and Temporal, stopped last. */
const infrastructure = new ProcessGroup();
/** Every keyturn process, stopped first. */
const keyturn = new ProcessGroup();
let postgres: ExternalPostgres;
let temporal: TemporalServer;
let deployment: Omit<Deployment, 'taskQueue'>;
let jwksUrl: string;
let pool: Pool;
let connection: Connection;
let client: Client;
let ring: KeyRing;

beforeAll(async () => {
  [postgres, temporal] = await Promise.all([
    ExternalPostgres.start(infrastructure),
    TemporalServer.start(infrastructure),
  ]);
  deployment = {
    databaseUrl: postgres.url,
    kek: randomBytes(32).toString('base64'),
    temporalAddress: temporal.address,
  };
  // As a deployment does: the schema first (the JWKS server only reads its views), then the servers.
  const migrated = await runKeyturnProcess(keyturn, ['migrate'], keyturnEnv({ ...deployment, taskQueue: QUEUE }));
  if (migrated.code !== 0) throw new Error(`keyturn migrate failed: ${migrated.output}`);
  jwksUrl = (await startJwksServer(keyturn, { ...deployment, taskQueue: QUEUE })).url;
  pool = new Pool({ connectionString: postgres.url, max: 4 });
  // The outage scenario takes PostgreSQL away under idle connections.
  pool.on('error', () => undefined);
  connection = await Connection.connect({ address: temporal.address });
  client = new Client({ connection });
  // Its tokens' iss: any URL will do, the verifier here checks keys and lifetimes.
  ring = await KeyRing.open({
    databaseUrl: postgres.url,
    kekRing: parseKekRing(deployment.kek),
    logger,
    publicUrl: 'https://keys.example.com',
  });
}, 180_000);

afterAll(async () => {
  await ring?.close();
  await pool?.end();
  await connection?.close();
  await keyturn.stopAll();
  await infrastructure.stopAll();
  await postgres?.remove();
  await temporal?.remove();
}, 120_000);

function keySetsOn(taskQueue: string): KeySetClient {
  return new KeySetClient(client, taskQueue);
}

function workerOn(taskQueue: string, env?: NodeJS.ProcessEnv) {
  return startWorker(keyturn, { ...deployment, taskQueue, jwksUrl }, env);
}

/** A step of a key set's life and when a key set started under POLICY reaches it. */
interface Boundary {
  /** What the worker does there, in words. */
  what: string;
  /** The key change's key_operations.kind. */
  kind: string;
  occurrence: number;
  dueMs: number;
  /** The operator's command that brings the key set there, given once it is started; scheduled steps need none. */
  command?: (keySets: KeySetClient, keySetId: string) => Promise<void>;
  /** The command ends the key set's life: its workflow completes instead of promoting again. */
  ends?: boolean;
}

const SCHEDULED: Boundary[] = [
  { what: 'generating the next key', kind: 'generate', occurrence: 2, dueMs: rotationPeriodMs - prepublishMs },
  {
    what: 'recording that the next key is listed at every JWKS URL',
    kind: 'publish',
    occurrence: 1,
    dueMs: rotationPeriodMs - prepublishMs,
  },
  { what: 'promoting the next key', kind: 'promote', occurrence: 2, dueMs: rotationPeriodMs },
  {
    what: 'retiring a key at the end of its grace period',
    kind: 'retire',
    occurrence: 1,
    dueMs: rotationPeriodMs + gracePeriodMs,
  },
  {
    what: 'destroying a retired key',
    kind: 'destroy',
    occurrence: 1,
    dueMs: rotationPeriodMs + gracePeriodMs + retirementMs,
  },
];

const EVERY_KEY_CHANGE: Boundary[] = [
  { what: "generating a key set's first key", kind: 'generate', occurrence: 1, dueMs: 0 },
  { what: "promoting a key set's first key", kind: 'promote', occurrence: 1, dueMs: 0 },
  ...SCHEDULED,
  {
    what: 'revoking the next key',
    kind: 'revoke',
    occurrence: 1,
    dueMs: rotationPeriodMs - prepublishMs,
    command: revokeNextKey,
  },
  {
    what: 'winding a decommissioned key set down',
    kind: 'wind-down',
    occurrence: 1,
    dueMs: 0,
    command: decommission,
    ends: true,
  },
];

/** The changes the workflow's first read of its keys and the operator commands make, each one a boundary too. */
const EVERY_COMMAND_CHANGE: Boundary[] = [
  {
    what: "registering the key set (the workflow's first read of its keys)",
    kind: 'register',
    occurrence: 1,
    dueMs: 0,
  },
  { what: 'recording a policy change', kind: 'policy', occurrence: 1, dueMs: 0, command: changeRetirement },
  {
    what: 'recording a pause (a resume queued behind it)',
    kind: 'paused',
    occurrence: 1,
    dueMs: 0,
    command: pauseAndResume,
  },
  {
    what: 'withdrawing a published next key after an algorithm change',
    kind: 'withdraw',
    occurrence: 1,
    dueMs: rotationPeriodMs - prepublishMs,
    command: changeAlgorithmOnceNextKeyIsListed,
  },
  {
    what: 'taking a decommissioned key set back into service',
    kind: 'recommission',
    occurrence: 1,
    dueMs: 0,
    command: decommissionAndRecommission,
  },
];

/** Sends an Update and returns once the workflow has accepted it: its command may be held up at a fault point. */
async function accepted<Arg>(keySetId: string, update: UpdateDefinition<unknown, [Arg]>, arg: Arg): Promise<void> {
  await client.workflow
    .getHandle(keySetWorkflowId(keySetId))
    .startUpdate(update, { args: [arg], waitForStage: WorkflowUpdateStage.ACCEPTED });
}

async function changeRetirement(keySets: KeySetClient, keySetId: string): Promise<void> {
  await keySets.waitForActiveKid(keySetId);
  await accepted(keySetId, updatePolicyUpdate, { patch: { retirement: '3s' }, requestedBy: 'fault test' });
}

async function pauseAndResume(keySets: KeySetClient, keySetId: string): Promise<void> {
  await keySets.waitForActiveKid(keySetId);
  await keySets.pause(keySetId, 'fault test');
  await keySets.resume(keySetId);
}

async function changeAlgorithmOnceNextKeyIsListed(keySets: KeySetClient, keySetId: string): Promise<void> {
  await waitFor(
    async () => (await keySets.getState(keySetId)).keys.find((k) => k.state === 'next' && k.listedAt !== undefined),
    30_000,
    `a listed next key in ${keySetId}`,
    100,
  );
  await accepted(keySetId, updatePolicyUpdate, { patch: { algorithm: 'EdDSA' }, requestedBy: 'fault test' });
}

async function decommissionAndRecommission(keySets: KeySetClient, keySetId: string): Promise<void> {
  await keySets.waitForActiveKid(keySetId);
  await accepted(keySetId, decommissionUpdate, { reason: 'fault test' });
  await accepted(keySetId, recommissionUpdate, { reason: 'fault test' });
}

/** Revokes the next key (not the first key, briefly `next` while the key set bootstraps): no token was signed with it. */
async function revokeNextKey(keySets: KeySetClient, keySetId: string): Promise<void> {
  const kid = await waitFor(
    async () => {
      const { keys } = await keySets.getState(keySetId);
      return keys.some((k) => k.state === 'active') ? keys.find((k) => k.state === 'next')?.kid : undefined;
    },
    30_000,
    `a next key in ${keySetId}`,
    100,
  );
  await accepted(keySetId, revokeKeyUpdate, { kid, reason: 'fault test' });
}

async function decommission(keySets: KeySetClient, keySetId: string): Promise<void> {
  await keySets.waitForActiveKid(keySetId);
  await accepted(keySetId, decommissionUpdate, { reason: 'fault test' });
}

/** A key set under test: where its workflow runs and the step of its life the fault meets. */
interface KeySetCase extends Boundary {
  keySetId: string;
  taskQueue: string;
}

/** Every key set the scenarios start, for the final `keyturn verify`. */
const everyCase: KeySetCase[] = [];

/** A key set of its own for each boundary, named after the scenario (`label`) and the boundary. */
function casesFor(boundaries: readonly Boundary[], taskQueue: string, label: string): KeySetCase[] {
  const cases = boundaries.map((b) => ({
    ...b,
    taskQueue,
    keySetId: uniqueKeySetId(`${label}-${b.kind}-${b.occurrence}`),
  }));
  everyCase.push(...cases);
  return cases;
}

/**
 * Starts each key set so that all of them reach their boundary at the same moment, `dueAt`;
 * `started` settles once each is started and its command given.
 */
function startStaggered(cases: readonly KeySetCase[]): { dueAt: number; started: Promise<void> } {
  const latest = Math.max(...cases.map((c) => c.dueMs));
  const dueAt = Date.now() + latest;
  const started = Promise.all(
    cases.map(async (c) => {
      await sleep(latest - c.dueMs);
      const keySets = keySetsOn(c.taskQueue);
      await keySets.start(c.keySetId, POLICY);
      await c.command?.(keySets, c.keySetId);
    }),
  ).then(() => undefined);
  return { dueAt, started };
}

/** Until every key set has promoted a key since `since`, or (one whose life ends) its workflow has completed. */
async function untilRecovered(cases: readonly KeySetCase[], since: number): Promise<void> {
  for (const c of cases) {
    await waitFor(
      async () => {
        if (c.ends)
          return (
            (await client.workflow.getHandle(keySetWorkflowId(c.keySetId)).describe()).status.name === 'COMPLETED' ||
            undefined
          );
        const { rowCount } = await pool.query(
          `SELECT 1 FROM audit_events WHERE key_set_id = $1 AND event = 'promoted' AND recorded_at > $2`,
          [c.keySetId, new Date(since)],
        );
        return rowCount ? true : undefined;
      },
      RECOVERY_TIMEOUT_MS,
      `key set ${c.keySetId} (${c.what}) to ${c.ends ? 'complete its wind-down' : 'promote a key'} after the fault`,
      250,
    );
  }
}

/**
 * Ends a scenario: pauses its key sets (once checked they only add load, and `keyturn verify` checks
 * them at the end as they are now), lets the tokens signed meanwhile be verified for the last time,
 * and returns each key set's problems.
 */
async function conclude(cases: readonly KeySetCase[], traffic: TokenTraffic): Promise<Map<string, string[]>> {
  const paused = await Promise.allSettled(
    cases
      .filter((c) => !c.ends)
      .map(async (c) => (await keySetsOn(c.taskQueue).pause(c.keySetId, 'checked by the fault test'), c)),
  );
  // A key set the scenario failed before starting has nothing to pause; its problems say so.
  const live = paused.flatMap((p) => (p.status === 'fulfilled' ? [p.value] : []));
  for (const c of live) {
    await waitFor(
      async () => (await keySetsOn(c.taskQueue).getState(c.keySetId)).inFlight === null || undefined,
      60_000,
      `${c.keySetId} to finish its step`,
      100,
    );
  }
  await traffic.stop();
  const { issued, verifiedBeforeExpiry } = traffic.counts;
  console.log(
    `${cases.length} key sets: ${issued} tokens signed, ${verifiedBeforeExpiry} verified again shortly before they expired` +
      (traffic.signFailures.length > 0
        ? `; signing failed ${traffic.signFailures.length} times, first: ${traffic.signFailures[0]}`
        : ''),
  );
  return new Map(
    await Promise.all(
      cases.map(
        async (c) =>
          [c.keySetId, await keySetProblems(pool, c.keySetId, POLICY, traffic, { woundDown: c.ends })] as const,
      ),
    ),
  );
}

/** The problems the scenario found for `c`; fails if the scenario did not get that far. */
function outcomeFor(outcome: Map<string, string[]> | undefined, c: KeySetCase): string[] {
  if (outcome === undefined)
    throw new Error(`the scenario did not run to its end (see the test before), so ${c.keySetId} was not checked`);
  return outcome.get(c.keySetId)!;
}

describe('the worker SIGKILLed at every key change boundary, before and after its commit', () => {
  /** Each worker: the moment it stops at, its task queue, and the boundaries of the key sets it runs. */
  const workers: [FaultMoment, string, Boundary[]][] = [
    ['before-commit', QUEUE, EVERY_KEY_CHANGE],
    ['after-commit', SECOND_QUEUE, EVERY_KEY_CHANGE],
    ['before-commit', COMMANDS_QUEUE, EVERY_COMMAND_CHANGE],
    ['after-commit', COMMANDS_SECOND_QUEUE, EVERY_COMMAND_CHANGE],
  ];
  const cases = workers.flatMap(([at, taskQueue, boundaries]) =>
    casesFor(boundaries, taskQueue, at === 'before-commit' ? 'open' : 'committed').map((c) => ({ ...c, at })),
  );
  let outcome: Map<string, string[]> | undefined;

  test('the workers reach every point, are killed there, and fresh workers carry on', async () => {
    const reports = await mkdtemp(path.join(os.tmpdir(), 'keyturn-fault-reports-'));
    const pointsOf = (taskQueue: string): FaultPoint[] =>
      cases
        .filter((c) => c.taskQueue === taskQueue)
        .map(({ keySetId, kind, occurrence, at }) => ({ keySetId, kind, occurrence, at }));
    try {
      const faulty = await Promise.all(
        workers.map(([, taskQueue]) =>
          workerOn(taskQueue, faultPointEnv(pointsOf(taskQueue), path.join(reports, taskQueue))),
        ),
      );
      const traffic = new TokenTraffic(
        ring,
        jwksUrl,
        cases.map((c) => c.keySetId),
      );
      try {
        await startStaggered(cases).started;
        await Promise.all(
          workers.map(([, taskQueue]) =>
            waitForFaultPoints(path.join(reports, taskQueue), pointsOf(taskQueue), 90_000),
          ),
        );
        await Promise.all(faulty.map((worker) => worker.kill()));
        const killedAt = Date.now();
        await Promise.all(workers.map(([, taskQueue]) => workerOn(taskQueue)));
        await untilRecovered(cases, killedAt);
      } finally {
        outcome = await conclude(cases, traffic);
      }
    } finally {
      await rm(reports, { recursive: true, force: true });
    }
  }, 300_000);

  test.each(cases)(
    'killed $at while $what: no token rejected, no key lost or duplicated, every window honoured',
    (c) => {
      expect(outcomeFor(outcome, c)).toEqual([]);
    },
  );
});

/** Key sets each reaching one scheduled transition at the same moment, `fault` acting around that moment, until each has promoted a key since. */
async function acrossTransitions(cases: readonly KeySetCase[], fault: (dueAt: number) => Promise<void>): Promise<void> {
  const { dueAt, started } = startStaggered(cases);
  await started;
  await fault(dueAt);
  await untilRecovered(cases, dueAt);
}

describe('two workers at once', () => {
  const cases = casesFor(SCHEDULED, QUEUE, 'two');
  let outcome: Map<string, string[]> | undefined;

  test('both poll the task queue across every scheduled transition', async () => {
    const second = workerOn(QUEUE);
    // Awaited once the key sets are started; a failure to start must not go unhandled meanwhile.
    second.catch(() => undefined);
    const traffic = new TokenTraffic(
      ring,
      jwksUrl,
      cases.map((c) => c.keySetId),
    );
    try {
      await acrossTransitions(cases, async () => void (await second));
    } finally {
      outcome = await conclude(cases, traffic);
    }
  }, 120_000);

  test.each(cases)('$what: no token rejected, no key lost or duplicated, every window honoured', (c) => {
    expect(outcomeFor(outcome, c)).toEqual([]);
  });
});

/** An outage of `what` across every scheduled transition: stopped shortly before they fall due, started again later. */
function outageAcrossTransitions(
  what: string,
  label: string,
  stop: () => Promise<void>,
  start: () => Promise<void>,
): void {
  describe(`${what} down across transitions`, () => {
    const cases = casesFor(SCHEDULED, QUEUE, label);
    let outcome: Map<string, string[]> | undefined;

    test(`${what} stops ${OUTAGE_LEAD_MS} ms before the transitions fall due and starts again ${OUTAGE_MS} ms later`, async () => {
      const traffic = new TokenTraffic(
        ring,
        jwksUrl,
        cases.map((c) => c.keySetId),
      );
      try {
        await acrossTransitions(cases, async (dueAt) => {
          await sleep(dueAt - OUTAGE_LEAD_MS - Date.now());
          await stop();
          await sleep(OUTAGE_MS);
          await start();
        });
      } finally {
        outcome = await conclude(cases, traffic);
      }
    }, 120_000);

    test.each(cases)('$what: no token rejected, no key lost or duplicated, every window honoured', (c) => {
      expect(outcomeFor(outcome, c)).toEqual([]);
    });
  });
}

outageAcrossTransitions(
  'PostgreSQL',
  'pg',
  () => postgres.stop(),
  () => postgres.start(),
);
// SIGKILLed: Temporal gets no chance to finish anything it was doing.
outageAcrossTransitions(
  'Temporal',
  'temporal',
  () => temporal.kill(),
  () => temporal.start(),
);

describe('once every scenario has run', () => {
  test('keyturn verify, run as an operator runs it, passes for the key sets of every scenario', async () => {
    const { code, output } = await runKeyturnProcess(
      keyturn,
      ['verify', '--json'],
      keyturnEnv({ ...deployment, taskQueue: QUEUE }, { LOG_LEVEL: 'warn' }),
      120_000,
    );
    const json = /^\{"ok".*$/m.exec(output);
    if (!json) throw new Error(`keyturn verify printed no JSON (exit ${code}): ${output}`);
    const { keySets } = JSON.parse(json[0]) as { keySets: { id: string; ok: boolean }[] };
    // Wound-down key sets are done: verify leaves them out.
    const checked = everyCase.filter((c) => !c.ends).map((c) => c.keySetId);
    expect(checked.filter((id) => !keySets.some((k) => k.id === id)).map((id) => `${id} not checked`)).toEqual([]);
    expect(keySets.filter((k) => !k.ok)).toEqual([]);
    expect(code).toBe(0);
  }, 180_000);
});
