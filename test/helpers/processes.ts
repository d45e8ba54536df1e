import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';

/** How much of a process's output is kept for error messages. */
const KEPT_OUTPUT_CHARS = 64_000;
/** How long a process may take to exit after SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 15_000;

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/** A child process a test started: its output, a wait for a line of it, and the ways to end it. */
export class SupervisedProcess {
  /** Settles once the process has ended, or could not be started at all. */
  readonly exited: Promise<void>;
  #ended = false;
  #output = '';
  readonly #listeners = new Set<() => void>();

  constructor(
    /** What the process is, for messages: `keyturn worker`, `PostgreSQL`. */
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    this.exited = new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      // A spawn that failed (no such file) may never emit 'exit'.
      child.once('error', (error) => {
        this.#output += `\n${error.message}`;
        resolve();
      });
    }).then(() => {
      this.#ended = true;
    });
    const take = (chunk: Buffer) => {
      this.#output = (this.#output + chunk.toString('utf8')).slice(-KEPT_OUTPUT_CHARS);
      for (const listener of this.#listeners) listener();
    };
    child.stdout?.on('data', take);
    child.stderr?.on('data', take);
    // The exit must wake waiters too: a process that dies never prints what they wait for.
    void this.exited.then(() => this.#listeners.forEach((listener) => listener()));
  }

  get running(): boolean {
    return !this.#ended;
  }

  /** The end of what it printed on stdout and stderr. */
  output(): string {
    return this.#output;
  }

  /** Resolves with the first match of `pattern` in its output; fails if it exits first or after `timeoutMs`. */
  async waitForOutput(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(this.#output);
      if (match) return match;
      if (!this.running)
        throw new Error(
          `${this.name} exited (${this.describeExit()}) before printing ${pattern}; its output ended with:\n${this.#tail()}`,
        );
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `${this.name} did not print ${pattern} within ${Math.round(timeoutMs / 1000)} s; its output ended with:\n${this.#tail()}`,
        );
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#listeners.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.#listeners.add(wake);
      });
    }
  }

  /** SIGKILL, as a crash or the OOM killer would; resolves once it is gone. */
  async kill(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM, then SIGKILL if it has not exited in time; resolves once it is gone. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const inTime = await Promise.race([this.exited.then(() => true), sleep(STOP_TIMEOUT_MS, false, { ref: false })]);
    if (!inTime) await this.kill();
  }

  describeExit(): string {
    return this.child.signalCode ?? `exit code ${this.child.exitCode}`;
  }

  #tail(): string {
    return this.#output.slice(-4_000);
  }
}

/**
 * The processes a test file starts, so that one `stopAll()` in afterAll ends each of them even when a
 * test failed halfway. They are stopped all at once: keep servers in a group of their own and stop it
 * after the group of their clients.
 */
export class ProcessGroup {
  readonly #processes: SupervisedProcess[] = [];

  start(name: string, command: string, args: string[], options: StartOptions = {}): SupervisedProcess {
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      cwd: options.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const started = new SupervisedProcess(name, child);
    this.#processes.push(started);
    return started;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.#processes.map((running) => running.stop()));
  }
}
