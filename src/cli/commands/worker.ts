import { loadConfig } from '../../config';
import { runWorker } from '../../worker';

export async function workerAction(options: { dataDir?: string }): Promise<void> {
  await runWorker(loadConfig(process.env, { dataDir: options.dataDir }));
}
