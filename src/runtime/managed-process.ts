import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

/** How a server process is started; the same way every time it is started again. */
export interface ProcessSpec {
  /** What it is, for messages: `Temporal node 1`, `keyturn worker 2`, `the Temporal dev server`. */
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Its output is appended here; without one, only the end of it is kept (a test's process). */
  logFile?: string;
  /**
   * Each whole line it prints, as it prints it (the dev server's go to keyturn's log); `stopping` once
   * it is being stopped or killed through this object, when complaints about closed connections are expected.
   */
  onOutputLine?: (line: string, stopping: boolean) => void;
  /**
   * In a process group of its own (the default), a Ctrl-C in the terminal reaches its parent alone,
   * which stops it in order (the stack); false lets the Ctrl-C reach it too (a test's process, which
   * no one stops in order when the test runner is interrupted).
   */
  ownProcessGroup?: boolean;
}

/** How long a process may take to exit after SIGTERM before it is killed. */
const STOP_TIMEOUT_MS = 15_000;
/** How much of its output is kept in memory: for error messages, and for tests that read what it printed. */
const KEPT_OUTPUT_CHARS = 64_000;
/** How many of its last lines an error message carries: a few beside its log file, more when there is none. */
const TAIL_LINES_WITH_LOG = 5;
const TAIL_LINES_WITHOUT_LOG = 40;

/**
 * Last resort if keyturn exits without stopping its processes (a second Ctrl-C): each is asked to
 * stop, and does so by itself (PostgreSQL's wrapper stops the server it holds).
 */
const running = new Set<ChildProcess>();
process.on('exit', () => running.forEach((child) => child.kill('SIGTERM')));

/**
 * One server or tool (of the stack, of `keyturn dev`, of a test) as a child process that can be
 * stopped, killed and started again with the same command line (a node restarted, an outage ended).
 * Its output goes to its log file; the end of it is kept for error messages. By default it runs in a
 * process group of its own, so a Ctrl-C in the terminal reaches keyturn alone, which stops its
 * processes in order.
 */
export class ManagedProcess {
  #child: ChildProcess | undefined;
  #exited: Promise<void> = Promise.resolve();
  #output = '';
  #log: WriteStream | undefined;
  readonly #waiters = new Set<() => void>();
  readonly #exitListeners = new Set<(description: string) => void>();
  #stopping = false;
  #spawnFailed = false;

  constructor(readonly spec: ProcessSpec) {}

  get name(): string {
    return this.spec.name;
  }

  get pid(): number | undefined {
    return this.running ? this.#child?.pid : undefined;
  }

  get running(): boolean {
    return (
      this.#child !== undefined &&
      this.#child.exitCode === null &&
      this.#child.signalCode === null &&
      !this.#spawnFailed
    );
  }

  /** Starts it (again); a process already running is left as it is. */
  start(): void {
    if (this.running) return;
    const { command, args, env, cwd, logFile, ownProcessGroup = true } = this.spec;
    if (logFile !== undefined) this.#log ??= createWriteStream(logFile, { flags: 'a', mode: 0o600 });
    this.#log?.write(`--- ${new Date().toISOString()} started: ${command} ${args.join(' ')}\n`);
    this.#output = '';
    this.#stopping = false;
    this.#spawnFailed = false;
    const child = spawn(command, args, {
      env: env ?? process.env,
      cwd,
      detached: ownProcessGroup,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#child = child;
    const reader = () => {
      let partialLine = ''; // for onOutputLine: the start of a line this stream has not ended yet
      return (chunk: Buffer) => {
        this.#log?.write(chunk);
        const text = chunk.toString('utf8');
        this.#output = (this.#output + text).slice(-KEPT_OUTPUT_CHARS);
        if (this.spec.onOutputLine) {
          const lines = (partialLine + text).split('\n');
          partialLine = lines.pop()!.slice(-KEPT_OUTPUT_CHARS);
          for (const line of lines) if (line.trim() !== '') this.spec.onOutputLine(line.trim(), this.#stopping);
        }
        this.#wake();
      };
    };
    child.stdout?.on('data', reader());
    child.stderr?.on('data', reader());
    this.#exited = new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.once('error', (error) => {
        this.#spawnFailed = true;
        this.#output += `\n${error.message}`;
        resolve();
      });
    }).then(() => {
      const description = this.describeExit();
      this.#log?.write(`--- ${new Date().toISOString()} exited (${description})\n`);
      this.#wake();
      if (!this.#stopping) for (const listener of this.#exitListeners) listener(description);
    });
    running.add(child);
    void this.#exited.then(() => running.delete(child));
  }

  /** Called when it exits without being stopped or killed through this object (a crash). */
  onUnexpectedExit(listener: (description: string) => void): void {
    this.#exitListeners.add(listener);
  }

  /** The end of what it printed since it was last started. */
  output(): string {
    return this.#output;
  }

  /** Resolves with the first match of `pattern` in its output since it was started; fails if it exits first, or after `timeoutMs`. */
  async waitForOutput(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(this.#output);
      if (match) return match;
      if (!this.running)
        throw new Error(`${this.name} exited (${this.describeExit()}) before it was ready: ${this.outputTail()}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`${this.name} was not ready within ${Math.round(timeoutMs / 1000)} s: ${this.outputTail()}`);
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#waiters.delete(wake);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.#waiters.add(wake);
      });
    }
  }

  /** Resolves once it has exited (at once if it is not running). */
  exited(): Promise<void> {
    return this.#exited;
  }

  /** SIGKILL, as a crash would end it; resolves once it is gone. */
  async kill(): Promise<void> {
    this.#stopping = true;
    if (this.running) this.#child!.kill('SIGKILL');
    await this.#exited;
  }

  /** SIGTERM, then SIGKILL if it has not exited in time; resolves once it is gone. */
  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.running) {
      this.#child!.kill('SIGTERM');
      const inTime = await Promise.race([this.#exited.then(() => true), sleep(STOP_TIMEOUT_MS, false, { ref: false })]);
      if (!inTime) await this.kill();
    }
    await this.#exited;
  }

  /** Stops it and closes its log file; it is not started again after this. */
  async close(): Promise<void> {
    await this.stop();
    const log = this.#log;
    this.#log = undefined;
    if (log) await new Promise<void>((resolve) => log.end(resolve));
  }

  /** Whether its last start failed before it ran (a missing or unrunnable executable). */
  get couldNotStart(): boolean {
    return this.#spawnFailed;
  }

  /** Its exit code once it has exited; null while it runs, or when a signal ended it. */
  get exitCode(): number | null {
    return this.#child?.exitCode ?? null;
  }

  /** How it ended (`exit code 1`, `SIGKILL`, `could not start`), or `running`, or `not started`. */
  describeExit(): string {
    const child = this.#child;
    if (!child) return 'not started';
    if (this.#spawnFailed) return 'could not start';
    return child.signalCode ?? (child.exitCode === null ? 'running' : `exit code ${child.exitCode}`);
  }

  /** The last lines it printed, for an error message, with where the rest is. */
  outputTail(lines = this.spec.logFile === undefined ? TAIL_LINES_WITHOUT_LOG : TAIL_LINES_WITH_LOG): string {
    const tail = this.#output.trim().split('\n').slice(-lines).join(' | ');
    return `${tail || 'no output'}${this.spec.logFile === undefined ? '' : ` (log: ${this.spec.logFile})`}`;
  }

  #wake(): void {
    for (const waiter of this.#waiters) waiter();
  }
}

/** Runs a one-shot process (a setup script, a migration) to its end; fails with the end of its output unless it exits with 0. */
export async function runToEnd(spec: ProcessSpec, timeoutMs: number): Promise<string> {
  const process = new ManagedProcess(spec);
  process.start();
  const inTime = await Promise.race([process.exited().then(() => true), sleep(timeoutMs, false, { ref: false })]);
  if (!inTime) {
    await process.close();
    throw new Error(`${spec.name} did not finish within ${Math.round(timeoutMs / 1000)} s: ${process.outputTail()}`);
  }
  await process.close();
  if (process.describeExit() !== 'exit code 0')
    throw new Error(`${spec.name} failed (${process.describeExit()}): ${process.outputTail()}`);
  return process.output();
}
