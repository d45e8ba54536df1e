import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { isCached, keyturnCacheDir } from './cache';
import { freePort } from './ports';
import { ProcessGroup } from './processes';

const run = promisify(execFile);

/** The moto release the aws-kms custody tests run against (PyPI). */
export const MOTO_VERSION = '5.2.5';
/** moto's server, with KMS signing as AWS documents it where moto differs (see the file). */
const LAUNCHER = path.join(__dirname, 'moto-kms-server.py');
/** A cold install downloads moto, Flask and cryptography from PyPI: about a minute here. */
const INSTALL_TIMEOUT_MS = 600_000;
const START_TIMEOUT_MS = 60_000;
/** How often a test file waiting for another's install looks again. */
const LOCK_POLL_MS = 1_000;

/** A KMS-compatible server on loopback, empty when started. */
export interface MotoServer {
  endpoint: string;
  /** What a KMS client needs to reach it: moto's dummy account, given to each client rather than put in the environment. */
  clientOptions: { region: string; endpoint: string; credentials: { accessKeyId: string; secretAccessKey: string } };
  stop(): Promise<void>;
}

/** Starts moto's server on a free loopback port, installing moto first if this machine has not yet. */
export async function startMotoServer(): Promise<MotoServer> {
  const python = await motoPython();
  const port = await freePort();
  const processes = new ProcessGroup();
  const server = processes.start('moto server', python, [LAUNCHER, '-H', '127.0.0.1', '-p', String(port)], {
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
  });
  try {
    await server.waitForOutput(/Running on http:\/\/127\.0\.0\.1:\d+/, START_TIMEOUT_MS);
  } catch (error) {
    await processes.stopAll();
    throw error;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    endpoint,
    clientOptions: {
      region: 'us-east-1',
      endpoint,
      credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' },
    },
    stop: () => processes.stopAll(),
  };
}

/**
 * The Python of a virtual environment holding moto, made once per moto and Python version under
 * ~/.cache/keyturn (or KEYTURN_CACHE_DIR). One test file installs while the others wait for it (a lock
 * directory); the install happens in a directory of its own, renamed when complete, so a run cut short
 * never leaves a half-made environment behind.
 */
async function motoPython(): Promise<string> {
  const pythonVersion = await run('python3', ['-c', 'import sys; print("%d.%d" % sys.version_info[:2])']).then(
    ({ stdout }) => stdout.trim(),
    (error: unknown) => {
      throw new Error('the aws-kms custody tests run moto, from PyPI, with python3, and find none: install python3', {
        cause: error,
      });
    },
  );
  const venv = path.join(keyturnCacheDir(), `moto-${MOTO_VERSION}-python${pythonVersion}`);
  // bin/python finds its environment by the pyvenv.cfg beside it, so the renamed environment works.
  const python = path.join(venv, 'bin', 'python');
  const lock = `${venv}.lock`;
  await mkdir(path.dirname(venv), { recursive: true });
  while (!(await isCached(python))) {
    if (await takeLock(lock)) {
      try {
        if (!(await isCached(python))) await install(venv);
      } finally {
        await rm(lock, { recursive: true, force: true });
      }
    } else {
      await sleep(LOCK_POLL_MS);
    }
  }
  return python;
}

/** Takes the lock directory, or answers false while another process holds it (one left by a crash expires). */
async function takeLock(lock: string): Promise<boolean> {
  try {
    await mkdir(lock);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const taken = await stat(lock).then(
      ({ mtimeMs }) => mtimeMs,
      () => Date.now(),
    );
    if (Date.now() - taken > INSTALL_TIMEOUT_MS) await rm(lock, { recursive: true, force: true });
    return false;
  }
}

async function install(venv: string): Promise<void> {
  const partial = await mkdtemp(`${venv}.install-`);
  try {
    await run('python3', ['-m', 'venv', partial]).catch((error: { stderr?: string }) => {
      throw new Error(
        `python3 -m venv failed (on Debian, install python3-venv): ${error.stderr?.trim() ?? String(error)}`,
        { cause: error },
      );
    });
    const pip = ['-m', 'pip', 'install', '--quiet', `moto[server]==${MOTO_VERSION}`];
    await run(path.join(partial, 'bin', 'python'), pip, { timeout: INSTALL_TIMEOUT_MS }).catch(
      (error: { stderr?: string }) => {
        throw new Error(`cannot install moto ${MOTO_VERSION} from PyPI: ${error.stderr?.trim() ?? String(error)}`, {
          cause: error,
        });
      },
    );
    await rename(partial, venv);
  } finally {
    await rm(partial, { recursive: true, force: true });
  }
}
