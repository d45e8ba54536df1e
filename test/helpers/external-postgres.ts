import { chmod, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ManagedProcess } from '../../src/runtime/managed-process';
import { freePort } from './ports';
import type { ProcessGroup } from './processes';

const SERVER_ENTRY = path.join(__dirname, 'postgres-server.ts');

/**
 * A PostgreSQL server of the test's own, outside the test process and outside keyturn's, on a free
 * port: `stop()` takes it down (an outage) and `start()` brings it back on the same port with the same data.
 */
export class ExternalPostgres {
  #server: ManagedProcess | undefined;
  #url: string | undefined;

  private constructor(
    private readonly processes: ProcessGroup,
    private readonly folder: string,
    readonly port: number,
  ) {}

  static async start(processes: ProcessGroup): Promise<ExternalPostgres> {
    const folder = await mkdtemp(path.join(os.tmpdir(), 'keyturn-external-pg-'));
    // mkdtemp makes it 0700; run as root, PostgreSQL runs as the `postgres` user and must get through.
    await chmod(folder, 0o755);
    const postgres = new ExternalPostgres(processes, folder, await freePort());
    await postgres.start();
    return postgres;
  }

  /** Connection string for its `postgres` database. */
  get url(): string {
    if (this.#url === undefined) throw new Error('the external PostgreSQL has not started yet');
    return this.#url;
  }

  async start(): Promise<void> {
    const args = ['--import', 'tsx', SERVER_ENTRY, path.join(this.folder, 'data'), String(this.port)];
    this.#server = this.processes.start('PostgreSQL', process.execPath, args);
    this.#url = (await this.#server.waitForOutput(/^ready (\S+)$/m, 60_000))[1];
  }

  /** A clean shutdown: every connection to it is cut, its data stays. */
  async stop(): Promise<void> {
    await this.#server?.stop();
  }

  /** Stops it and deletes its data. */
  async remove(): Promise<void> {
    await this.stop();
    await rm(this.folder, { recursive: true, force: true });
  }
}
