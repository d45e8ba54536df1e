import type { Command } from 'commander';
import { z } from 'zod';
import { connectionOptions, keySetIdArgument, parseOptions, reasonOption, requestedBy, withKeySets } from '../operator';

const KID_ONCE = 'name the key to revoke once: `keyturn revoke <id> <kid>` or `keyturn revoke <id> --kid <kid>`';

const schema = connectionOptions
  .extend({
    keySetId: keySetIdArgument,
    kid: z.string().trim().min(1, { error: 'the kid must not be empty' }).optional(),
    kidOption: z.string().trim().min(1, { error: '--kid must not be empty' }).optional(),
    reason: reasonOption('revoking a key'),
  })
  .refine((options) => (options.kid === undefined) !== (options.kidOption === undefined), {
    error: KID_ONCE,
    path: ['kid'],
  })
  .transform(({ kidOption, ...options }) => ({ ...options, kid: (options.kid ?? kidOption)! }));

export async function revokeAction(
  id: string,
  kid: string | undefined,
  _options: unknown,
  command: Command,
): Promise<void> {
  // Checked before anything is contacted: no reason, no revocation.
  const { kid: kidOption, ...rest } = command.opts<{ kid?: string }>();
  const options = parseOptions(schema, { ...rest, kidOption, keySetId: id, kid });
  await withKeySets(options, async (keySets) => {
    const result = await keySets.revoke(options.keySetId, options.kid, options.reason, requestedBy());
    console.log(
      options.json
        ? JSON.stringify({ id: options.keySetId, ...result })
        : `revoked ${result.revokedKid} of key set "${options.keySetId}" (it was ${result.previousState}); ` +
            `active key now ${result.activeKid ?? 'none'}`,
    );
  });
}
