import { inspect } from 'node:util';
import { CommanderError, type Command } from 'commander';
import { createProgram } from './program';

/**
 * Runs the CLI and returns its exit code. The only place an error becomes an exit code: one line
 * `keyturn: <message>` on stderr and 1, with the stack only when KEYTURN_DEBUG is set.
 */
export async function runCli(args: string[]): Promise<number> {
  try {
    const program = createProgram();
    await program.parseAsync(kidAfterKeySetId(program, args), { from: 'user' });
    return 0;
  } catch (error) {
    // Commander has printed its own message (usage errors) or the help text already.
    if (error instanceof CommanderError) return error.exitCode;
    process.stderr.write(`keyturn: ${oneLine(error)}\n`);
    if (process.env.KEYTURN_DEBUG) process.stderr.write(`${inspect(error, { depth: 5 })}\n`);
    return 1;
  }
}

/** What bin/keyturn.js runs. The exit code is set, not forced, so output still being written is not cut off. */
export async function main(): Promise<void> {
  process.exitCode = await runCli(process.argv.slice(2));
}

/**
 * A kid is a base64url thumbprint and may start with '-' (`-hXyz…`), which commander would read as
 * options. In `keyturn revoke <id> <kid>`, the word right after the key set id is the kid unless it
 * is one of revoke's options: it is handed on as `--kid=<kid>`, which commander cannot misread.
 * Every other word is left to commander, so an unknown option anywhere else is still refused.
 */
function kidAfterKeySetId(program: Command, args: string[]): string[] {
  const revoke = program.commands.find((command) => command.name() === 'revoke');
  if (args[0] !== 'revoke' || !revoke) return args;
  const optionOf = (word: string) => revoke.options.find((option) => option.long === word || option.short === word);
  const isOption = (word: string) => word === '-h' || word === '--help' || optionOf(word.split('=')[0]) !== undefined;
  // The key set id is the first word that is neither an option nor an option's value.
  for (let i = 1; i < args.length; i += 1) {
    const word = args[i];
    if (word === '--') return args;
    if (word.startsWith('-')) {
      const option = optionOf(word);
      if (option && (option.required || option.optional)) i += 1;
      continue;
    }
    const kid = args[i + 1];
    if (kid === undefined || !kid.startsWith('-') || isOption(kid)) return args;
    return [...args.slice(0, i + 1), `--kid=${kid}`, ...args.slice(i + 2)];
  }
  return args;
}

/** A KeyturnError's message is written for people; any other error gets its message too, never its stack. */
function oneLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\s*\n\s*/g, ' ').trim() || (error instanceof Error ? error.name : 'unknown error');
}
