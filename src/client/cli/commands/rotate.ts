import { Command } from 'commander';
import { z } from 'zod';
import { connectionOptions, keySetIdArgument, operatorCommand, parseOptions, requestedBy, withKeySets } from '../operator';

const schema = connectionOptions.extend({
  keySetId: keySetIdArgument,
  reason: z.string().trim().optional(),
  wait: z.boolean().default(true),
});

export const rotateCommand = operatorCommand('rotate')
  .description('rotate a key set now: waits and prints the new active kid; --no-wait only asks (signal)')
  .argument('<id>', 'key set id')
  .option('--reason <text>', 'why, for the audit trail')
  .option('--no-wait', 'send the request and return at once; the workflow retries it if it fails')
  .action(async (id: string, _options: unknown, command: Command) => {
    const options = parseOptions(schema, { ...command.opts(), keySetId: id });
    const request = { ...(options.reason && { reason: options.reason }), requestedBy: requestedBy() };
    await withKeySets(options, async (keySets) => {
      if (!options.wait) {
        await keySets.requestRotation(options.keySetId, request);
        console.log(
          options.json
            ? JSON.stringify({ id: options.keySetId, requested: true })
            : `rotation of key set "${options.keySetId}" requested; \`keyturn status ${options.keySetId}\` shows the new active key once it is done`,
        );
        return;
      }
      const result = await keySets.rotate(options.keySetId, request);
      console.log(
        options.json
          ? JSON.stringify({ id: options.keySetId, ...result })
          : `key set "${options.keySetId}" rotated: ${result.activeKid} is active` +
              (result.previousKid ? `, ${result.previousKid} verifies through its grace period` : ''),
      );
    });
  });
