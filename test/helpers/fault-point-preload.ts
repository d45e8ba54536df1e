/**
 * Loaded into a keyturn worker process with NODE_OPTIONS (see faultPointEnv): wraps pg's
 * Client.prototype.query so that the worker stops at the fault points the test named, and appends a
 * line to the report file when it gets there. Stopping means the query never answers: the activity
 * hangs as if the process had frozen, holding whatever it held, until the test SIGKILLs it.
 *
 * A point is recognised by the INSERT INTO key_operations that every key change makes (its
 * key_set_id and kind columns, wherever they stand in the statement), or by the INSERT INTO key_sets
 * of a key set's registration (kind `register`: the workflow's first read of its keys), and, for
 * `after-commit`, by the COMMIT that follows on the same connection.
 */
import { appendFileSync } from 'node:fs';
import { isMainThread } from 'node:worker_threads';
import { Client } from 'pg';
import { FAULT_POINTS_VARIABLE, FAULT_REPORT_VARIABLE, type FaultPoint, type FaultReport } from './fault-points';

type Query = (this: Client, ...args: unknown[]) => unknown;

const KEY_OPERATION_INSERT = /^\s*INSERT\s+INTO\s+key_operations\s*\(([^)]*)\)\s*VALUES\s*\(([^)]*)\)/i;
const KEY_SET_INSERT = /^\s*INSERT\s+INTO\s+key_sets\s*\(([^)]*)\)\s*VALUES\s*\(([^)]*)\)/i;

// Worker threads (the SDK's workflow threads, tsx's loader) get NODE_OPTIONS too; only the main thread runs activities.
if (isMainThread && process.env[FAULT_POINTS_VARIABLE]) {
  const points = JSON.parse(process.env[FAULT_POINTS_VARIABLE]) as FaultPoint[];
  const reportFile = process.env[FAULT_REPORT_VARIABLE]!;
  const report = (line: FaultReport) => {
    appendFileSync(reportFile, `${JSON.stringify(line)}\n`);
    process.stderr.write(`keyturn test fault point: ${JSON.stringify(line)}\n`);
  };
  /** Key changes seen so far, by `<key set> <kind>`. */
  const seen = new Map<string, number>();
  /** Connections whose open transaction is to stop once its COMMIT has answered. */
  const stopAfterCommit = new WeakMap<Client, FaultPoint>();
  const never = new Promise<never>(() => undefined);

  /** The point a key_operations INSERT reaches, if any; counts the key change either way. */
  const pointOf = (text: string, values: unknown[]): FaultPoint | undefined => {
    const registration = KEY_SET_INSERT.exec(text);
    const insert = registration ?? KEY_OPERATION_INSERT.exec(text);
    if (!insert) return undefined;
    const columns = insert[1].split(',').map((c) => c.trim());
    const expressions = insert[2].split(',').map((e) => e.trim());
    const column = (name: string): unknown => {
      const expression = expressions[columns.indexOf(name)] ?? '';
      const parameter = /^\$(\d+)$/.exec(expression);
      if (parameter) return values[Number(parameter[1]) - 1];
      return /^'(.*)'$/.exec(expression)?.[1];
    };
    const keySetId = column(registration ? 'id' : 'key_set_id');
    const kind = registration ? 'register' : column('kind');
    if (typeof keySetId !== 'string' || typeof kind !== 'string') {
      report({ problem: `cannot read key_set_id and kind from this key_operations INSERT: ${text}`, pid: process.pid });
      return undefined;
    }
    const occurrence = (seen.get(`${keySetId} ${kind}`) ?? 0) + 1;
    seen.set(`${keySetId} ${kind}`, occurrence);
    return points.find((p) => p.keySetId === keySetId && p.kind === kind && p.occurrence === occurrence);
  };

  const query = Client.prototype.query as unknown as Query;
  (Client.prototype as unknown as { query: Query }).query = function (this: Client, ...args: unknown[]): unknown {
    // keyturn's transactions use the promise form; callbacks and submittables pass through untouched.
    const [first, second] = args;
    if (
      typeof args[args.length - 1] === 'function' ||
      (typeof first !== 'string' && typeof (first as { text?: unknown })?.text !== 'string')
    ) {
      return query.apply(this, args);
    }
    const text = typeof first === 'string' ? first : (first as { text: string }).text;
    const values = (Array.isArray(second) ? second : (first as { values?: unknown[] }).values) ?? [];

    const pending = stopAfterCommit.get(this);
    if (pending && /^\s*(COMMIT|ROLLBACK)\b/i.test(text)) {
      stopAfterCommit.delete(this);
      if (/^\s*COMMIT\b/i.test(text)) {
        return (query.apply(this, args) as Promise<unknown>).then(() => {
          report({ reached: pending, pid: process.pid });
          return never;
        });
      }
    }
    const point = pointOf(text, values);
    if (point?.at === 'before-commit') {
      report({ reached: point, pid: process.pid });
      return never;
    }
    if (point?.at === 'after-commit') stopAfterCommit.set(this, point);
    return query.apply(this, args);
  };
}
