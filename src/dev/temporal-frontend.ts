import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';

// A Temporal frontend keyturn can use: the dev server's, or a node of the stack's cluster.

/** The custom search attributes keyturn's workflows keep current, so the Web UI can filter on them. */
export const SEARCH_ATTRIBUTES = { KeySetId: 'Keyword', ActiveKid: 'Keyword', NextTransitionAt: 'Datetime' } as const;

/** Which of keyturn's search attributes `namespace` lacks: none once a workflow may set them. */
export async function missingSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
  return Object.keys(SEARCH_ATTRIBUTES).filter((name) => !customAttributes?.[name]);
}

/**
 * Until the frontend at `address` answers; with a namespace, until it also knows the namespace and
 * keyturn's search attributes (a node learns of a namespace created through another within seconds).
 */
export async function waitForFrontend(
  address: string,
  timeoutMs: number,
  namespace?: string,
  alive: () => boolean = () => true,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let problem = 'no answer yet';
  while (alive()) {
    try {
      const connection = await Connection.connect({ address, connectTimeout: 1_000 });
      try {
        await connection.workflowService.getSystemInfo({});
        if (namespace === undefined) return;
        await connection.workflowService.describeNamespace({ namespace });
        const missing = await missingSearchAttributes(connection, namespace);
        if (missing.length === 0) return;
        problem = `search attributes not registered yet: ${missing.join(', ')}`;
      } finally {
        await connection.close();
      }
    } catch (error) {
      problem = error instanceof Error ? error.message : String(error);
    }
    if (Date.now() > deadline) break;
    await sleep(250);
  }
  throw new Error(
    `the Temporal frontend at ${address} did not answer${namespace ? ` for namespace ${namespace}` : ''} (${alive() ? `${Math.round(timeoutMs / 1000)} s` : 'it exited'}): ${problem}`,
  );
}
