import { Command } from 'commander';
import { connectionOptions, keySetIdArgument, operatorCommand, parseOptions, reasonOption, requestedBy, withKeySets } from '../operator';

const schema = connectionOptions.extend({ keySetId: keySetIdArgument, reason: reasonOption('pausing a key set') });

export const pauseCommand = operatorCommand('pause')
  .description('stop scheduled transitions of a key set until `keyturn resume`; rotate and revoke still work')
  .argument('<id>', 'key set id')
  .option('--reason <text>', 'why (required)')
  .action(async (id: string, _options: unknown, command: Command) => {
    const options = parseOptions(schema, { ...command.opts(), keySetId: id });
    await withKeySets(options, (keySets) => keySets.pause(options.keySetId, options.reason, requestedBy()));
    console.log(
      options.json
        ? JSON.stringify({ id: options.keySetId, paused: true, reason: options.reason })
        : `key set "${options.keySetId}" paused: no scheduled transition until \`keyturn resume ${options.keySetId}\``,
    );
  });
