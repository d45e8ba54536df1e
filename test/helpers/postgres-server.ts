/**
 * One PostgreSQL server, the embedded one keyturn dev runs, as a process of its own for tests that
 * stop and restart it (`node --import tsx postgres-server.ts <data dir> <port> [<system dir> <packages from>]`):
 * prints `ready <url>` once it accepts connections, and stops it on SIGTERM, or when the test process
 * that started it is gone (its stdin closes). An existing cluster in the data folder is started with
 * its data. The last two name a placement (postgres-reach.ts): the packages as installed in
 * `<packages from>/node_modules`, and the system folder.
 */
import path from 'node:path';
import { startEmbeddedPostgres } from '../../src/runtime/embedded-postgres';
import { installedPostgresPackages } from '../../src/runtime/postgres-reach';

async function main(): Promise<void> {
  const [dataDir, port, systemDir, packagesFrom] = process.argv.slice(2);
  const placement =
    systemDir === undefined
      ? undefined
      : { systemDir, packages: installedPostgresPackages(path.join(packagesFrom, 'resolve-from-here.js')) };
  const postgres = await startEmbeddedPostgres({ dataDir, port: Number(port), persistent: true, placement });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void postgres.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.stdin.on('end', stop);
  process.stdin.resume();
  process.stdout.write(`ready ${postgres.url}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
