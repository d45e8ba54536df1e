import { Command } from 'commander';
import { z } from 'zod';
import { connectionOptions, keySetIdArgument, operatorCommand, parseOptions, reasonOption, requestedBy, withKeySets } from '../operator';

const schema = connectionOptions.extend({
  keySetId: keySetIdArgument,
  kid: z.string().trim().min(1, { error: 'the kid must not be empty' }),
  reason: reasonOption('revoking a key'),
});

export const revokeCommand = operatorCommand('revoke')
  .description('emergency revocation: the key leaves the JWKS at once and its private part is erased; an active key is replaced at once')
  .argument('<id>', 'key set id')
  .argument('<kid>', 'the key to revoke (`keyturn status <id>` lists them)')
  .option('--reason <text>', 'why (required), for the audit trail')
  // A kid is a base64url thumbprint and may start with '-': taken as the argument, not an unknown option.
  .allowUnknownOption()
  .action(async (id: string, kid: string, _options: unknown, command: Command) => {
    // Checked before anything is contacted: no reason, no revocation.
    const options = parseOptions(schema, { ...command.opts(), keySetId: id, kid });
    await withKeySets(options, async (keySets) => {
      const result = await keySets.revoke(options.keySetId, options.kid, options.reason, requestedBy());
      console.log(
        options.json
          ? JSON.stringify({ id: options.keySetId, ...result })
          : `revoked ${result.revokedKid} of key set "${options.keySetId}" (it was ${result.previousState}); ` +
              `active key now ${result.activeKid ?? 'none'}`,
      );
    });
  });
