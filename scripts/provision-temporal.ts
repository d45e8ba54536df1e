import path from 'node:path';
import { parseArgs } from 'node:util';
import {
  resolveTemporalCli,
  resolveTemporalServer,
  resolveTemporalUiServer,
  resolveTestServerExecutable,
  type ResolvedExecutable,
} from '../src/dev/temporal-executables';

/** Makes the requested Temporal executables resolvable, building what is missing. */

const executables = {
  cli: { label: 'Temporal CLI', resolve: async () => describe(await resolveTemporalCli()) },
  'test-server': { label: 'Temporal test server', resolve: async () => describe(await resolveTestServerExecutable()) },
  // For keyturn stack: never downloaded, always built.
  server: {
    label: 'Temporal server and SQL tool',
    resolve: async () => path.dirname((await resolveTemporalServer()).server),
  },
  ui: { label: 'Temporal Web UI server', resolve: resolveTemporalUiServer },
};

async function provision(): Promise<void> {
  const { values } = parseArgs({
    options: {
      cli: { type: 'boolean' },
      'test-server': { type: 'boolean' },
      server: { type: 'boolean' },
      ui: { type: 'boolean' },
    },
  });
  const requested = (Object.keys(executables) as (keyof typeof executables)[]).filter((flag) => values[flag]);
  if (requested.length === 0) throw new Error('nothing to provision: pass any of --cli, --test-server, --server, --ui');
  for (const flag of requested) {
    const { label, resolve } = executables[flag];
    console.log(`${label}: ${await resolve()}`);
  }
}

function describe({ executable, source }: ResolvedExecutable): string {
  return executable.type === 'existing-path'
    ? `${executable.path} (${source})`
    : 'downloaded by the Temporal SDK on first use (download)';
}

provision().catch((error: unknown) => {
  console.error(`provision-temporal: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
