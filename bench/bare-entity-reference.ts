import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode } from '@temporalio/worker';
import { TemporalServer } from '../test/helpers/temporal-server';
import { commandCpuSeconds, coreShare, countCpu, cpuSeconds, machineCpuSeconds, residentBytes } from './proc-stats';
import { createTestDatabase } from '../test/helpers/postgres';
import { MeasuredProcesses, releaseBenchRun, REPO, untilCount } from './scale-processes';
import { sleep } from './stats';

const TASK_QUEUE = 'bare-entities';
const WORKER_NAME = 'bare entity worker';
/** The bare entity worker as `tsc -p bench/tsconfig.json` compiled it. */
const WORKER_SCRIPT = path.join(REPO, 'dist', 'bench', 'bare-entity-worker.js');

export interface BareEntityFigures {
  /** Seconds from the first start until every entity's activity had committed. */
  seconds: number;
  /** CPU seconds spent from the first start until every entity's activity had committed. */
  cpu: { worker: number; temporal: number; postgres: number; machine: number };
  workerRss: number;
  temporalRss: number;
  /** The worker's share of a core while every entity sleeps. */
  idleCore: number;
}

export interface ScaleSettings {
  keySets: number;
  /** At most this many workflow starts in flight at once. */
  bound: number;
  idleSeconds: number;
  settleSeconds: number;
  step(line: string): void;
}

/**
 * The reference keyturn is held to, measured on this machine in this run: `count` bare entity
 * workflows (one activity, one row in PostgreSQL, then asleep), started `bound` at a time on a
 * Temporal dev server of their own, run by a bare worker in a process of its own; the time until
 * every activity committed, then the worker's and the server's memory and the idle worker's CPU.
 */
export async function measureBareEntities(settings: ScaleSettings): Promise<BareEntityFigures> {
  const { keySets: count, bound, step } = settings;
  const processes = new MeasuredProcesses();
  const folder = await mkdtemp(path.join(os.tmpdir(), 'keyturn-bench-bare-'));
  let temporal: TemporalServer | undefined;
  let connection: Connection | undefined;
  // A database of its own in the bench's PostgreSQL (keyturn's schema in it too, unused).
  const db = await createTestDatabase();
  const pool = db.pool;
  try {
    await pool.query(
      'CREATE TABLE bare_entities (entity_id text PRIMARY KEY, registered_at timestamptz NOT NULL DEFAULT now())',
    );
    step('bare entities: bundling their workflow, starting a Temporal dev server of their own');
    const { code } = await bundleWorkflowCode({
      workflowsPath: require.resolve('./bare-entity-workflows'),
      logger: quietLogger,
    });
    const bundle = path.join(folder, 'bare-entity-bundle.js');
    await writeFile(bundle, code);
    temporal = await TemporalServer.start(processes);
    const worker = processes.start(WORKER_NAME, process.execPath, [WORKER_SCRIPT], {
      cwd: REPO,
      env: {
        ...process.env,
        BARE_DATABASE_URL: db.url,
        TEMPORAL_ADDRESS: temporal.address,
        BARE_TASK_QUEUE: TASK_QUEUE,
        BARE_WORKFLOW_BUNDLE: bundle,
      },
    });
    await worker.waitForOutput(/bare entity worker running/, 60_000);
    connection = await Connection.connect({ address: temporal.address });
    const client = new Client({ connection });
    const countRows = async () =>
      Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM bare_entities')).rows[0].n);
    // One entity through first, as keyturn's warm-up key set: the worker's first workflow task loads the bundle.
    await client.workflow.start('bareEntityWorkflow', {
      workflowId: 'bare/warm-up',
      taskQueue: TASK_QUEUE,
      args: ['warm-up'],
    });
    await untilCount(countRows, 1, 'the warm-up entity', step, 120_000);

    step(`bare entities: starting ${count}, ${bound} at a time`);
    const [workerPid, temporalPid] = [processes.pidOf(WORKER_NAME), processes.pidOf('the Temporal dev server')];
    const cpuSince = countCpu({
      worker: () => cpuSeconds(workerPid),
      temporal: () => cpuSeconds(temporalPid),
      postgres: () => commandCpuSeconds('postgres'),
      machine: machineCpuSeconds,
    });
    const began = performance.now();
    let next = 0;
    const starter = async () => {
      while (next < count) {
        const entityId = `entity-${String(next++).padStart(6, '0')}`;
        await client.workflow.start('bareEntityWorkflow', {
          workflowId: `bare/${entityId}`,
          taskQueue: TASK_QUEUE,
          args: [entityId],
        });
      }
    };
    const [, done] = await Promise.all([
      Promise.all(Array.from({ length: bound }, starter)),
      untilCount(async () => (await countRows()) - 1, count, 'bare entities registered', step, 3_600_000),
    ]);
    const seconds = (done - began) / 1000;
    const cpu = cpuSince();
    step(`bare entities: all ${count} registered in ${seconds.toFixed(1)} s; settling ${settings.settleSeconds} s`);
    await sleep(settings.settleSeconds * 1000);
    const workerRss = residentBytes(workerPid);
    const temporalRss = residentBytes(temporalPid);
    step(`bare entities: the idle worker's CPU over ${settings.idleSeconds} s`);
    const idleCore = await coreShare(workerPid, settings.idleSeconds);
    return { seconds, cpu, workerRss, temporalRss, idleCore };
  } finally {
    await releaseBenchRun({ connection, processes, temporal, db, folder });
  }
}

const quiet = () => undefined;
const quietLogger = {
  log: quiet,
  trace: quiet,
  debug: quiet,
  info: quiet,
  warn: quiet,
  error: (message: string) => console.error(message),
};
