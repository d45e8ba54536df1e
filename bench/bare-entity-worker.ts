import { NativeConnection, Worker } from '@temporalio/worker';
import { Pool } from 'pg';
import type { BareEntityActivities } from './bare-entity-workflows';

/**
 * The bare entity worker, in a process of its own as `keyturn worker` is: the workflow bundle the
 * bench built beforehand (BARE_WORKFLOW_BUNDLE), the SDK's default worker settings, and a pool of
 * ten PostgreSQL connections (pg's default, as keyturn's). Each entity's one activity inserts its row
 * into `bare_entities` of BARE_DATABASE_URL. Run compiled (`tsc -p bench/tsconfig.json`), with plain node.
 */
async function main(): Promise<void> {
  const env = (name: string) => {
    const value = process.env[name];
    if (!value) throw new Error(`the bare entity worker needs ${name}`);
    return value;
  };
  const pool = new Pool({ connectionString: env('BARE_DATABASE_URL') });
  const activities: BareEntityActivities = {
    async registerEntity(entityId) {
      await pool.query('INSERT INTO bare_entities (entity_id) VALUES ($1) ON CONFLICT DO NOTHING', [entityId]);
    },
  };
  const connection = await NativeConnection.connect({ address: env('TEMPORAL_ADDRESS') });
  const worker = await Worker.create({
    connection,
    taskQueue: env('BARE_TASK_QUEUE'),
    workflowBundle: { codePath: env('BARE_WORKFLOW_BUNDLE') },
    activities,
  });
  const stop = () => worker.shutdown();
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  console.log('bare entity worker running');
  await worker.run();
  await connection.close();
  await pool.end();
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
