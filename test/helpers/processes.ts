import { ManagedProcess } from '../../src/runtime/managed-process';

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/**
 * The processes a test file starts (the stack's ManagedProcess, without a log file), so that one
 * `stopAll()` in afterAll ends each of them even when a test failed halfway. They are stopped all at
 * once: keep servers in a group of their own and stop it after the group of their clients.
 */
export class ProcessGroup {
  readonly #processes: ManagedProcess[] = [];

  start(name: string, command: string, args: string[], options: StartOptions = {}): ManagedProcess {
    // In the runner's process group: a Ctrl-C that interrupts the tests ends their processes too.
    const started = new ManagedProcess({ name, command, args, ...options, ownProcessGroup: false });
    started.start();
    this.#processes.push(started);
    return started;
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.#processes.map((running) => running.stop()));
  }
}
