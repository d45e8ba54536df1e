import { execFileSync } from 'node:child_process';
import os from 'node:os';

/**
 * Pins processes to CPUs with `taskset`, so that a measurement and what loads it do not compete for
 * the same cores (the figure would measure the scheduler), and a measured loop does not hop between
 * cores mid-slice. Null with fewer than two cores or without `taskset`.
 */
export const cpuPinning = (() => {
  const cores = os.availableParallelism();
  if (cores < 2) return null;
  const all = `0-${cores - 1}`;
  const pin = (pid: number, cpus: string) =>
    execFileSync('taskset', ['--all-tasks', '--cpu-list', '--pid', cpus, String(pid)], { stdio: 'ignore' });
  try {
    pin(process.pid, all);
  } catch {
    return null;
  }
  return {
    /** This process (the load generator, or the measured loop) on CPU 0. */
    pinSelf: () => pin(process.pid, '0'),
    /** A server under load on CPU 1. */
    pinServer: (pid: number) => pin(pid, '1'),
    /** This process back on every core. */
    release: () => pin(process.pid, all),
  };
})();
