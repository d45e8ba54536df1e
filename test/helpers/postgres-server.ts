/**
 * One PostgreSQL server, the embedded one keyturn dev runs, as a process of its own for tests that
 * stop and restart it (`node --import tsx postgres-server.ts <data dir> <port> [<system dir> <packages from>]`):
 * prints `ready <url>` once it accepts connections, and stops it on SIGTERM, or when the test process
 * that started it is gone (its stdin closes), as the stack's does (runPostgresUntilStopped). An existing
 * cluster in the data folder is started with its data. The last two name a placement (postgres-reach.ts):
 * the packages as installed in `<packages from>/node_modules`, and the system folder.
 */
import path from 'node:path';
import { installedPostgresPackages } from '../../src/runtime/postgres-reach';
import { runPostgresUntilStopped } from '../../src/stack/postgres-until-stopped';

const [dataDir, port, systemDir, packagesFrom] = process.argv.slice(2);
runPostgresUntilStopped(
  () => ({
    dataDir,
    port: Number(port),
    persistent: true,
    placement:
      systemDir === undefined
        ? undefined
        : { systemDir, packages: installedPostgresPackages(path.join(packagesFrom, 'resolve-from-here.js')) },
  }),
  (url) => `ready ${url}`,
);
