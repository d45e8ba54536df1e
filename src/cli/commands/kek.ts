import type { Command } from 'commander';
import { z } from 'zod';
import { KeyturnError } from '../../domain/errors';
import { kekStatus, rewrapKeySets } from '../../client/kek-roll';
import { countPrivateKeysByKek } from '../../store/kek-rewrap';
import { withKeyStore } from '../key-store';
import { parseOptions, requestedBy } from '../operator';
import { formatKekRewrap, formatKekStatus, kekRewrapJson, kekSource, kekStatusJson } from '../output';

// Rolling the KEK: put a new KEK first and restart every worker and issuer, `kek rewrap`, check
// with `kek status`, then drop the old KEK and restart again. The KEKs are found as the workers
// find them: KEYTURN_KEK, else the KEK file of the keyturn instance on the data folder.

const statusSchema = z.object({ dataDir: z.string().optional(), json: z.boolean().default(false) });

export async function kekStatusAction(_options: unknown, command: Command): Promise<void> {
  const options = parseOptions(statusSchema, command.opts());
  const status = await withKeyStore(options.dataDir, async (store) =>
    kekStatus(store.kekRing, await countPrivateKeysByKek(store.pool), store.kekFile),
  );
  console.log(options.json ? JSON.stringify(kekStatusJson(status)) : formatKekStatus(status));
  const missing = status.keks.filter((kek) => !kek.configured);
  if (missing.length > 0) {
    const keys = missing.reduce((sum, kek) => sum + kek.privateKeys, 0);
    const keySets = [...new Set(missing.flatMap((kek) => kek.keySetIds))].sort();
    throw new KeyturnError(
      'ERR_KEK_UNKNOWN',
      `${keys} private key(s) of key set(s) ${keySets.join(', ')} are sealed under KEK ${missing.map((kek) => kek.id).join(', ')}, ` +
        `which ${kekSource(status.kekFile)} lacks: those keys cannot be opened until that KEK is added back after the current one`,
    );
  }
}

const rewrapSchema = z.object({
  dataDir: z.string().optional(),
  json: z.boolean().default(false),
  reason: z
    .string()
    .trim()
    .min(1, { error: '--reason must not be blank: it goes into the audit trail' })
    .default('KEK rolled'),
});

export async function kekRewrapAction(_options: unknown, command: Command): Promise<void> {
  const options = parseOptions(rewrapSchema, command.opts());
  const { current, kekFile, outcomes } = await withKeyStore(options.dataDir, async (store) => ({
    current: store.kekRing.current.id,
    kekFile: store.kekFile,
    outcomes: await rewrapKeySets(store.keyStore, { actor: requestedBy(), reason: options.reason }),
  }));
  console.log(
    options.json ? JSON.stringify(kekRewrapJson(current, outcomes)) : formatKekRewrap(current, kekFile, outcomes),
  );
  const failed = outcomes.filter((o) => o.outcome === 'failed');
  if (failed.length > 0) {
    throw new Error(
      `${failed.length} of ${outcomes.length} key set(s) not rewrapped, nothing changed in them: ${failed.map((o) => o.keySetId).join(', ')}`,
    );
  }
}
