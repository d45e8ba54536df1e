import { runCli } from '../../src/cli/main';

export interface CliRun {
  code: number;
  /** What the command printed with console.log, a line each. */
  out: string;
  err: string;
}

/** `keyturn <args>` in-process: its exit code, stdout and stderr. */
export async function runKeyturn(...args: string[]): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  const log = jest
    .spyOn(console, 'log')
    .mockImplementation((...parts: unknown[]) => void out.push(`${parts.join(' ')}\n`));
  const write = jest
    .spyOn(process.stderr, 'write')
    .mockImplementation((chunk: string | Uint8Array) => err.push(String(chunk)) > 0);
  try {
    const code = await runCli(args);
    return { code, out: out.join(''), err: err.join('') };
  } finally {
    log.mockRestore();
    write.mockRestore();
  }
}
