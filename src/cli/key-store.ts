import { loadConfig, type Config } from '../config';
import { createLogger } from '../logger';
import { openKeyStore, type OpenedKeyStore } from '../runtime/open-key-store';

/**
 * The key store of DATABASE_URL, or of the keyturn instance running on the data folder (else the
 * embedded database, started for the command), with the KEKs the workers would use, for the
 * commands that open private keys or need the KEK ids (`token`, `kek`). Closed after `use`.
 */
export async function withKeyStore<T>(
  dataDir: string | undefined,
  use: (store: OpenedKeyStore, config: Config) => Promise<T>,
): Promise<T> {
  const config = loadConfig(process.env, { dataDir });
  // Silent: the logs would go to stdout, which is the command's result; a failure reaches the operator as the error.
  const store = await openKeyStore(config, createLogger({ level: 'silent' }), { joinRunningInstance: true });
  try {
    return await use(store, config);
  } finally {
    await store.close();
  }
}
