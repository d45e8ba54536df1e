import type { ClientBase, Pool, PoolClient } from 'pg';

/** What waits for the commit of the transaction a client is in. */
const onCommit = new WeakMap<ClientBase, (() => void)[]>();

/**
 * Runs `work` in one transaction on a client of `pool`: committed when it resolves, rolled back when
 * it throws. `begin` may ask for an isolation level (`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`).
 */
export async function inTransaction<T>(pool: Pool, work: (tx: PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
  const tx = await pool.connect();
  onCommit.set(tx, []);
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
