import { readdirSync, readFileSync } from 'node:fs';
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freeDevPorts, startDev } from '../helpers/keyturn-dev';

// Ctrl-C in a terminal sends SIGINT to the terminal's whole foreground process group. `keyturn dev`
// is started here as a process group leader and the group gets SIGINT, as a terminal would send it:
// the embedded PostgreSQL and the Temporal dev server must be in groups of their own, so that only
// keyturn hears it and stops them itself, after the worker.

let dataDir: string;
/** All that keyturn dev prints, read once it has stopped. */
let logFile: string;

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-ctrl-c-'));
  logFile = `${dataDir}.log`;
  // Run as root, PostgreSQL runs as the `postgres` user and must get through.
  await chmod(dataDir, 0o755);
});

afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
  await rm(logFile, { force: true });
});

/** A process's group id, from /proc/<pid>/stat (field 5). */
function processGroup(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
}

/** The pid of the process whose command line holds `text`. */
function pidWith(text: string): number {
  for (const entry of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').includes(text)) return Number(entry);
    } catch {
      // Gone meanwhile.
    }
  }
  throw new Error(`no process with "${text}" in its command line`);
}

test('SIGINT to the process group stops the worker first, then the dev server and PostgreSQL, with no warning', async () => {
  const dev = await startDev(dataDir, await freeDevPorts(), {
    env: { LOG_LEVEL: 'debug' },
    detached: true,
    timeoutMs: 90_000,
    logFile,
  });
  const pid = dev.pid!;
  try {
    const postgres = Number((await readFile(path.join(dataDir, 'postgres', 'postmaster.pid'), 'utf8')).split('\n')[0]);
    const temporal = pidWith(path.join(dataDir, 'temporal.db'));
    expect(processGroup(pid)).toBe(pid);
    // Out of keyturn's group: the terminal's SIGINT does not reach them.
    expect([processGroup(postgres), processGroup(temporal)]).toEqual([postgres, temporal]);

    process.kill(-pid, 'SIGINT');
    await dev.exited();
    expect(dev.exitCode).toBe(0);
  } finally {
    if (dev.running) process.kill(-pid, 'SIGKILL');
  }
  await dev.close();

  const log = await readFile(logFile, 'utf8');
  const stopped = (what: string) => log.indexOf(`"msg":"stopped ${what}"`);
  expect(stopped('the worker')).toBeGreaterThan(0);
  expect(stopped('the worker')).toBeLessThan(stopped('the Temporal dev server'));
  expect(stopped('the Temporal dev server')).toBeLessThan(stopped('the key store'));
  // Nothing went wrong on the way down: no warning or error from keyturn or PostgreSQL's log.
  const complaints = log.split('\n').filter((line) => /"level":(40|50|60)\b|"level":"(warn|error|fatal)"/.test(line));
  expect(complaints).toEqual([]);
}, 150_000);
