import type { Command } from 'commander';
import { connectionOptions, keySetIdArgument, parseOptions, requestedBy, withKeySets } from '../operator';

const schema = connectionOptions.extend({ keySetId: keySetIdArgument });

export async function resumeAction(id: string, _options: unknown, command: Command): Promise<void> {
  const options = parseOptions(schema, { ...command.opts(), keySetId: id });
  await withKeySets(options, (keySets) => keySets.resume(options.keySetId, requestedBy()));
  console.log(
    options.json ? JSON.stringify({ id: options.keySetId, paused: false }) : `key set "${options.keySetId}" resumed`,
  );
}
