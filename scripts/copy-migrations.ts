import { cp } from 'node:fs/promises';
import path from 'node:path';

/**
 * tsc compiles src/store/migrate.ts but does not copy the .sql files it reads from its own folder;
 * this puts them beside the compiled file (dist/src/store/migrations). Runs as dist/scripts/copy-migrations.js.
 */
async function copy(): Promise<void> {
  const repo = path.join(__dirname, '..', '..');
  const from = path.join(repo, 'src', 'store', 'migrations');
  const to = path.join(__dirname, '..', 'src', 'store', 'migrations');
  await cp(from, to, { recursive: true, filter: (file) => !file.endsWith('.ts') });
  console.log(`migrations: copied ${path.relative(process.cwd(), from)} to ${path.relative(process.cwd(), to)}`);
}

copy().catch((error: unknown) => {
  console.error(`copy-migrations: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
