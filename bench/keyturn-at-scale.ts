import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection, type ScheduleExecutionActionResult } from '@temporalio/client';
import type { Pool } from 'pg';
import { stringify } from 'yaml';
import { keySetWorkflowId, SUPERVISOR_SCHEDULE_ID } from '../src/workflows/messages';
import { secondsPolicy } from '../test/helpers/key-sets';
import { waitFor } from '../test/helpers/wait';
import { keyturnEnv, type Deployment } from '../test/helpers/keyturn-processes';
import { readTimedTrail } from '../test/helpers/lifecycle-windows';
import { freePort } from '../test/helpers/ports';
import { createTestDatabase } from '../test/helpers/postgres';
import type { ManagedProcess } from '../src/runtime/managed-process';
import { TemporalServer } from '../test/helpers/temporal-server';
import type { ScaleSettings } from './bare-entity-reference';
import {
  commandCpuSeconds,
  coreShare,
  countCpu,
  cpuSeconds,
  exitedChildrenCpuSeconds,
  machineCpuSeconds,
  residentBytes,
} from './proc-stats';
import { MeasuredProcesses, releaseBenchRun, REPO, untilCount, untilExit } from './scale-processes';
import { sleep } from './stats';
import { countActions, historyOfAllRuns, type ActionCount } from './temporal-actions';

const TASK_QUEUE = 'keyturn';
const WORKER = 'keyturn worker';
const SERVE = 'keyturn serve';
/**
 * Longer than the bench: no supervisor round starts by itself during the idle window; the bench
 * triggers one round of its own. What a round costs at the default interval is worked out from it.
 */
const BENCH_SUPERVISOR_INTERVAL = '24h';
/** The key set whose history the actions are counted from: seconds-long, so that it rotates during the bench. */
const ACTIONS_KEY_SET = 'scale-actions';
/** Applied and active before the measured apply; not one of the `scale-0…` key sets counted. */
const WARM_UP_KEY_SET = 'scale-warm-up';
/** Rotation periods the actions are counted over, after the key set's first two promotions. */
const COUNTED_PERIODS = 4;
/** Any one CLI command or supervisor round is given up on after this long. */
const COMMAND_TIMEOUT_MS = 20 * 60_000;

export interface Scrape {
  what: string;
  seconds: number;
  bytes: number;
  series: number;
  /** Set when the scrape failed. */
  problem?: string;
}

export interface Timed {
  seconds: number;
  /** Undefined when it succeeded; otherwise what went wrong, in words. */
  problem?: string;
}

export interface KeyturnFigures {
  /** Seconds from `keyturn apply` starting until every key set had an active key. */
  activeSeconds: number;
  /** When `keyturn apply` itself exited, seconds from its start. */
  applyExitSeconds: number;
  /** CPU seconds spent from `keyturn apply` starting until every key set had an active key (the CLI's: until it exited). */
  applyCpu: { worker: number; temporal: number; postgres: number; serve: number; cli: number; machine: number };
  workerRss: number;
  serveRss: number;
  temporalRss: number;
  idleCore: number;
  serveIdleCore: number;
  scrapes: Scrape[];
  status: Timed;
  verify: Timed;
  supervisor: Timed & { workerCpuSeconds: number; actions?: ActionCount };
  /** The seconds-policy key set's actions over COUNTED_PERIODS rotation periods. */
  periodActions: ActionCount & { periods: number };
  /** Its actions from its start (apply) until its first key was active. */
  bootstrapActions: ActionCount;
}

/** keysets.yaml for `ids`, each under the seed policy (the file leaves every field out) or under `policy`. */
function keySetsYaml(ids: readonly string[], policy: object = {}): string {
  return stringify({
    supervisor: { interval: BENCH_SUPERVISOR_INTERVAL },
    keySets: ids.map((id) => ({ id, ...policy })),
  });
}

/**
 * keyturn deployed as processes, from the compiled code (`npm run build`): PostgreSQL (the bench's),
 * a Temporal dev server of its own, `keyturn migrate`, `keyturn serve` and `keyturn worker`; then
 * `keyturn apply` of `keySets` new key sets under the seed policy, and each figure of the table, every
 * one through the CLI, HTTP or Temporal's own API, so that it measures whatever keyturn's code does.
 */
export async function measureKeyturn(settings: ScaleSettings): Promise<KeyturnFigures> {
  const { keySets: count, step } = settings;
  const processes = new MeasuredProcesses();
  const folder = await mkdtemp(path.join(os.tmpdir(), 'keyturn-bench-scale-'));
  // Migrated already: `keyturn migrate` below then finds nothing to do, as on any deployment's second run.
  const db = await createTestDatabase();
  const { pool, url: databaseUrl } = db;
  let temporal: TemporalServer | undefined;
  let connection: Connection | undefined;
  try {
    step('keyturn: starting a Temporal dev server of its own');
    temporal = await TemporalServer.start(processes);
    const deployment: Deployment = {
      databaseUrl,
      kek: randomBytes(32).toString('base64'),
      temporalAddress: temporal.address,
      taskQueue: TASK_QUEUE,
    };
    const keyturn = (name: string, args: string[], extra: NodeJS.ProcessEnv = {}): ManagedProcess =>
      processes.start(name, process.execPath, [path.join(REPO, 'bin', 'keyturn.js'), ...args], {
        cwd: REPO,
        env: keyturnEnv(deployment, extra),
      });
    const command = async (args: string[]): Promise<Timed & { output: string }> => {
      const began = performance.now();
      const { seconds, code, output } = await untilExit(
        keyturn(`keyturn ${args[0]}`, args, { LOG_LEVEL: 'warn' }),
        began,
        COMMAND_TIMEOUT_MS,
      );
      const problem =
        code === 0
          ? undefined
          : code === null
            ? `not done after ${COMMAND_TIMEOUT_MS / 1000} s`
            : `exit ${code}: ${lastLine(output)}`;
      return { seconds, problem, output };
    };

    step('keyturn: migrate, serve, worker');
    const migrated = await command(['migrate']);
    if (migrated.problem) throw new Error(`keyturn migrate failed (${migrated.problem})`);
    const jwksPort = await freePort();
    const serve = keyturn(SERVE, ['serve', '--host', '127.0.0.1'], { PORT: String(jwksPort) });
    await serve.waitForOutput(/"msg":"JWKS server running"/, 120_000);
    const jwksUrl = `http://127.0.0.1:${jwksPort}`;
    const metricsPort = await freePort();
    const worker = keyturn(WORKER, ['worker'], {
      KEYTURN_JWKS_URL: jwksUrl,
      KEYTURN_METRICS_PORT: String(metricsPort),
      KEYTURN_SDK_METRICS_PORT: String(await freePort()),
    });
    await worker.waitForOutput(/"msg":"worker running"/, 120_000);
    const workerPid = processes.pidOf(WORKER);
    connection = await Connection.connect({ address: temporal.address });
    const client = new Client({ connection });

    // One key set through first, as the bare entities' warm-up: the worker's first workflow task loads the bundle.
    const warmUp = path.join(folder, 'warm-up.yaml');
    await writeFile(warmUp, keySetsYaml([WARM_UP_KEY_SET]));
    const warmedUp = await command(['apply', '-f', warmUp]);
    if (warmedUp.problem) throw new Error(`keyturn apply of ${WARM_UP_KEY_SET} failed (${warmedUp.problem})`);
    await untilCount(() => activeKeys(pool, WARM_UP_KEY_SET), 1, 'the warm-up key set', step, 120_000);
    const ids = Array.from({ length: count }, (_, i) => `scale-${String(i).padStart(6, '0')}`);
    const file = path.join(folder, 'keysets.yaml');
    await writeFile(file, keySetsYaml(ids));
    step(`keyturn: apply of ${count} new key sets`);
    const [temporalPid, servePid] = [processes.pidOf('the Temporal dev server'), processes.pidOf(SERVE)];
    const cpuSince = countCpu({
      worker: () => cpuSeconds(workerPid),
      temporal: () => cpuSeconds(temporalPid),
      postgres: () => commandCpuSeconds('postgres'),
      serve: () => cpuSeconds(servePid),
      cli: exitedChildrenCpuSeconds,
      machine: machineCpuSeconds,
    });
    const applyBegan = performance.now();
    const apply = untilExit(
      keyturn('keyturn apply', ['apply', '-f', file], { LOG_LEVEL: 'warn' }),
      applyBegan,
      4 * 3_600_000,
    );
    const countActive = () => activeKeys(pool, 'scale-0%');
    const applyFailed = apply.then((a) => {
      if (a.code !== 0) throw new Error(`keyturn apply failed (exit ${a.code}): ${lastLine(a.output)}`);
      return new Promise<never>(() => undefined);
    });
    const allActive = await Promise.race([
      untilCount(countActive, count, 'key sets with an active key', step, 4 * 3_600_000),
      applyFailed,
    ]);
    const applyCpu = cpuSince();
    const applied = await apply;
    if (applied.code !== 0) throw new Error(`keyturn apply failed (exit ${applied.code}): ${lastLine(applied.output)}`);
    applyCpu.cli = cpuSince().cli;
    const activeSeconds = (allActive - applyBegan) / 1000;
    step(
      `keyturn: all ${count} active in ${activeSeconds.toFixed(1)} s (apply exited after ${applied.seconds.toFixed(1)} s); settling ${settings.settleSeconds} s`,
    );
    await sleep(settings.settleSeconds * 1000);

    const workerRss = residentBytes(workerPid);
    const serveRss = residentBytes(processes.pidOf(SERVE));
    const temporalRss = residentBytes(processes.pidOf('the Temporal dev server'));
    step(`keyturn: the idle worker's and JWKS server's CPU over ${settings.idleSeconds} s`);
    const [idleCore, serveIdleCore] = await Promise.all([
      coreShare(workerPid, settings.idleSeconds),
      coreShare(processes.pidOf(SERVE), settings.idleSeconds),
    ]);

    step('keyturn: /metrics scrapes');
    const scrapes = [
      await scrape("worker's /metrics", `http://127.0.0.1:${metricsPort}/metrics`),
      await scrape("JWKS server's /metrics", `${jwksUrl}/metrics`),
    ];

    step('keyturn: status --json');
    const status = await command(['status', '--json']);
    step(`keyturn: status took ${status.seconds.toFixed(1)} s${status.problem ? ` (${status.problem})` : ''}; verify`);
    const verify = await command(['verify', '--json']);
    step(
      `keyturn: verify took ${verify.seconds.toFixed(1)} s${verify.problem ? ` (${verify.problem})` : ''}; one supervisor round`,
    );
    const supervisor = await supervisorRound(client, workerPid);
    step(
      `keyturn: the supervisor round took ${supervisor.seconds.toFixed(1)} s${supervisor.problem ? ` (${supervisor.problem})` : ''}`,
    );

    step(`keyturn: actions of a key set under a seconds-long policy over ${COUNTED_PERIODS} rotation periods`);
    const actionsFile = path.join(folder, 'actions.yaml');
    await writeFile(actionsFile, keySetsYaml([ACTIONS_KEY_SET], secondsPolicy()));
    const actionsApply = await command(['apply', '-f', actionsFile]);
    if (actionsApply.problem) throw new Error(`keyturn apply of ${ACTIONS_KEY_SET} failed (${actionsApply.problem})`);
    const { periodActions, bootstrapActions } = await countKeySetActions(client, pool);
    return {
      activeSeconds,
      applyCpu,
      applyExitSeconds: applied.seconds,
      workerRss,
      serveRss,
      temporalRss,
      idleCore,
      serveIdleCore,
      scrapes,
      status,
      verify,
      supervisor,
      periodActions,
      bootstrapActions,
    };
  } finally {
    await releaseBenchRun({ connection, processes, temporal, db, folder });
  }
}

/** Active keys of the key sets whose id is LIKE `pattern`, from PostgreSQL, the source of truth. */
async function activeKeys(pool: Pool, pattern: string): Promise<number> {
  const { rows } = await pool.query<{ n: string }>(
    `SELECT count(*) AS n FROM signing_keys WHERE state = 'active' AND key_set_id LIKE $1`,
    [pattern],
  );
  return Number(rows[0].n);
}

function lastLine(output: string): string {
  return output.trim().split('\n').at(-1)?.slice(0, 300) ?? '';
}

/** One GET of a Prometheus endpoint: how long until the whole body was in, its size and its series (sample lines). */
async function scrape(what: string, url: string): Promise<Scrape> {
  const began = performance.now();
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(120_000) });
    const body = await response.text();
    const seconds = (performance.now() - began) / 1000;
    if (!response.ok) return { what, seconds, bytes: body.length, series: 0, problem: `HTTP ${response.status}` };
    const series = body.split('\n').filter((line) => line !== '' && !line.startsWith('#')).length;
    return { what, seconds, bytes: Buffer.byteLength(body), series };
  } catch (error) {
    return { what, seconds: (performance.now() - began) / 1000, bytes: 0, series: 0, problem: String(error) };
  }
}

function startedWorkflow(action: ScheduleExecutionActionResult): { workflowId: string; firstExecutionRunId: string } {
  return action.workflow;
}

/**
 * One round of the supervisor as its Schedule starts it: a trigger, then the workflow the Schedule
 * started, to its end. Its wall time, the worker's CPU meanwhile, and the actions its history records.
 */
async function supervisorRound(client: Client, workerPid: number): Promise<KeyturnFigures['supervisor']> {
  const schedule = client.schedule.getHandle(SUPERVISOR_SCHEDULE_ID);
  const before = await schedule.describe();
  const known = new Set(
    [
      ...before.info.recentActions.map((a) => startedWorkflow(a.action)),
      ...before.info.runningActions.map(startedWorkflow),
    ].map((w) => w.firstExecutionRunId),
  );
  const cpuBefore = cpuSeconds(workerPid);
  const began = performance.now();
  await schedule.trigger();
  const started = await waitFor(
    async () => {
      const { info } = await schedule.describe();
      return [...info.runningActions, ...info.recentActions.map((a) => a.action)]
        .map(startedWorkflow)
        .find((w) => !known.has(w.firstExecutionRunId));
    },
    60_000,
    'the supervisor round the trigger starts',
    100,
  );
  const round = client.workflow.getHandle(started.workflowId, started.firstExecutionRunId);
  let problem: string | undefined;
  try {
    await Promise.race([
      round.result(),
      sleep(COMMAND_TIMEOUT_MS).then(() => Promise.reject(new Error(`not done after ${COMMAND_TIMEOUT_MS / 1000} s`))),
    ]);
  } catch (error) {
    problem = error instanceof Error ? error.message : String(error);
  }
  const seconds = (performance.now() - began) / 1000;
  const workerCpuSeconds = cpuSeconds(workerPid) - cpuBefore;
  const actions = problem ? undefined : countActions((await round.fetchHistory()).events ?? []);
  return { seconds, problem, workerCpuSeconds, actions };
}

/**
 * The actions the seconds-policy key set's workflow records (every run of it) between its second
 * promotion and the promotion COUNTED_PERIODS later, as the audit trail times them: each step of a
 * rotation period falls once in that window, whatever the policy's durations. And those from its
 * start until its first promotion: what bootstrapping a key set costs.
 */
async function countKeySetActions(
  client: Client,
  pool: Pool,
): Promise<Pick<KeyturnFigures, 'periodActions' | 'bootstrapActions'>> {
  const promotions = async () =>
    (await readTimedTrail(pool, ACTIONS_KEY_SET)).filter((e) => e.event === 'promoted').map((e) => e.occurredAt);
  const lastNeeded = 2 + COUNTED_PERIODS;
  const times = await waitFor(
    async () => {
      const seen = await promotions();
      return seen.length >= lastNeeded ? seen : undefined;
    },
    (lastNeeded + 2) * 6_000 + 60_000,
    `${lastNeeded} promotions of ${ACTIONS_KEY_SET}`,
    500,
  );
  const from = times[1];
  const to = times[lastNeeded - 1];
  const events = await historyOfAllRuns(client, keySetWorkflowId(ACTIONS_KEY_SET));
  return {
    periodActions: { ...countActions(events, (ms) => ms > from && ms <= to), periods: COUNTED_PERIODS },
    bootstrapActions: countActions(events, (ms) => ms <= times[0]),
  };
}
