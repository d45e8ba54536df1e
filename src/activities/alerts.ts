import type { Logger } from '../observability/logger';

/** Something an operator should know about a key set. */
export interface Alert {
  keySetId: string;
  /** `firing` when a step gave up, `resolved` when the key set has recovered. */
  status: 'firing' | 'resolved';
  /** The lifecycle step concerned, e.g. `promote`, `generateNext`. */
  step: string;
  summary: string;
  /** The error as the activity reported it (never key material). */
  error?: string;
  /** Consecutive failures so far. */
  failures?: number;
  workflowId?: string;
}

/** A place alerts are delivered to (a log, Slack, a webhook). It may throw; delivery is best effort. */
export type AlertSink = (alert: Alert) => Promise<void>;

/** The sink every deployment has: one structured log line per alert. */
export function logAlertSink(logger: Logger): AlertSink {
  return async (alert) => {
    const level = alert.status === 'firing' ? 'error' : 'info';
    logger[level]({ alert, keySetId: alert.keySetId, workflowId: alert.workflowId }, `alert ${alert.status}: ${alert.summary}`);
  };
}
