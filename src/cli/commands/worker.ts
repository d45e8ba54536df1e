import { Command } from 'commander';
import { loadConfig } from '../../config';
import { runWorker } from '../../worker';
import { DATA_DIR_OPTION } from '../options';

export const workerCommand = new Command('worker')
  .description(
    'run the worker until SIGINT or SIGTERM: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and the other TEMPORAL_* settings ' +
      '(TLS, API key, TEMPORAL_PROFILE), KEYTURN_TASK_QUEUE; ' +
      'DATABASE_URL with KEYTURN_KEK, or the embedded database of the data folder',
  )
  .option(...DATA_DIR_OPTION)
  .action(async (options: { dataDir?: string }) => {
    await runWorker(loadConfig(process.env, { dataDir: options.dataDir }));
  });
