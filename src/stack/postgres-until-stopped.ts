import { startEmbeddedPostgres, type EmbeddedPostgresOptions } from '../runtime/embedded-postgres';

/**
 * The whole of a process that holds one embedded PostgreSQL for its parent, which stops it and starts
 * it again like its other servers (the stack's postgres-process.ts, the tests' postgres-server.ts):
 * prints `readyLine` once it accepts connections; stops it on SIGTERM or SIGINT, or when the parent is
 * gone (its stdin closes). A failure to start is printed on stderr, with exit code 1.
 */
export function runPostgresUntilStopped(
  options: () => Promise<EmbeddedPostgresOptions> | EmbeddedPostgresOptions,
  readyLine: (url: string) => string,
): void {
  const run = async () => {
    const postgres = await startEmbeddedPostgres(await options());
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
    process.stdout.write(`${readyLine(postgres.url)}\n`);
  };
  run().catch((error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
