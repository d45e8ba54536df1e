import type { ClientBase, Pool, PoolClient } from 'pg';

/** What waits for the commit of the transaction a client is in. */
const onCommit = new WeakMap<ClientBase, (() => void)[]>();
/** What the transaction a client is in has learned and may use again until it ends (see `transactionMemo`). */
const memos = new WeakMap<ClientBase, Map<string, unknown>>();

/**
 * Runs `work` in one transaction on a client of `pool`: committed when it resolves, rolled back when
 * it throws. `begin` may ask for an isolation level (`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`).
 */
export async function inTransaction<T>(pool: Pool, work: (tx: PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
  const tx = await pool.connect();
  onCommit.set(tx, []);
  memos.set(tx, new Map());
  try {
    await tx.query(begin);
    const result = await work(tx);
    await tx.query('COMMIT');
    for (const committed of onCommit.get(tx) ?? []) committed();
    return result;
  } catch (error) {
    await tx.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    onCommit.delete(tx);
    memos.delete(tx);
    tx.release();
  }
}

/**
 * Calls `committed` once the transaction `tx` is in (one inTransaction began) has committed; never if
 * it rolls back. For what must not be told before the change is durable, such as a log line about it.
 */
export function afterCommit(tx: ClientBase, committed: () => void): void {
  onCommit.get(tx)?.push(committed);
}

/**
 * A value kept for the rest of the transaction `tx` is in (one inTransaction began), such as a row it
 * has locked and changed itself, so that it need not be read again; forgotten when the transaction
 * ends. Outside such a transaction nothing is kept.
 */
export function transactionMemo<T>(tx: ClientBase, key: string): { get(): T | undefined; set(value: T): void } {
  const memo = memos.get(tx);
  return { get: () => memo?.get(key) as T | undefined, set: (value) => void memo?.set(key, value) };
}
