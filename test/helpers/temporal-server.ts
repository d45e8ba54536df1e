import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SEARCH_ATTRIBUTES, waitForFrontend } from '../../src/dev/temporal-frontend';
import { resolveTemporalCli } from '../../src/dev/temporal-executables';
import type { ManagedProcess } from '../../src/runtime/managed-process';

import { freePort } from './ports';
import type { ProcessGroup } from './processes';

/**
 * The Temporal dev server (`temporal server start-dev`, the CLI `npm run temporal:install` cached) as a
 * process of the test's own, its state in a SQLite file: `kill()` SIGKILLs it, `start()` brings it
 * back on the same port with every workflow, timer and pending activity it had.
 */
export class TemporalServer {
  #server: ManagedProcess | undefined;

  private constructor(
    private readonly processes: ProcessGroup,
    private readonly executable: string,
    private readonly folder: string,
    readonly port: number,
  ) {}

  static async start(processes: ProcessGroup): Promise<TemporalServer> {
    const { executable } = await resolveTemporalCli({ allowBuild: false });
    if (executable.type !== 'existing-path') {
      throw new Error(
        'the Temporal CLI is not cached as a file: run `npm run temporal:install` (or set TEMPORAL_CLI_PATH)',
      );
    }
    const folder = await mkdtemp(path.join(os.tmpdir(), 'keyturn-temporal-'));
    await chmod(folder, 0o755);
    const server = new TemporalServer(processes, executable.path, folder, await freePort());
    await server.start();
    return server;
  }

  /** `host:port` of its frontend, for TEMPORAL_ADDRESS. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const searchAttributes = Object.entries(SEARCH_ATTRIBUTES).flatMap(([name, type]) => [
      '--search-attribute',
      `${name}=${type}`,
    ]);
    // Without a sync per write, a dozen key sets rotating every few seconds no longer queue behind the
    // disk. A SIGKILL loses nothing that way: written pages are in the operating system's cache.
    const sqlite = ['--sqlite-pragma', 'journal_mode=wal', '--sqlite-pragma', 'synchronous=off'];
    const args = [
      'server',
      'start-dev',
      '--headless',
      '--ip',
      '127.0.0.1',
      '--port',
      String(this.port),
      '--db-filename',
      path.join(this.folder, 'temporal.db'),
      ...sqlite,
      '--log-level',
      'error',
      ...searchAttributes,
    ];
    this.#server = this.processes.start('the Temporal dev server', this.executable, args);
    await this.#untilReady(60_000);
  }

  /** SIGKILL: no shutdown, as in a crash. */
  async kill(): Promise<void> {
    await this.#server?.kill();
  }

  /** Stops it and deletes its database. */
  async remove(): Promise<void> {
    await this.#server?.stop();
    await rm(this.folder, { recursive: true, force: true });
  }

  /** Until the frontend answers and keyturn's search attributes are registered (a workflow sets them from its first task). */
  async #untilReady(timeoutMs: number): Promise<void> {
    const server = this.#server!;
    try {
      await waitForFrontend(this.address, timeoutMs, 'default', () => server.running);
    } catch (error) {
      throw new Error(
        `the Temporal dev server is not ready (${server.describeExit()}): ${(error as Error).message}; its output: ${server.outputTail()}`,
        { cause: error },
      );
    }
  }
}
