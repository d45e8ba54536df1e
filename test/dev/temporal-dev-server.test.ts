import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { startTemporalDevServer } from '../../src/dev/temporal-dev-server';
import { freePort } from '../helpers/ports';

// A dev server that fails before it listens: what keyturn says, and what it logs of the server's output.

let folder: string;
const savedCliPath = process.env.TEMPORAL_CLI_PATH;

beforeAll(async () => {
  folder = await mkdtemp(path.join(os.tmpdir(), 'keyturn-dev-server-'));
});

afterAll(async () => {
  if (savedCliPath === undefined) delete process.env.TEMPORAL_CLI_PATH;
  else process.env.TEMPORAL_CLI_PATH = savedCliPath;
  await rm(folder, { recursive: true, force: true });
});

/** A logger whose JSON lines are kept in `lines`. */
function capturingLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), lines };
}

it('a server that exits before it listens is named with its exit code and last output, which is logged at its own level', async () => {
  const cli = path.join(folder, 'temporal');
  // Its last line arrives in two writes: the log gets it whole.
  await writeFile(
    cli,
    `#!/bin/sh\necho '{"level":"ERROR","msg":"database is locked"}'\nprintf '{"level":"warn",'\nsleep 0.1\necho '"msg":"giving up"}'\nexit 3\n`,
  );
  await chmod(cli, 0o755);
  process.env.TEMPORAL_CLI_PATH = cli;
  const { logger, lines } = capturingLogger();

  await expect(
    startTemporalDevServer({ dataDir: folder, port: await freePort(), uiPort: await freePort(), logger }),
  ).rejects.toThrow(
    /^the Temporal dev server exited \(exit code 3\) before accepting connections on 127\.0\.0\.1:\d+; its last output: .*giving up/,
  );
  const fromServer = lines.filter((line) => line.component === 'temporal-dev-server');
  expect(fromServer.map(({ level, msg }) => [level, msg])).toEqual([
    [50, 'database is locked'],
    [40, 'giving up'],
  ]);
}, 30_000);

it('a CLI that cannot be run is named as such', async () => {
  const cli = path.join(folder, 'not-a-program');
  // Executable, but its interpreter is missing: the kernel cannot start it.
  await writeFile(cli, '#!/nonexistent/interpreter\n');
  await chmod(cli, 0o755);
  process.env.TEMPORAL_CLI_PATH = cli;
  const { logger } = capturingLogger();

  await expect(
    startTemporalDevServer({ dataDir: folder, port: await freePort(), uiPort: await freePort(), logger }),
  ).rejects.toThrow(/^could not run the Temporal CLI: spawn .*not-a-program ENOENT/);
}, 30_000);
