import { proxyActivities, sleep } from '@temporalio/workflow';

/** What the bare entity worker does for an entity: one row in PostgreSQL, one transaction. */
export interface BareEntityActivities {
  registerEntity(entityId: string): Promise<void>;
}

const { registerEntity } = proxyActivities<BareEntityActivities>({ startToCloseTimeout: '1m' });

/**
 * The reference for keyturn's key set workflow at scale: the least a long-lived entity workflow can
 * be. It runs one activity (its bootstrap), then sleeps until its next transition, a month away.
 */
export async function bareEntityWorkflow(entityId: string): Promise<void> {
  await registerEntity(entityId);
  await sleep('30 days');
}
