import { access } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config';
import { loadOrCreateKekFile, parseKekRing, type KekRing } from '../crypto/kek';
import { KeyturnError } from '../domain/errors';
import type { Logger } from '../logger';
import type { ResolvedDatabase } from './database';

export interface ResolvedKek {
  ring: KekRing;
  /** The file the KEK came from; null when KEYTURN_KEK supplied it. */
  kekFile: string | null;
}

/**
 * KEYTURN_KEK when set. A database from DATABASE_URL is a real deployment: it gets no generated
 * KEK, because keys sealed under a KEK nobody kept are lost. The embedded database keeps its KEK
 * in `<dataDir>/kek`, created on first use; a worker joining a running instance uses that one's file.
 * Only paths and KEK ids are logged, never a key.
 */
export async function resolveKek(config: Config, database: ResolvedDatabase, logger: Logger): Promise<ResolvedKek> {
  if (config.kek !== undefined) return { ring: parseKekRing(config.kek), kekFile: null };

  if (database.source === 'DATABASE_URL') {
    throw new KeyturnError(
      'ERR_KEK_MISSING',
      'KEYTURN_KEK is not set, and DATABASE_URL is: keys in that database are sealed with a key-encryption key you must supply. ' +
        'Create one with `openssl rand -base64 32`, store it safely (without it the keys cannot be opened; KEYTURN_KEK_FILE may ' +
        'name a file holding it) and set KEYTURN_KEK to it',
      { field: 'KEYTURN_KEK' },
    );
  }

  const kekFile = database.instance?.kekFile ?? path.join(config.dataDir, 'kek');
  if (database.source === 'instance' && !(await exists(kekFile))) {
    throw new KeyturnError(
      'ERR_KEK_MISSING',
      `the running keyturn instance's KEK file ${kekFile} is missing: set KEYTURN_KEK to the KEK that instance uses`,
      { field: 'KEYTURN_KEK' },
    );
  }
  const { ring, created } = await loadOrCreateKekFile(kekFile);
  logger.info(
    { kekFile, kekId: ring.current.id },
    created
      ? `KEYTURN_KEK is not set: generated a key-encryption key in ${kekFile}; keep that file with the data, the stored keys cannot be opened without it`
      : `KEYTURN_KEK is not set: using the key-encryption key in ${kekFile}`,
  );
  return { ring, kekFile };
}

async function exists(file: string): Promise<boolean> {
  return access(file).then(
    () => true,
    () => false,
  );
}
