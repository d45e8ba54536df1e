/**
 * The stack's PostgreSQL, the embedded one `keyturn dev` runs, in a process of its own, so the stack
 * can stop it and start it again like its other servers:
 * `node postgres-process.js <data dir> <port> <superuser password file>`, superuser `postgres` as in
 * the postgres image. Prints `ready` once it accepts connections; stops it on SIGTERM or SIGINT, or
 * when the stack that started it is gone (its stdin closes). An existing cluster is started with its data.
 */
import { readFile } from 'node:fs/promises';
import { startEmbeddedPostgres } from '../runtime/embedded-postgres';

async function main(): Promise<void> {
  const [dataDir, port, passwordFile] = process.argv.slice(2);
  const password = (await readFile(passwordFile, 'utf8')).trim();
  const postgres = await startEmbeddedPostgres({
    dataDir,
    port: Number(port),
    persistent: true,
    superuser: { name: 'postgres', password },
    // Two Temporal nodes hold up to 22 connections each (development-postgres12.yaml's pools), and two
    // workers, two JWKS servers and a CLI command up to 11 each with their LISTEN: more than the
    // default 100 once verifiers and operators join (`keyturn verify` was refused a slot).
    maxConnections: 300,
  });
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
  process.stdout.write('ready\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
