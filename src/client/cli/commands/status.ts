import { Command } from 'commander';
import type { Config } from '../../../config';
import type { KeySetStatus } from '../../../domain/keyset-state';
import { KeyturnError } from '../../../domain/errors';
import { KeySetDatabase } from '../../key-set-database';
import type { KeySetClient } from '../../keyset-client';
import { connectionOptions, keySetIdArgument, operatorCommand, parseOptions, withKeySets } from '../operator';
import { formatStatus, formatStatusLines, statusJson, type StatusProblemJson } from '../output';

const schema = connectionOptions.extend({ keySetId: keySetIdArgument.optional() });

export interface StatusOverview {
  /** Where the list of key sets came from. */
  source: 'PostgreSQL' | 'Temporal visibility';
  entries: (KeySetStatus | StatusProblemJson)[];
}

/**
 * Every key set's state. The list comes from PostgreSQL's key_sets table when a database is known
 * (DATABASE_URL, or the running instance's): every key set not decommissioned, including one whose
 * workflow is gone. Otherwise from Temporal's visibility store: the running key set workflows.
 */
export async function collectStatuses(keySets: KeySetClient, config: Config): Promise<StatusOverview> {
  const database = await KeySetDatabase.open(config);
  let ids: string[];
  try {
    ids = database ? await database.listKeySetIds() : await keySets.listRunningKeySetIds();
  } finally {
    await database?.close();
  }
  const entries: StatusOverview['entries'] = [];
  for (const id of ids) {
    try {
      entries.push(await keySets.getState(id));
    } catch (error) {
      if (!(error instanceof KeyturnError)) throw error;
      entries.push({ id, error: error.message });
    }
  }
  return { source: database ? 'PostgreSQL' : 'Temporal visibility', entries };
}

export const statusCommand = operatorCommand('status')
  .description("a key set's keys with their states and times, policy, pause, next transition and last error; without an id, one line per key set")
  .argument('[id]', 'key set id')
  .action(async (id: string | undefined, _options: unknown, command: Command) => {
    const options = parseOptions(schema, { ...command.opts(), keySetId: id });
    await withKeySets(options, async (keySets, config) => {
      if (options.keySetId !== undefined) {
        const status = await keySets.getState(options.keySetId);
        console.log(options.json ? JSON.stringify(statusJson(status)) : formatStatus(status, Date.now()));
        return;
      }
      const { entries } = await collectStatuses(keySets, config);
      console.log(
        options.json
          ? JSON.stringify(entries.map((entry) => ('error' in entry ? entry : statusJson(entry))))
          : formatStatusLines(entries, Date.now()),
      );
      const unreadable = entries.filter((entry) => 'error' in entry).length;
      if (unreadable > 0) throw new Error(`${unreadable} of ${entries.length} key set(s) could not be read`);
    });
  });
