import { parseArgs } from 'node:util';
import { DEFAULT_SUPERVISOR_INTERVAL } from '../src/client/key-sets-file';
import { durationToMs } from '../src/domain/duration';
import { DEFAULT_POLICY, policyTimings } from '../src/domain/policy';
import { measureBareEntities, type BareEntityFigures, type ScaleSettings } from './bare-entity-reference';
import { measureKeyturn, type KeyturnFigures, type Timed } from './keyturn-at-scale';
import { startBenchPostgres } from './postgres';
import { megabytes, size } from './proc-stats';
import { count, ratio } from './stats';
import { renderTable, type Row } from './table';
import { describeActions } from './temporal-actions';

/** Sized to finish in under 4 minutes on a 2-core machine (apply about 20 key sets/s, the bare reference 40/s). */
const DEFAULT_KEY_SETS = 1_000;
/** Workflow starts in flight at once for the bare entity reference. */
const DEFAULT_BOUND = 32;
const DEFAULT_IDLE_SECONDS = 30;
const SETTLE_SECONDS = 10;
const STEP_SECONDS_TARGET = 10;
/** What a Schedule's start of a workflow costs beyond the workflow's own start (docs.temporal.io/evaluate/cloud/actions#schedule). */
const SCHEDULE_START_ACTIONS = 2;

/**
 * `npm run bench:scale -- --key-sets N`: issue #13's table for N key sets, with the bare entity
 * reference measured in the same run. Progress on stderr, the table on stdout.
 */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      'key-sets': { type: 'string', default: String(DEFAULT_KEY_SETS) },
      bound: { type: 'string', default: String(DEFAULT_BOUND) },
      'idle-seconds': { type: 'string', default: String(DEFAULT_IDLE_SECONDS) },
    },
  });
  const whole = (name: string, value: string) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1)
      throw new Error(`--${name} must be a whole number of at least 1, not ${JSON.stringify(value)}`);
    return n;
  };
  const began = performance.now();
  const settings: ScaleSettings = {
    keySets: whole('key-sets', values['key-sets']),
    bound: whole('bound', values.bound),
    idleSeconds: whole('idle-seconds', values['idle-seconds']),
    settleSeconds: SETTLE_SECONDS,
    step: (line) => console.error(`[bench:scale ${((performance.now() - began) / 1000).toFixed(1)} s] ${line}`),
  };
  settings.step(`${settings.keySets} key sets; starting PostgreSQL`);
  const postgres = await startBenchPostgres();
  let bare: BareEntityFigures;
  let keyturn: KeyturnFigures;
  try {
    bare = await measureBareEntities(settings);
    keyturn = await measureKeyturn(settings);
  } finally {
    await postgres.stop();
  }
  const minutes = (performance.now() - began) / 60_000;
  settings.step('done');
  console.log(renderTable(rows(settings, bare, keyturn)));
  console.log(`\n${settings.keySets} key sets; the bench took ${minutes.toFixed(1)} min.`);
}

function rows(settings: ScaleSettings, bare: BareEntityFigures, k: KeyturnFigures): Row[] {
  const n = settings.keySets;
  const keyturnRate = n / k.activeSeconds;
  const bareRate = n / bare.seconds;
  const percent = (share: number) => `${(share * 100).toFixed(2)} % of a core`;
  const seconds = (value: number) => `${value < 10 ? value.toFixed(2) : value.toFixed(1)} s`;
  const timed = (measure: string, t: Timed): Row => ({
    measure,
    result: t.problem ? `FAILED after ${seconds(t.seconds)}: ${t.problem}` : seconds(t.seconds),
    reference: '–',
    figure: '–',
    target: `< ${STEP_SECONDS_TARGET} s`,
    pass: t.problem === undefined && t.seconds < STEP_SECONDS_TARGET,
  });
  const seed = policyTimings(DEFAULT_POLICY);
  const defaultIntervalMs = durationToMs(DEFAULT_SUPERVISOR_INTERVAL)!;
  const roundsPerPeriod = seed.rotationPeriodMs / defaultIntervalMs;
  const supervisorActions =
    k.supervisor.actions === undefined ? undefined : k.supervisor.actions.total + SCHEDULE_START_ACTIONS;
  return [
    {
      measure: `apply of ${count(n)} new key sets until every one has an active key`,
      result: `${seconds(k.activeSeconds)} (${keyturnRate.toFixed(1)} key sets/s; apply exited after ${seconds(k.applyExitSeconds)})`,
      reference: `${count(n)} bare entity workflows, one activity each, ${settings.bound} starts at a time: ${seconds(bare.seconds)} (${bareRate.toFixed(1)}/s)`,
      figure: `${ratio(keyturnRate / bareRate)}× the bare rate`,
      target: '≥ 0.80×',
      pass: keyturnRate / bareRate >= 0.8,
    },
    {
      measure: 'CPU while applying, until every key set was active',
      result: `worker ${seconds(k.applyCpu.worker)}, Temporal ${seconds(k.applyCpu.temporal)}, PostgreSQL ${seconds(k.applyCpu.postgres)}, JWKS server ${seconds(k.applyCpu.serve)}, apply ${seconds(k.applyCpu.cli)}; machine ${seconds(k.applyCpu.machine)}`,
      reference: `bare entities: worker ${seconds(bare.cpu.worker)}, Temporal ${seconds(bare.cpu.temporal)}, PostgreSQL ${seconds(bare.cpu.postgres)}; machine ${seconds(bare.cpu.machine)} (the starts from the bench's own process)`,
      figure: `${ratio(k.applyCpu.machine / bare.cpu.machine)}× the machine's`,
      target: '–',
      pass: undefined,
    },
    {
      measure: `keyturn worker RSS with ${count(n)} key sets`,
      result: megabytes(k.workerRss),
      reference: `${megabytes(bare.workerRss)} bare entity worker, ${count(n)} entities`,
      figure: `${ratio(k.workerRss / bare.workerRss)}×`,
      target: '≤ 1.20×',
      pass: k.workerRss / bare.workerRss <= 1.2,
    },
    {
      measure: 'JWKS server (`keyturn serve`) RSS',
      result: megabytes(k.serveRss),
      reference: '–',
      figure: '–',
      target: '–',
      pass: undefined,
    },
    {
      measure: 'Temporal dev server RSS',
      result: megabytes(k.temporalRss),
      reference: `${megabytes(bare.temporalRss)} with the bare entities`,
      figure: `${ratio(k.temporalRss / bare.temporalRss)}×`,
      target: '–',
      pass: undefined,
    },
    {
      measure: `keyturn worker CPU, no transition due, over ${settings.idleSeconds} s`,
      result: percent(k.idleCore),
      reference: `${percent(bare.idleCore)} bare entity worker`,
      figure: '–',
      target: '< 1 % of a core',
      pass: k.idleCore < 0.01,
    },
    {
      measure: `JWKS server CPU, no request, over ${settings.idleSeconds} s`,
      result: percent(k.serveIdleCore),
      reference: '–',
      figure: '–',
      target: '–',
      pass: undefined,
    },
    ...k.scrapes.map((s): Row => ({
      measure: `one scrape of the ${s.what}`,
      result: s.problem
        ? `FAILED after ${seconds(s.seconds)}: ${s.problem}`
        : `${seconds(s.seconds)}, ${size(s.bytes)}, ${count(s.series)} series`,
      reference: '–',
      figure: s.problem ? '–' : `${(s.series / n).toFixed(1)} series per key set`,
      target: '< 1 s',
      pass: s.problem === undefined && s.seconds < 1,
    })),
    timed('`keyturn status --json` (every key set)', k.status),
    timed('`keyturn verify` (every key set)', k.verify),
    {
      ...timed('one supervisor round (Schedule triggered, to the end of its workflow)', k.supervisor),
      reference: `worker CPU meanwhile ${seconds(k.supervisor.workerCpuSeconds)}: ${((k.supervisor.workerCpuSeconds / (defaultIntervalMs / 1000)) * 100).toFixed(2)} % of a core every ${DEFAULT_SUPERVISOR_INTERVAL}`,
    },
    {
      measure: `Temporal actions per key set per rotation period (one key set's history, ${k.periodActions.periods} periods)`,
      result: describeActions(k.periodActions, k.periodActions.periods),
      reference: 'issue #13: ~13 before',
      figure: '–',
      target: '≤ 10',
      pass: k.periodActions.total / k.periodActions.periods <= 10,
    },
    {
      measure: "Temporal actions of a key set's bootstrap (its start by apply until its first key is active)",
      result: describeActions(k.bootstrapActions),
      reference: '–',
      figure: '–',
      target: '–',
      pass: undefined,
    },
    {
      measure: 'Temporal actions of one supervisor round (its history, +2 for the Schedule start)',
      result:
        supervisorActions === undefined
          ? 'not counted: the round failed'
          : describeActions({
              total: supervisorActions,
              byKind: new Map([...k.supervisor.actions!.byKind, ['schedule start', SCHEDULE_START_ACTIONS]]),
            }),
      reference:
        supervisorActions === undefined
          ? '–'
          : `every ${DEFAULT_SUPERVISOR_INTERVAL} over a ${seed.rotationPeriodMs / 86_400_000} d rotation period: ${count(supervisorActions * roundsPerPeriod)}, ${count((supervisorActions * roundsPerPeriod) / n)} per key set`,
      figure: '–',
      target: '–',
      pass: undefined,
    },
  ];
}

main().then(
  // Every process and connection of the bench's own is closed by now, but a handle some library leaves
  // behind keeps the event loop alive: the table is out, so the bench ends here.
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
