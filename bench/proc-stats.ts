import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/<pid>/stat's CPU times (100 on Linux almost always, asked once). */
const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** A process's resident set, bytes, from /proc/<pid>/status: what it holds in memory now. */
export function residentBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`/proc/${pid}/status has no VmRSS line: has process ${pid} exited?`);
  return Number(match[1]) * 1024;
}

/** The CPU time a process has used so far, user and system, in seconds, from /proc/<pid>/stat. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // After "pid (comm) ", whose comm may hold spaces: field 3 (state) onwards; utime and stime are fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

/** The CPU time every process of the machine has used so far (all cores, user and system), in seconds, from /proc/stat. */
export function machineCpuSeconds(): number {
  const [, user, nice, system] = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).map(Number);
  return (user + nice + system) / CLOCK_TICKS;
}

/** The CPU time of every running process named `command` (PostgreSQL's server and its backends: `postgres`), in seconds. */
export function commandCpuSeconds(command: string): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) === command) total += cpuSeconds(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return total;
}

/** The CPU time of this process's children that have exited (a CLI command the bench ran), in seconds. */
export function exitedChildrenCpuSeconds(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[13]) + Number(fields[14])) / CLOCK_TICKS;
}

/** Starts counting CPU seconds with each counter; the function returned says how many each counted since. */
export function countCpu<K extends string>(counters: Record<K, () => number>): () => Record<K, number> {
  const names = Object.keys(counters) as K[];
  const before = Object.fromEntries(names.map((name) => [name, counters[name]()])) as Record<K, number>;
  return () => Object.fromEntries(names.map((name) => [name, counters[name]() - before[name]])) as Record<K, number>;
}

/** How much of one core `pid` uses over `seconds`, as a fraction (0.01 is 1 % of a core). */
export async function coreShare(pid: number, seconds: number): Promise<number> {
  const before = cpuSeconds(pid);
  const startedAt = performance.now();
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  return (cpuSeconds(pid) - before) / ((performance.now() - startedAt) / 1000);
}

export function megabytes(bytes: number): string {
  return `${Math.round(bytes / 2 ** 20).toLocaleString('en-US')} MB`;
}

/** `57 kB` below a megabyte, `2.5 MB` above. */
export function size(bytes: number): string {
  return bytes < 2 ** 20 ? `${Math.round(bytes / 1024)} kB` : `${(bytes / 2 ** 20).toFixed(1)} MB`;
}
