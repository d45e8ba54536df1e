import { Command } from 'commander';
import { connectionOptions, keySetIdArgument, operatorCommand, parseOptions, requestedBy, withKeySets } from '../operator';

const schema = connectionOptions.extend({ keySetId: keySetIdArgument });

export const resumeCommand = operatorCommand('resume')
  .description('restart the scheduled transitions of a paused key set; overdue ones run at once')
  .argument('<id>', 'key set id')
  .action(async (id: string, _options: unknown, command: Command) => {
    const options = parseOptions(schema, { ...command.opts(), keySetId: id });
    await withKeySets(options, (keySets) => keySets.resume(options.keySetId, requestedBy()));
    console.log(options.json ? JSON.stringify({ id: options.keySetId, paused: false }) : `key set "${options.keySetId}" resumed`);
  });
