import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * `<dataDir>/instance.json`: how to reach the keyturn instance running on this data folder, so that
 * commands run beside it (`migrate`, `worker`, `status`, `rotate`, …) find it with no
 * environment set by hand. It holds addresses and paths only, never a key, and no password but
 * the embedded database's fixed local one.
 */
export interface InstanceInfo {
  version: 1;
  /** The process that started the embedded services; the file is stale once it is gone. */
  pid: number;
  startedAt: string;
  temporalAddress: string;
  namespace: string;
  taskQueue: string;
  /** The dev server's Web UI, when keyturn started the server. */
  webUiUrl: string | null;
  /** The embedded database; null when DATABASE_URL supplied it (its credentials stay in the environment). */
  databaseUrl: string | null;
  /** The KEK file in use; null when KEYTURN_KEK supplied the KEK. */
  kekFile: string | null;
  /**
   * The base URL the instance's JWKS server derives key set issuers from, when it runs one: tokens
   * signed beside it (`keyturn token sign`, `keyturn signer`) must name the issuer its discovery does.
   */
  publicUrl?: string;
}

export function instanceFilePath(dataDir: string): string {
  return path.join(dataDir, 'instance.json');
}

/** Records the running instance; written whole through a rename, so a reader never sees half a file. */
export async function writeInstanceFile(
  dataDir: string,
  info: Omit<InstanceInfo, 'version' | 'pid' | 'startedAt'>,
): Promise<void> {
  const record: InstanceInfo = { version: 1, pid: process.pid, startedAt: new Date().toISOString(), ...info };
  const file = instanceFilePath(dataDir);
  await mkdir(dataDir, { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  await rename(temporary, file);
}

/** The instance recorded in `dataDir` if its process is still alive; undefined otherwise. */
export async function readLiveInstance(dataDir: string): Promise<InstanceInfo | undefined> {
  let text: string;
  try {
    text = await readFile(instanceFilePath(dataDir), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let info: InstanceInfo;
  try {
    info = JSON.parse(text) as InstanceInfo;
  } catch {
    // A file we cannot read describes nothing we can reach; the next start overwrites it.
    return undefined;
  }
  return info.version === 1 && isAlive(info.pid) ? info : undefined;
}

/**
 * `config` with the public URL of the instance running on its data folder, unless the environment names
 * one: beside `keyturn dev --port 9000`, a token's issuer is the dev JWKS server's, not PORT's default.
 */
export async function withInstancePublicUrl<T extends { dataDir: string; publicUrl?: string }>(config: T): Promise<T> {
  if (config.publicUrl !== undefined) return config;
  const publicUrl = (await readLiveInstance(config.dataDir))?.publicUrl;
  return publicUrl === undefined ? config : { ...config, publicUrl };
}

/** Removes the file if this process wrote it, so that a stopped instance is not taken for a running one. */
export async function removeInstanceFile(dataDir: string): Promise<void> {
  const live = await readLiveInstance(dataDir).catch(() => undefined);
  if (live?.pid === process.pid) await rm(instanceFilePath(dataDir), { force: true });
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
