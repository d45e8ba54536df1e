import { parseArgs } from 'node:util';
import {
  resolveTemporalCli,
  resolveTestServerExecutable,
  type ResolvedExecutable,
} from '../src/dev/temporal-executables';

/** Makes the requested Temporal executables resolvable, building what is missing. */

const executables = {
  cli: { label: 'Temporal CLI', resolve: resolveTemporalCli },
  'test-server': { label: 'Temporal test server', resolve: resolveTestServerExecutable },
};

async function provision(): Promise<void> {
  const { values } = parseArgs({ options: { cli: { type: 'boolean' }, 'test-server': { type: 'boolean' } } });
  const requested = (Object.keys(executables) as (keyof typeof executables)[]).filter((flag) => values[flag]);
  if (requested.length === 0) throw new Error('nothing to provision: pass --cli and/or --test-server');
  for (const flag of requested) {
    const { label, resolve } = executables[flag];
    console.log(`${label}: ${describe(await resolve())}`);
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
