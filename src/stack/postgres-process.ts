/**
 * The stack's PostgreSQL, the embedded one `keyturn dev` runs, in a process of its own, so the stack
 * can stop it and start it again like its other servers:
 * `node postgres-process.js <data dir> <port> <superuser password file>`, superuser `postgres` as in
 * the postgres image. Prints `ready` (not its URL: that holds the password, and the output goes to a
 * log) once it accepts connections; stops it on SIGTERM or SIGINT, or when the stack that started it
 * is gone (its stdin closes). An existing cluster is started with its data.
 */
import { readFile } from 'node:fs/promises';
import { runPostgresUntilStopped } from './postgres-until-stopped';

const [dataDir, port, passwordFile] = process.argv.slice(2);
runPostgresUntilStopped(
  async () => ({
    dataDir,
    port: Number(port),
    persistent: true,
    superuser: { name: 'postgres', password: (await readFile(passwordFile, 'utf8')).trim() },
    // Two Temporal nodes hold up to 22 connections each (development-postgres12.yaml's pools), and two
    // workers, two JWKS servers and a CLI command up to 11 each with their LISTEN: more than the
    // default 100 once verifiers and operators join (`keyturn verify` was refused a slot).
    maxConnections: 300,
  }),
  () => 'ready',
);
