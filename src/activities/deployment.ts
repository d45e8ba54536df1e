import type { PolicyCeilings } from '../domain/policy';

/**
 * What the workflow learns from the worker's configuration: the limits no key set's policy may exceed.
 * Workflows now read them with their keys (registerKeySet); this stays for runs that began a load before.
 */
export function createDeploymentActivities(ceilings: PolicyCeilings) {
  return {
    async deploymentCeilings(): Promise<PolicyCeilings> {
      return ceilings;
    },
  };
}
