import { execFile } from 'node:child_process';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { resolveTemporalCli } from '../src/dev/temporal-executables';
import { startTestDevStack } from '../test/helpers/dev-stack';
import { testPolicy } from '../test/helpers/key-sets';
import { median, ms, ratio } from './stats';
import type { Row } from './table';

const run = promisify(execFile);
const SAMPLES = 9;
const HELP_TARGET_MS = 150;
const STATUS_TARGET_RATIO = 3;
/** The built CLI, as an operator runs it (`npm run bench` compiles it first: bench/tsconfig.json). */
const KEYTURN = path.join(__dirname, '..', 'bin', 'keyturn.js');

interface Timing {
  wallMs: number;
  cpuMs: number;
}

/**
 * One run of a command to completion: wall time from spawn to exit, and the CPU time (user + system)
 * bash's `times` reports for its child. Its output is read and dropped; a failure fails the bench.
 */
async function timeOnce(command: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<Timing> {
  const script = '"$@" > /dev/null || exit $?; times';
  const started = performance.now();
  const { stdout } = await run('bash', ['-c', script, 'bench', command, ...args], { env });
  const wallMs = performance.now() - started;
  // times prints the shell's own user/system times, then its children's: "0m0.412s 0m0.051s".
  const children = stdout
    .trim()
    .split('\n')
    .at(-1)!
    .match(/(\d+)m([\d.]+)s/g)!;
  const cpuMs = children.reduce((sum, part) => {
    const [, minutes, seconds] = /(\d+)m([\d.]+)s/.exec(part)!;
    return sum + (Number(minutes) * 60 + Number(seconds)) * 1000;
  }, 0);
  return { wallMs, cpuMs };
}

async function timeMany(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<{ wall: number; cpu: number }> {
  // One unmeasured run first: the page cache holds the files afterwards, as on an operator's machine.
  await timeOnce(command, args, env);
  const timings: Timing[] = [];
  for (let i = 0; i < SAMPLES; i += 1) timings.push(await timeOnce(command, args, env));
  return { wall: median(timings.map((t) => t.wallMs)), cpu: median(timings.map((t) => t.cpuMs)) };
}

/**
 * The environment without NODE_EXTRA_CA_CERTS: Node reads and parses that bundle at every start
 * (about 80 ms on this machine, whose sandbox sets it), before any keyturn code runs and whether or
 * not a command opens a TLS connection. The rows judge keyturn's own start-up and show the other too.
 */
function withoutExtraCaCerts(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const rest = { ...env };
  delete rest.NODE_EXTRA_CA_CERTS;
  return rest;
}

/** " (N ms with NODE_EXTRA_CA_CERTS)" when the machine sets it, for a row's result. */
function withCaNote(measured: { wall: number } | undefined): string {
  return measured === undefined ? '' : ` (${ms(measured.wall)} with this machine's NODE_EXTRA_CA_CERTS)`;
}

/**
 * `keyturn --help`, and `keyturn status <id>` against `temporal workflow describe -w keyset/<id>` on
 * the same dev stack (startTestDevStack): a Temporal dev server, the worker and a key set with its
 * active key. Both are one round trip to the frontend; what keyturn adds is its start-up.
 */
export async function benchCli(): Promise<Row[]> {
  const extraCa = process.env.NODE_EXTRA_CA_CERTS !== undefined;
  const help = await timeMany(process.execPath, [KEYTURN, '--help'], withoutExtraCaCerts(process.env));
  const helpWithCa = extraCa ? await timeMany(process.execPath, [KEYTURN, '--help'], process.env) : undefined;
  const running = await startTestDevStack('bench-cli');
  try {
    const { stack } = running;
    const keySetId = 'bench-cli';
    await stack.keySets.start(keySetId, testPolicy('ES256'));
    await stack.keySets.waitForActiveKid(keySetId);
    const { executable } = await resolveTemporalCli({ allowBuild: false });
    if (executable.type !== 'existing-path')
      throw new Error('the Temporal CLI is not installed: run `npm run temporal:install`');
    // keyturn finds the stack through the instance file in its data folder, as beside `keyturn dev`.
    const env: NodeJS.ProcessEnv = { ...process.env, KEYTURN_DATA_DIR: running.dataDir, LOG_LEVEL: 'silent' };
    for (const name of ['TEMPORAL_ADDRESS', 'TEMPORAL_NAMESPACE', 'DATABASE_URL']) delete env[name];
    const status = await timeMany(process.execPath, [KEYTURN, 'status', keySetId], withoutExtraCaCerts(env));
    const statusWithCa = extraCa ? await timeMany(process.execPath, [KEYTURN, 'status', keySetId], env) : undefined;
    const describe = await timeMany(
      executable.path,
      [
        'workflow',
        'describe',
        '-w',
        `keyset/${keySetId}`,
        '--address',
        stack.temporalAddress,
        '--namespace',
        stack.namespace,
      ],
      env,
    );
    const times = status.wall / describe.wall;
    return [
      {
        measure: 'CLI: `keyturn --help`',
        result: `median ${ms(help.wall)} wall, ${ms(help.cpu)} CPU${withCaNote(helpWithCa)}`,
        reference: 'node bin/keyturn.js from the build',
        figure: `n = ${SAMPLES}`,
        target: `median < ${ms(HELP_TARGET_MS)}`,
        pass: help.wall < HELP_TARGET_MS,
      },
      {
        measure: 'CLI: `keyturn status <id>` against `temporal workflow describe`',
        result: `median ${ms(status.wall)} wall, ${ms(status.cpu)} CPU${withCaNote(statusWithCa)}`,
        reference: `temporal workflow describe: median ${ms(describe.wall)} wall, ${ms(describe.cpu)} CPU`,
        figure: `${ratio(times)}x, n = ${SAMPLES}`,
        target: `< ${STATUS_TARGET_RATIO}x`,
        pass: times < STATUS_TARGET_RATIO,
      },
    ];
  } finally {
    await running.stop();
  }
}
