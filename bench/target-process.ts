import { fork, type ChildProcess } from 'node:child_process';
import { cpuPinning } from './cpu-pinning';

/** A server under load in a process of its own: its URL, the CPU time it has used, and how to stop it. */
export interface Target {
  url: string;
  /** CPU time the server process has used so far, in µs. */
  cpuMicros(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Starts a compiled target script (plain node, no tsx) pinned to a core of its own where possible,
 * sends it `message`, and waits for its URL. The script answers `'cpu'` with its CPU time and stops on
 * `'stop'` (bench/jwks-target.ts and bench/signer-target.ts).
 */
export async function startTarget(script: string, message: object, what: string): Promise<Target> {
  const child: ChildProcess = fork(script, { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  cpuPinning?.pinServer(child.pid!);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (reply: { url: string }) => resolve(reply.url));
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code} before listening`)));
    child.send(message);
  });
  return {
    url,
    cpuMicros: () =>
      new Promise<number>((resolve) => {
        child.once('message', (reply: { cpuMicros: number }) => resolve(reply.cpuMicros));
        child.send('cpu');
      }),
    async stop() {
      child.send('stop');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** What a target script does with its server: tells the parent its URL, its CPU time on 'cpu', and closes on 'stop'. */
export function serveTarget<M>(start: (message: M) => Promise<{ url: string; close(): Promise<void> }>): void {
  process.once('message', (message: M) => {
    start(message).then(
      (running) => {
        process.send!({ url: running.url });
        process.on('message', (request: 'cpu' | 'stop') => {
          if (request === 'cpu') {
            const { user, system } = process.cpuUsage();
            process.send!({ cpuMicros: user + system });
          } else {
            void running.close().finally(() => process.disconnect());
          }
        });
      },
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  });
}
