import { ApplicationFailure } from '@temporalio/activity';
import { KeyturnError, type KeyturnErrorCode } from '../domain/errors';
import type { Logger } from '../logger';
import type { PolicyCeilings } from '../domain/policy';
import type { KeyturnMetrics } from '../observability/metrics';
import type { KeyStore } from '../store/key-store';
import { createAlertActivities, type AlertingDependencies } from './alerts';
import { createDeploymentActivities } from './deployment';
import { createKeyActivities } from './key-activities';
import { createPublicationActivities, createPublicationGate, type DefaultJwksUrls } from './check-publication';
import { createSupervisionActivities, type SupervisionDependencies } from './supervise';

export type { AlertDelivery } from './alerts';
export type { KeyChangeInput } from './key-activities';

/** Errors that no retry can fix: the workflow is told at once instead of after every attempt. */
const NON_RETRYABLE_CODES: readonly KeyturnErrorCode[] = [
  'ERR_POLICY_INVALID',
  'ERR_KEYSET_NOT_FOUND',
  'ERR_KID_UNKNOWN',
  'ERR_KEY_STATE_CONFLICT',
  'ERR_KEK_MISSING',
  'ERR_KEK_INVALID',
  'ERR_KEK_UNKNOWN',
  'ERR_KEY_DECRYPTION_FAILED',
  'ERR_CUSTODY_ALGORITHM_UNSUPPORTED',
  // A PKCS#11 PIN refused: an HSM may lock a PIN tried again and again.
  'ERR_CONFIG_INVALID',
];

export interface ActivityDependencies {
  keyStore: KeyStore;
  /** For the supervisor, which starts key set workflows that stopped. */
  temporalClient: SupervisionDependencies['temporalClient'];
  taskQueue: string;
  /** The JWKS URLs the propagation gate checks for key sets whose policy names no `publishedAt`. */
  defaultJwksUrls?: DefaultJwksUrls;
  logger: Logger;
  /** Alert channels, reminder interval, Web UI link, the supervisor's incident table. */
  alerting: Omit<AlertingDependencies, 'logger' | 'temporalClient' | 'taskQueue' | 'alertsTotal'>;
  /** keyturn_alerts_total and the supervisor's round counters go here. */
  metrics: KeyturnMetrics;
  /** How long past its rotation period an active key may sign before the supervisor alerts. */
  keyAgeToleranceMs: number;
  /** What no key set's policy may exceed, whoever sends it. */
  ceilings: PolicyCeilings;
}

/** Every activity the worker registers, wired to its dependencies. */
export function createActivities(deps: ActivityDependencies) {
  const gate = createPublicationGate(deps.keyStore, deps.defaultJwksUrls);
  const activities = {
    ...createKeyActivities(deps.keyStore, deps.ceilings, gate),
    ...createDeploymentActivities(deps.ceilings),
    ...createSupervisionActivities(deps),
    ...createPublicationActivities(gate),
    ...createAlertActivities({
      ...deps.alerting,
      alertsTotal: deps.metrics.alerts,
      logger: deps.logger,
      temporalClient: deps.temporalClient,
      taskQueue: deps.taskQueue,
    }),
  };
  return withFailureTypes(activities);
}

export type KeyturnActivities = ReturnType<typeof createActivities>;

/**
 * Reports a KeyturnError to Temporal under its code, so that the workflow's retry policy can
 * tell a configuration error (not retried) from an outage (retried).
 */
function withFailureTypes<T extends Record<string, (...args: never[]) => Promise<unknown>>>(activities: T): T {
  return Object.fromEntries(
    Object.entries(activities).map(([name, activity]) => [
      name,
      async (...args: never[]) => {
        try {
          return await activity(...args);
        } catch (error) {
          if (error instanceof KeyturnError) {
            throw ApplicationFailure.create({
              type: error.code,
              message: error.message,
              nonRetryable: NON_RETRYABLE_CODES.includes(error.code),
              details: [{ keySetId: error.keySetId, kid: error.kid, field: error.field }],
            });
          }
          throw error;
        }
      },
    ]),
  ) as T;
}
