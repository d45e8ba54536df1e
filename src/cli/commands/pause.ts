import type { Command } from 'commander';
import { connectionOptions, keySetIdArgument, parseOptions, reasonOption, requestedBy, withKeySets } from '../operator';

const schema = connectionOptions.extend({ keySetId: keySetIdArgument, reason: reasonOption('pausing a key set') });

export async function pauseAction(id: string, _options: unknown, command: Command): Promise<void> {
  const options = parseOptions(schema, { ...command.opts(), keySetId: id });
  await withKeySets(options, (keySets) => keySets.pause(options.keySetId, options.reason, requestedBy()));
  console.log(
    options.json
      ? JSON.stringify({ id: options.keySetId, paused: true, reason: options.reason })
      : `key set "${options.keySetId}" paused: no scheduled transition until \`keyturn resume ${options.keySetId}\``,
  );
}
