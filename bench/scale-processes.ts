import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Connection } from '@temporalio/client';
import type { TemporalServer } from '../test/helpers/temporal-server';
import type { ManagedProcess } from '../src/runtime/managed-process';
import { ProcessGroup, type StartOptions } from '../test/helpers/processes';
import { sleep } from './stats';

export const REPO = path.join(__dirname, '..');

/** A ProcessGroup that also keeps what it started, so that the bench can read each one's /proc by its pid. */
export class MeasuredProcesses extends ProcessGroup {
  readonly started: ManagedProcess[] = [];

  override start(name: string, command: string, args: string[], options: StartOptions = {}): ManagedProcess {
    const started = super.start(name, command, args, options);
    this.started.push(started);
    return started;
  }

  /** The pid of the process started under `name`. */
  pidOf(name: string): number {
    const found = this.started.find((p) => p.name === name && p.running);
    if (found?.pid === undefined)
      throw new Error(`no running process named ${name} (started: ${this.started.map((p) => p.name).join(', ')})`);
    return found.pid;
  }
}

/** Runs a started command to its end: how long it took from `startedAt` (performance.now()), its exit code and output. */
export async function untilExit(
  command: ManagedProcess,
  startedAt: number,
  timeoutMs: number,
): Promise<{ seconds: number; code: number | null; output: string }> {
  const ended = await Promise.race([command.exited().then(() => true), sleep(timeoutMs).then(() => false)]);
  const seconds = (performance.now() - startedAt) / 1000;
  if (!ended) await command.kill();
  return { seconds, code: ended ? command.exitCode : null, output: command.output() };
}

/**
 * Polls `count` every half second until it reaches `expected`, printing progress through `step`;
 * the performance.now() it first did. Fails after `timeoutMs`, saying how far it got.
 */
export async function untilCount(
  count: () => Promise<number>,
  expected: number,
  what: string,
  step: (line: string) => void,
  timeoutMs: number,
): Promise<number> {
  const began = performance.now();
  let lastReport = began;
  for (;;) {
    const now = await count();
    if (now >= expected) return performance.now();
    if (performance.now() - began > timeoutMs)
      throw new Error(`${what}: ${now} of ${expected} after ${Math.round(timeoutMs / 1000)} s, giving up`);
    if (performance.now() - lastReport > 10_000) {
      lastReport = performance.now();
      step(`${what}: ${now} of ${expected} (${(now / ((lastReport - began) / 1000)).toFixed(1)}/s)`);
    }
    await sleep(500);
  }
}

/** What one side of the scale bench holds while it measures (its connection and Temporal server once started). */
export interface BenchRun {
  connection?: Connection;
  processes: MeasuredProcesses;
  temporal?: TemporalServer;
  db: { drop(): Promise<void> };
  folder: string;
}

/** Releases a side's run in the reverse order it was acquired: the connection, its processes, its server, its database, its folder. */
export async function releaseBenchRun({ connection, processes, temporal, db, folder }: BenchRun): Promise<void> {
  await connection?.close();
  await processes.stopAll();
  await temporal?.remove();
  await db.drop();
  await rm(folder, { recursive: true, force: true });
}
