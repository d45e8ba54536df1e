import { inspect } from 'node:util';
import { Command, CommanderError } from 'commander';
import { applyCommand } from './commands/apply';
import { auditCommand } from './commands/audit';
import { devCommand } from './commands/dev';
import { kekCommand } from './commands/kek';
import { migrateCommand } from './commands/migrate';
import { pauseCommand } from './commands/pause';
import { resumeCommand } from './commands/resume';
import { revokeCommand } from './commands/revoke';
import { rotateCommand } from './commands/rotate';
import { statusCommand } from './commands/status';
import { verifyCommand } from './commands/verify';
import { workerCommand } from './commands/worker';
import { serveCommand } from './commands/serve';
import { stackCommand } from './commands/stack';
import { tokenCommand } from './commands/token';

const COMMANDS = [devCommand, stackCommand, workerCommand, serveCommand, migrateCommand, applyCommand, statusCommand, rotateCommand, revokeCommand, pauseCommand, resumeCommand, verifyCommand, auditCommand, kekCommand, tokenCommand];

/** The `keyturn` root command. Commands never exit the process: they return or throw, and runCli decides. */
export function createProgram(): Command {
  const program = new Command('keyturn')
    .description('JWT signing-key rotation on Temporal')
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`keyturn: ${text.replace(/^error: /, '')}`) });
  for (const command of COMMANDS) {
    program.addCommand(command);
    // addCommand does not pass settings on: without this a subcommand's usage error would exit the process.
    inheritSettings(command, program);
  }
  return program;
}

/**
 * Runs the CLI and returns its exit code. The only place an error becomes an exit code: one line
 * `keyturn: <message>` on stderr and 1, with the stack only when KEYTURN_DEBUG is set.
 */
export async function runCli(args: string[]): Promise<number> {
  try {
    await createProgram().parseAsync(args, { from: 'user' });
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

/** A KeyturnError's message is written for people; any other error gets its message too, never its stack. */
function oneLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/\s*\n\s*/g, ' ').trim() || (error instanceof Error ? error.name : 'unknown error');
}

function inheritSettings(command: Command, parent: Command): void {
  command.copyInheritedSettings(parent);
  for (const sub of command.commands) inheritSettings(sub, command);
}
