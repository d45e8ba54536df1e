import { TestWorkflowEnvironment } from '@temporalio/testing';
import { resolveTestServerExecutable } from '../../src/dev/temporal-executables';

/** A time-skipping Temporal environment on the test server `npm pretest` provisioned. */
export async function createTimeSkippingEnv(): Promise<TestWorkflowEnvironment> {
  const { executable } = await resolveTestServerExecutable({ allowBuild: false });
  return TestWorkflowEnvironment.createTimeSkipping({ server: { executable } });
}
