import os from 'node:os';
import { z } from 'zod';
import { loadConfig, type Config } from '../config';
import { KeyturnError } from '../domain/errors';
import { isKeySetId, keySetIdProblem } from '../domain/key-set-id';
import { resolveTemporalTarget, withClient } from '../client/connect';
import { KeySetClient } from '../client/key-set-client';

/**
 * What the operator commands (status, rotate, revoke, pause, resume, verify) share: the checks of
 * the options that say where Temporal is (src/cli/program.ts declares them), and a KeySetClient for
 * the length of one command.
 */

const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]/]+):(\d{1,5})$/;

export const connectionOptions = z.object({
  address: z.string().regex(HOST_PORT, { error: '--address must be host:port, e.g. localhost:7233' }).optional(),
  namespace: z
    .string()
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, {
      error: "--namespace must be a namespace name: letters, digits, '.', '_' or '-'",
    })
    .optional(),
  dataDir: z.string().optional(),
  json: z.boolean().default(false),
});
export type ConnectionOptions = z.infer<typeof connectionOptions>;

/** A key set id by the one rule (src/domain/key-set-id.ts), checked before anything is contacted. */
export const keySetIdArgument = z.string().refine(isKeySetId, { error: (issue) => keySetIdProblem(issue.input) });

/** `--reason`, required and not blank: it goes into the audit trail. */
export function reasonOption(what: string) {
  const error = `${what} needs a reason: --reason <text> (it goes into the audit trail)`;
  return z.string({ error }).trim().min(1, { error });
}

/** Checks a command's arguments and options; the first problem becomes a one-line KeyturnError. */
export function parseOptions<T>(schema: z.ZodType<T>, input: unknown): T {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const field = String(parsed.error.issues[0]?.path[0] ?? '');
  const message = parsed.error.issues.map((issue) => issue.message).join('; ');
  throw new KeyturnError(field === 'reason' ? 'ERR_REASON_REQUIRED' : 'ERR_CONFIG_INVALID', message, { field });
}

/**
 * Connects to the Temporal server the options name (5 s to answer), hands `use` a KeySetClient
 * and closes the connection after; failures to connect or refusals are one line saying what to set.
 */
export async function withKeySets<T>(
  options: ConnectionOptions,
  use: (keySets: KeySetClient, config: Config) => Promise<T>,
): Promise<T> {
  const config = loadConfig(process.env, { dataDir: options.dataDir });
  const target = await resolveTemporalTarget(config, options);
  return withClient(target, (client) => use(new KeySetClient(client, config.taskQueue), config));
}

/** Who asked, for the audit trail: KEYTURN_ACTOR (a deployment script's name, a ticket), else the OS user. */
export function requestedBy(): string {
  const actor = process.env.KEYTURN_ACTOR?.trim();
  if (actor) return actor;
  let user = process.env.USER ?? process.env.LOGNAME;
  try {
    user ??= os.userInfo().username;
  } catch {
    // A container user without a passwd entry.
  }
  return `${user ?? 'unknown user'} (keyturn CLI)`;
}
