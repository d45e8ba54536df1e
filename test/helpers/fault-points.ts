import { readFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * Where a worker stops in a key change's transaction (src/store/key-store.ts `applyChange`: lock the
 * key set, change the keys, INSERT INTO key_operations, COMMIT):
 * - `before-commit`: at the key_operations INSERT, the transaction still open, nothing committed;
 * - `after-commit`: once COMMIT has answered, before the activity's completion reaches Temporal.
 */
export type FaultMoment = 'before-commit' | 'after-commit';

/** A point in one key set's life: the `occurrence`-th key change of `kind` the worker makes for it. */
export interface FaultPoint {
  keySetId: string;
  /** key_operations.kind: 'generate', 'promote', 'retire', 'destroy', 'revoke', 'wind-down', … */
  kind: string;
  /** Counted from the worker's start, from 1. */
  occurrence: number;
  at: FaultMoment;
}

/** What the preload appends to the report file, a JSON line each. */
export type FaultReport = { reached: FaultPoint; pid: number } | { problem: string; pid: number };

/** The preload reads its points (JSON) from this variable… */
export const FAULT_POINTS_VARIABLE = 'KEYTURN_TEST_FAULT_POINTS';
/** …and appends what it reached to the file this one names. */
export const FAULT_REPORT_VARIABLE = 'KEYTURN_TEST_FAULT_REPORT';

/**
 * The environment that makes a worker process stop at `points`: the preload (TypeScript, so tsx's
 * CommonJS hook is required first) wraps pg in the worker; nothing in keyturn's code knows of it.
 */
export function faultPointEnv(points: readonly FaultPoint[], reportFile: string): NodeJS.ProcessEnv {
  const preload = path.join(__dirname, 'fault-point-preload.ts');
  return {
    NODE_OPTIONS: `--require ${require.resolve('tsx/cjs')} --require ${preload}`,
    [FAULT_POINTS_VARIABLE]: JSON.stringify(points),
    [FAULT_REPORT_VARIABLE]: reportFile,
  };
}

/** Waits until the worker has reached every point, then returns; throws on a problem the preload reported. */
export async function waitForFaultPoints(
  reportFile: string,
  points: readonly FaultPoint[],
  timeoutMs: number,
): Promise<void> {
  const key = (p: FaultPoint) => `${p.keySetId} ${p.kind} #${p.occurrence} ${p.at}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const reports = await readReports(reportFile);
    const problem = reports.find((r) => 'problem' in r);
    if (problem && 'problem' in problem) throw new Error(`the fault-point preload cannot work: ${problem.problem}`);
    const reached = new Set(reports.flatMap((r) => ('reached' in r ? [key(r.reached)] : [])));
    const missing = points.filter((p) => !reached.has(key(p)));
    if (missing.length === 0) return;
    if (Date.now() > deadline) {
      throw new Error(
        `within ${timeoutMs / 1000} s the worker did not reach: ${missing.map(key).join('; ')}. ` +
          'Does that key set make such a key change by then (key_operations.kind), and is its worker the one with these points?',
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function readReports(reportFile: string): Promise<FaultReport[]> {
  const text = await readFile(reportFile, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return '';
    throw error;
  });
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as FaultReport);
}
