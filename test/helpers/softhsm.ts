import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Pkcs11CustodySettings } from '../../src/domain/custody-settings';

/** Where Debian (and a few other systems) put SoftHSM2's PKCS#11 module. */
const MODULE_PATHS = [
  '/usr/lib/softhsm/libsofthsm2.so',
  '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so',
  '/usr/lib64/pkcs11/libsofthsm2.so',
  '/usr/local/lib/softhsm/libsofthsm2.so',
];

declare global {
  var keyturnTestSoftHsmDir: string | undefined;
}

/**
 * For jest's global set-up: SoftHSM2 reads SOFTHSM2_CONF, the file naming its token directory, in
 * C_Initialize, from the process's real environment. A test file's process.env is jest's copy, which
 * native code never sees; the global set-up's is real, and the workers inherit it. So one directory
 * serves the whole run, each test file making its own token in it.
 */
export async function createSoftHsmDirectory(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-softhsm-'));
  const tokenDir = path.join(dir, 'tokens');
  await mkdir(tokenDir);
  const conf = path.join(dir, 'softhsm2.conf');
  await writeFile(conf, `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  globalThis.keyturnTestSoftHsmDir = dir;
  process.env.SOFTHSM2_CONF = conf;
}

/** For jest's global teardown. */
export async function removeSoftHsmDirectory(): Promise<void> {
  if (globalThis.keyturnTestSoftHsmDir !== undefined)
    await rm(globalThis.keyturnTestSoftHsmDir, { recursive: true, force: true });
}

export interface SoftHsmToken {
  /** The PKCS#11 module to load. */
  module: string;
  label: string;
  /** The user PIN, for the test's own login; custody reads it from pinFile. */
  pin: string;
  /** A 0600 file holding the PIN and a trailing newline, as an operator's would. */
  pinFile: string;
  /** Custody settings for this token. */
  settings: Pkcs11CustodySettings;
  /** Deletes the token and its PIN file. */
  close(): Promise<void>;
}

/**
 * A throwaway SoftHSM2 token (its label `<label>-<random>`) in the run's token directory. SoftHSM2
 * lists the tokens there once, at C_Initialize, and C_Initialize is per process: make the token before
 * the file's first custody loads the module, and close every custody (the last close finalises the
 * module) before the file ends, so that the next file jest runs in this worker initialises afresh and
 * sees its own token. Workers are processes of their own, each with its own initialisation.
 */
export async function createSoftHsmToken(label = 'keyturn-test'): Promise<SoftHsmToken> {
  const module = MODULE_PATHS.find((candidate) => existsSync(candidate));
  if (module === undefined) {
    throw new Error(`SoftHSM2's PKCS#11 module is not in ${MODULE_PATHS.join(', ')}: install Debian's softhsm2`);
  }
  if (process.env.SOFTHSM2_CONF === undefined) {
    throw new Error('SOFTHSM2_CONF is not set: jest runs createSoftHsmDirectory in its global set-up');
  }
  const tokenLabel = `${label}-${randomBytes(4).toString('hex')}`;
  const pin = randomBytes(6).toString('hex');
  const softhsm = (...args: string[]) => promisify(execFile)('softhsm2-util', args);
  await softhsm(
    '--init-token',
    '--free',
    '--label',
    tokenLabel,
    '--so-pin',
    randomBytes(6).toString('hex'),
    '--pin',
    pin,
  );
  const pinDir = await mkdtemp(path.join(os.tmpdir(), 'keyturn-softhsm-pin-'));
  const pinFile = path.join(pinDir, 'pin');
  await writeFile(pinFile, `${pin}\n`, { mode: 0o600 });
  return {
    module,
    label: tokenLabel,
    pin,
    pinFile,
    settings: { backend: 'pkcs11', module, tokenLabel, pinFile },
    async close() {
      await softhsm('--delete-token', '--token', tokenLabel);
      await rm(pinDir, { recursive: true, force: true });
    },
  };
}
