import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { bundleWorkflowCode } from '@temporalio/worker';

/**
 * Prebuilds the workflow bundle the worker loads at start (src/worker.ts WORKFLOW_BUNDLE_PATH), so a
 * production worker starts in a moment instead of bundling with webpack first. Runs compiled, as
 * dist/scripts/build-workflow-bundle.js, on the compiled workflows in dist/src/workflows.
 */
async function build(): Promise<void> {
  const workflowsPath = require.resolve(path.join(__dirname, '..', 'src', 'workflows'));
  const outFile = path.join(__dirname, '..', 'workflow-bundle.js');
  const { code } = await bundleWorkflowCode({ workflowsPath, logger: warningsOnly });
  await mkdir(path.dirname(outFile), { recursive: true });
  await writeFile(outFile, code);
  console.log(`workflow bundle: ${path.relative(process.cwd(), outFile)} (${Math.round(code.length / 1024)} KiB)`);
}

// webpack's module listing comes at INFO; a build shows only what needs attention.
const quiet = () => undefined;
const warningsOnly = {
  log: quiet,
  trace: quiet,
  debug: quiet,
  info: quiet,
  warn: (message: string, meta?: object) => console.warn(message, meta ?? ''),
  error: (message: string, meta?: object) => console.error(message, meta ?? ''),
};

build().catch((error: unknown) => {
  console.error(`build-workflow-bundle: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
