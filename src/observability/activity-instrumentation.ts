import type { Context } from '@temporalio/activity';
import type { ActivityInterceptorsFactory } from '@temporalio/worker';
import type { Logger } from '../logger';
import { KEY_CHANGE_STEPS, ROTATION_TRIGGERS, type KeyturnMetrics, type RotationTrigger } from './metrics';

/**
 * Times every activity attempt into `keyturn_activity_duration_seconds`, counts failed key changes
 * and completed rotations, and logs each attempt with the fields every keyturn log line shares
 * (`keySetId`, `kid`, `workflowId`, `runId`, `activity`, `attempt`), which the SDK's own activity
 * logger gets too. Only ids, names and error messages are read: never an argument's other fields.
 */
export function activityInstrumentation(metrics: KeyturnMetrics, logger: Logger): ActivityInterceptorsFactory {
  return (ctx) => ({
    inbound: {
      async execute(input, next) {
        const { activityType } = ctx.info;
        const { keySetId, kid, trigger } = keyChangeOf(input.args[0]);
        if (keySetId !== undefined) metrics.knowKeySet(keySetId);
        const fields = {
          ...(keySetId === undefined ? {} : { keySetId }),
          ...(kid === undefined ? {} : { kid }),
          ...executionFields(ctx),
        };
        const started = process.hrtime.bigint();
        const seconds = () => Number(process.hrtime.bigint() - started) / 1e9;
        try {
          const result = await next(input);
          const elapsed = seconds();
          metrics.activityDuration.observe({ activity: activityType, outcome: 'success' }, elapsed);
          // The first key of a key set (trigger `bootstrap`) replaces nothing: not a rotation.
          if (
            activityType === 'promoteNextKey' &&
            keySetId !== undefined &&
            ROTATION_TRIGGERS.includes(trigger as RotationTrigger)
          ) {
            metrics.countRotation(keySetId, trigger as RotationTrigger);
          }
          logger.debug({ ...fields, durationMs: Math.round(elapsed * 1000) }, 'activity completed');
          return result;
        } catch (error) {
          const elapsed = seconds();
          metrics.activityDuration.observe({ activity: activityType, outcome: 'failure' }, elapsed);
          if (KEY_CHANGE_STEPS.includes(activityType) && keySetId !== undefined) {
            metrics.countFailedAttempt(keySetId, activityType);
          }
          logger.warn({ ...fields, err: error, durationMs: Math.round(elapsed * 1000) }, 'activity attempt failed');
          throw error;
        }
      },
    },
    outbound: {
      getLogAttributes(input, next) {
        return { ...next(input), ...executionFields(ctx) };
      },
    },
  });
}

/** The key set, kid and trigger an activity's first argument names, if it is a key change. */
function keyChangeOf(arg: unknown): { keySetId?: string; kid?: string; trigger?: string } {
  if (typeof arg !== 'object' || arg === null) return {};
  const { keySetId, kid, trigger } = arg as Record<string, unknown>;
  return {
    ...(typeof keySetId === 'string' ? { keySetId } : {}),
    ...(typeof kid === 'string' ? { kid } : {}),
    ...(typeof trigger === 'string' ? { trigger } : {}),
  };
}

/** Which workflow run and which attempt of which activity, under keyturn's log field names. */
function executionFields(ctx: Context): Record<string, unknown> {
  const { info } = ctx;
  return {
    workflowId: info.workflowExecution?.workflowId,
    runId: info.workflowExecution?.runId,
    activity: info.activityType,
    attempt: info.attempt,
  };
}
