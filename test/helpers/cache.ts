import { access } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';

/** Where test helpers keep what they build or install once per machine: ~/.cache/keyturn, or KEYTURN_CACHE_DIR. */
export function keyturnCacheDir(): string {
  return path.resolve(process.env.KEYTURN_CACHE_DIR || path.join(homedir(), '.cache', 'keyturn'));
}

/** Whether `file` exists: a cache entry is renamed into place only when complete, so existing means ready. */
export async function isCached(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}
