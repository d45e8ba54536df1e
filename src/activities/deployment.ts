import type { PolicyCeilings } from '../domain/policy';

/** What the workflow learns from the worker's configuration: the limits no key set's policy may exceed. */
export function createDeploymentActivities(ceilings: PolicyCeilings) {
  return {
    async deploymentCeilings(): Promise<PolicyCeilings> {
      return ceilings;
    },
  };
}
