import { spawn } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { resolveTemporalCli } from '../../src/dev/temporal-executables';
import { startTestDevStack, type TestDevStack } from '../helpers/dev-stack';

// Every command of docs/runbook.md, run in the order it stands there, against a real stack: the
// Temporal dev server, the worker and a database of this file's own, with the `keyturn` CLI and the
// `temporal` CLI on PATH as an operator has them. A command that fails fails the test, with its output.
// The runbook writes the key set as $KEY_SET; placeholders in angle brackets are filled in as a reader
// would: <kid> with the key set's active kid at that moment. Variables the test's stack defines
// (JWKS_URL) keep its values where the runbook exports an example.

const REPO = path.join(__dirname, '..', '..');
const RUNBOOK = path.join(REPO, 'docs', 'runbook.md');
const KEY_SET = 'default'; // keysets.yaml's, applied by the runbook itself

let running: TestDevStack;
let binDir: string;

beforeAll(async () => {
  running = await startTestDevStack('runbook', { jwksPort: 0 });
  binDir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-runbook-bin-'));
  const keyturn = path.join(binDir, 'keyturn');
  await writeFile(
    keyturn,
    `#!/bin/sh\nexec "${process.execPath}" --import tsx "${path.join(REPO, 'test', 'helpers', 'keyturn-from-source.ts')}" "$@"\n`,
  );
  await chmod(keyturn, 0o755);
  const { executable } = await resolveTemporalCli({ log: () => undefined });
  if (executable.type !== 'existing-path')
    throw new Error('the runbook test runs the temporal CLI as a file: run `npm run temporal:install`');
  const temporal = path.join(binDir, 'temporal');
  await writeFile(temporal, `#!/bin/sh\nexec "${executable.path}" "$@"\n`);
  await chmod(temporal, 0o755);
}, 120_000);

afterAll(async () => {
  await running?.stop();
  if (binDir) await rm(binDir, { recursive: true, force: true });
});

/** The shell commands of the runbook's ```sh blocks, in order, continuation lines joined. */
export function runbookCommands(markdown: string): string[] {
  const blocks = [...markdown.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1]);
  return blocks.flatMap((block) =>
    block
      .replace(/\\\n\s*/g, ' ')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '' && !line.startsWith('#')),
  );
}

interface Run {
  code: number | null;
  output: string;
}

function sh(command: string, env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', command], { env, cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    const output: string[] = [];
    child.stdout.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.on('exit', (code) => resolve({ code, output: output.join('') }));
  });
}

test('every command in docs/runbook.md works as written, in order', async () => {
  const commands = runbookCommands(await readFile(RUNBOOK, 'utf8'));
  expect(commands.length).toBeGreaterThan(15);

  const { stack, db, kek } = running;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${binDir}:${process.env.PATH}`,
    TEMPORAL_ADDRESS: stack.temporalAddress,
    TEMPORAL_NAMESPACE: stack.namespace,
    DATABASE_URL: db.url,
    KEYTURN_KEK: kek,
    LOG_LEVEL: 'warn',
    KEY_SET,
    JWKS_URL: stack.jwksUrl!,
  };
  const provided = new Set(['JWKS_URL']);
  // The operator's starting point: keysets.yaml applied, as `npm start` and docker-compose do.
  const applied = await sh('keyturn apply -f keysets.yaml', env);
  expect(applied).toMatchObject({ code: 0 });

  const transcript: string[] = [];
  for (const command of commands) {
    let line = command;
    if (line.includes('<kid>')) line = line.replaceAll('<kid>', await stack.keySets.waitForActiveKid(KEY_SET));
    const exported = /^export (\w+)=(.*)$/.exec(line);
    if (exported && provided.has(exported[1])) continue;
    // An export sets the variable for every later command, as in the operator's shell.
    const run = exported ? await sh(`printf %s ${exported[2]}`, env) : await sh(line, env);
    // An exported value may be a secret (a new KEK): the transcript shows the command only.
    transcript.push(exported ? `$ ${line}` : `$ ${line}\n${run.output}`);
    if (run.code !== 0)
      throw new Error(`runbook command failed (exit ${run.code}): ${line}\n\n${transcript.slice(-4).join('\n')}`);
    if (exported) env[exported[1]] = run.output;
  }
  // No command printed a KEK, the first one or one the runbook made.
  for (const secret of [kek, ...(env.KEYTURN_KEK ?? '').split(',')])
    expect(transcript.join('\n')).not.toContain(secret);
}, 300_000);

test("the runbook's links to its own sections lead somewhere", async () => {
  const markdown = await readFile(RUNBOOK, 'utf8');
  // GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens.
  const anchors = new Set(
    [...markdown.matchAll(/^#+\s+(.+)$/gm)].map((m) =>
      m[1]
        .trim()
        .toLowerCase()
        .replace(/[^\w\- ]/g, '')
        .replace(/ /g, '-'),
    ),
  );
  const links = [...markdown.matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1]);
  expect(links.length).toBeGreaterThan(10);
  expect(links.filter((link) => !anchors.has(link))).toEqual([]);
});
