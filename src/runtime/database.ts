import path from 'node:path';
import type { Config } from '../config';
import { startEmbeddedPostgres } from './embedded-postgres';
import type { Logger } from '../logger';
import { readLiveInstance, type InstanceInfo } from './instance-file';

/** Where the database came from, which decides where the KEK may come from. */
export type DatabaseSource = 'DATABASE_URL' | 'instance' | 'embedded';

export interface ResolvedDatabase {
  url: string;
  source: DatabaseSource;
  /** The running instance whose database this is, when source is `instance`. */
  instance?: InstanceInfo;
  /** Stops the embedded server if this call started it; otherwise does nothing. */
  stop(): Promise<void>;
}

export interface ResolveDatabaseOptions {
  /**
   * Use the database of a keyturn instance already running on the data folder (a `worker`, `migrate`,
   * `serve` or operator command beside `keyturn dev`). `dev` itself passes false: it owns its embedded services.
   */
  joinRunningInstance: boolean;
}

/**
 * DATABASE_URL when set; else the database of the instance running on the data folder, if asked;
 * else an embedded PostgreSQL in `<dataDir>/postgres`, persistent, on KEYTURN_PG_PORT (5433).
 */
export async function resolveDatabase(
  config: Config,
  logger: Logger,
  options: ResolveDatabaseOptions,
): Promise<ResolvedDatabase> {
  const nothingToStop = async () => undefined;
  if (config.databaseUrl) return { url: config.databaseUrl, source: 'DATABASE_URL', stop: nothingToStop };

  if (options.joinRunningInstance) {
    const instance = await readLiveInstance(config.dataDir);
    if (instance?.databaseUrl) {
      logger.info(
        { dataDir: config.dataDir, instancePid: instance.pid },
        'using the database of the keyturn instance running on this data folder',
      );
      return { url: instance.databaseUrl, source: 'instance', instance, stop: nothingToStop };
    }
  }

  const dataDir = path.join(config.dataDir, 'postgres');
  logger.info({ dataDir, port: config.pgPort }, 'starting the embedded PostgreSQL (no DATABASE_URL set)');
  const postgres = await startEmbeddedPostgres({
    dataDir,
    port: config.pgPort,
    persistent: true,
    onLog: (message) => logger.debug({ component: 'postgres' }, String(message).trim()),
  });
  return { url: postgres.url, source: 'embedded', stop: () => postgres.stop() };
}

/** The URL with its password masked, for logs and banners. */
export function displayDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(unparseable database URL)';
  }
}
