import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Command } from 'commander';
import { DEFAULT_APPLY_CONCURRENCY } from '../../src/client/apply';
import { completionEntries } from '../../src/cli/completion';
import { createProgram } from '../../src/cli/program';
import { runKeyturn as keyturn } from '../helpers/cli';

// The command tree itself: --version, --help, and the completion scripts generated from it, the bash
// one run in a real bash.

const run = promisify(execFile);

/** Every command path of the program, e.g. `keyturn token sign`. */
function commandPaths(command: Command, prefix = ''): string[] {
  const here = `${prefix}${command.name()}`;
  return [here, ...command.commands.flatMap((sub) => commandPaths(sub, `${here} `))];
}

test('--version prints the version of package.json', async () => {
  const { version } = JSON.parse(readFileSync(path.join(__dirname, '../../package.json'), 'utf8')) as {
    version: string;
  };
  const stdout = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
  try {
    expect(await keyturn('--version')).toMatchObject({ code: 0, err: '' });
    expect(stdout.mock.calls.map(([chunk]) => String(chunk)).join('')).toBe(`${version}\n`);
  } finally {
    stdout.mockRestore();
  }
});

test("--concurrency's default in the help is the one apply uses", () => {
  const apply = createProgram().commands.find((command) => command.name() === 'apply')!;
  expect(apply.options.find((option) => option.long === '--concurrency')!.description).toContain(
    `(default ${DEFAULT_APPLY_CONCURRENCY})`,
  );
});

describe('keyturn completion', () => {
  const program = createProgram();
  const paths = commandPaths(program);

  test.each(['bash', 'zsh'])(
    'the %s script has every command and its options, from the command tree',
    async (shell) => {
      const script = (await keyturn('completion', shell)).out;
      for (const entry of completionEntries(program)) {
        expect(script).toContain(
          `'${entry.path}') commands='${entry.commands.join(' ')}'; options='${entry.options.join(' ')}'`,
        );
      }
      expect(completionEntries(program).map((entry) => entry.path)).toEqual(paths);
      // A few that must be there, whoever adds commands later.
      expect(paths).toEqual(
        expect.arrayContaining(['keyturn status', 'keyturn token verify', 'keyturn audit show', 'keyturn completion']),
      );
    },
  );

  test('an unknown shell is refused with the choices', async () => {
    expect(await keyturn('completion', 'fish')).toEqual({
      code: 1,
      out: '',
      err: 'keyturn: no completion for "fish": choose bash or zsh\n',
    });
  });

  describe('in bash', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-completion-'));
      await writeFile(path.join(dir, 'keyturn.bash'), (await keyturn('completion', 'bash')).out);
    });
    afterAll(() => rm(dir, { recursive: true, force: true }));

    /** What bash completes for the words typed so far, the last one being completed. */
    async function complete(...words: string[]): Promise<string[]> {
      const script =
        `source ${path.join(dir, 'keyturn.bash')}; COMP_WORDS=(keyturn ${words.map((w) => `'${w}'`).join(' ')}); ` +
        'COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _keyturn; printf "%s\\n" "${COMPREPLY[@]}"';
      const { stdout } = await run('bash', ['-c', script], { cwd: dir });
      return stdout.split('\n').filter(Boolean).sort();
    }

    test('completes commands, subcommands and options, and files after an option that takes one', async () => {
      expect(await complete('st')).toEqual(['stack', 'status']);
      expect(await complete('token', '')).toEqual(['sign', 'verify']);
      expect(await complete('token', 'verify', 'x', '--k')).toEqual(['--key-set']);
      expect(await complete('status', 'web', '--t')).toEqual(['--timeline']);
      expect(await complete('--v')).toEqual(['--version']);
      expect(await complete('dev', '-f', 'keyturn.b')).toEqual(['keyturn.bash']);
    });
  });
});

test('--help loads no command implementation and no dependency but commander', async () => {
  // In a fresh process, as `keyturn --help` runs: which modules got loaded (tsx and its esbuild aside).
  const root = path.join(__dirname, '../..');
  const { stderr } = await run(
    process.execPath,
    [
      '--require',
      require.resolve('tsx/cjs'),
      '-e',
      "require('./src/cli/main').runCli(['--help']).then(() => console.error(JSON.stringify(Object.keys(require.cache))))",
    ],
    { cwd: root },
  );
  const loaded = (JSON.parse(stderr.trim().split('\n').at(-1)!) as string[]).map((file) => path.relative(root, file));
  expect(loaded.filter((file) => !file.startsWith('node_modules')).sort()).toEqual([
    'src/cli/main.ts',
    'src/cli/options.ts',
    'src/cli/program.ts',
  ]);
  expect(
    new Set(
      loaded
        .filter((file) => file.startsWith('node_modules') && !/^node_modules\/(tsx|esbuild)\//.test(file))
        .map((file) => file.split('/')[1]),
    ),
  ).toEqual(new Set(['commander']));
});
