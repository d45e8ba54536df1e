import { ApplicationFailure, Context } from '@temporalio/activity';
import { WorkflowExecutionAlreadyStartedError, type Client } from '@temporalio/client';
import type { Counter } from 'prom-client';
import { AlertDeliveryError, type AlertChannel } from '../alerts/channels';
import { VIOLATION_TITLES } from '../alerts/hints';
import { notificationFor, type AlertNotification, type WebUi } from '../alerts/notification';
import {
  applyAlert,
  invariantIncident,
  WORKFLOW_STOPPED_INCIDENT,
  type Alert,
  type Incident,
  type NotificationKind,
} from '../domain/incidents';
import type { Logger } from '../logger';
import type { AlertOutcome } from '../observability/metrics';
import type { AlertIncidentStore } from '../store/alert-incidents';
import type { OpenIncidentStore } from '../store/open-incidents';
import { ALERT_DELIVERY_WORKFLOW_TYPE, keySetWorkflowId, type SupervisionReport } from '../workflows/messages';

export interface AlertingDependencies {
  logger: Logger;
  /** Where notifications go besides the log: Slack, a webhook, a test's receiver. */
  channels: AlertChannel[];
  /** How long an open incident stays quiet before a reminder. */
  reminderMs: number;
  /** Links each message to the key set's workflow when set. */
  webUi?: WebUi;
  /** keyturn_alerts_total{channel, outcome}. */
  alertsTotal: Counter<'channel' | 'outcome'>;
  /** The supervisor's incidents. */
  incidents: AlertIncidentStore;
  /** Where the key set workflows' open incidents are recorded for keyturn_open_incidents; left out, they are not. */
  openIncidents?: OpenIncidentStore;
  /** Starts the delivery workflows, on the worker's own task queue. */
  temporalClient: Client;
  taskQueue: string;
}

/** A notification and the channels still to send it to (the log already has it). */
export interface AlertDelivery {
  notification: AlertNotification;
  channels: string[];
}

/** What an alert did to a key set workflow's incident, for the workflow to keep in its state. */
export interface AlertAssessment {
  /** The incident to keep: null when none is open any more. */
  incident: Incident | null;
  /** The message it called for, now logged and on its way to the other channels; null: a repeat, suppressed. */
  announced: NotificationKind | null;
  /** From when a repeat of the still-firing alert would go out as a reminder. */
  remindAt: number | null;
}

export interface DeliveryRequest {
  channel: string;
  notification: AlertNotification;
  /** The retry policy's maximumAttempts: the attempt that fails last counts the delivery as failed. */
  attempts: number;
}

/** Where the log line of an alert counts in keyturn_alerts_total. */
const LOG_CHANNEL = 'log';

/**
 * The alert activities: deciding what an alert means for its incident and, when it calls for a
 * message, logging it and starting its delivery (quick: no channel is waited for); and delivering
 * one message to one channel (retried by Temporal, apart from the other channels).
 */
export function createAlertActivities(deps: AlertingDependencies) {
  const count = (channel: string, outcome: AlertOutcome) => deps.alertsTotal.inc({ channel, outcome });
  const channelNames = deps.channels.map((c) => c.name);

  /**
   * Logs the message (the log is always a channel) and starts the workflow that sends it to the
   * others, or counts the alert suppressed on every channel. The delivery's id names the incident
   * and the message, so a retried decision never sends a message twice.
   */
  const announce = async (
    alert: Alert,
    kind: NotificationKind | null,
    incident: Incident,
    at: number,
  ): Promise<void> => {
    if (kind === null) {
      for (const channel of [LOG_CHANNEL, ...channelNames]) count(channel, 'suppressed');
      deps.logger.debug(
        { keySetId: alert.keySetId, incident: alert.incident, openedAt: new Date(incident.openedAt).toISOString() },
        `alert suppressed: incident already announced (${alert.summary})`,
      );
      return;
    }
    const notification = notificationFor(alert, kind, incident, at, deps.webUi);
    const level = kind === 'resolved' ? 'info' : 'error';
    deps.logger[level](
      { alert: notification, keySetId: alert.keySetId, kid: alert.kid, workflowId: alert.workflowId },
      `alert ${kind === 'resolved' ? 'resolved' : kind === 'reminder' ? 'still firing' : 'firing'}: ${alert.summary}`,
    );
    count(LOG_CHANNEL, 'sent');
    if (channelNames.length === 0) return;
    const delivery: AlertDelivery = { notification, channels: channelNames };
    try {
      await deps.temporalClient.workflow.start(ALERT_DELIVERY_WORKFLOW_TYPE, {
        taskQueue: deps.taskQueue,
        workflowId: `alert/${notification.incidentId}/${notification.sequence}`,
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        args: [delivery],
        staticSummary: `${kind} alert: ${alert.summary}`,
      });
    } catch (error) {
      if (!(error instanceof WorkflowExecutionAlreadyStartedError)) throw error;
    }
  };

  /**
   * Best effort: the incident is announced whatever PostgreSQL does (it may be what fails). Every
   * firing alert writes the row again, so one missed while the database was down is made good.
   */
  const recordOpenIncident = async (alert: Alert, incident: Incident | null): Promise<void> => {
    try {
      await deps.openIncidents?.record(alert.keySetId, alert.incident, alert.step, incident);
    } catch (error) {
      deps.logger.warn(
        { err: error, keySetId: alert.keySetId, incident: alert.incident },
        'could not record the incident for keyturn_open_incidents',
      );
    }
  };

  return {
    /** Applies an alert of the key set workflow to the incident its state holds (`open`), at `at` on its clock. */
    async assessAlert(input: { alert: Alert; open: Incident | null; at: number }): Promise<AlertAssessment> {
      const { alert, open, at } = input;
      const change = applyAlert(open, alert, at, deps.reminderMs);
      // A resolution with nothing open is no news: not announced, not counted.
      if (change.notify !== null || alert.status === 'firing')
        await announce(alert, change.notify, change.incident ?? open!, at);
      await recordOpenIncident(alert, change.incident);
      return {
        incident: change.incident,
        announced: change.notify,
        remindAt: change.incident ? change.incident.notifiedAt + deps.reminderMs : null,
      };
    },

    /** Turns a supervisor round's findings into incidents (PostgreSQL) and announces what calls for a message. */
    async recordSupervisionAlerts(input: {
      report: SupervisionReport;
      at: number;
    }): Promise<{ announced: number; suppressed: number }> {
      const { report, at } = input;
      const firing: Alert[] = [
        ...report.restarted.map((keySetId): Alert => ({
          keySetId,
          incident: WORKFLOW_STOPPED_INCIDENT,
          status: 'firing',
          step: 'supervisor',
          summary: `key set "${keySetId}" had no running workflow; the supervisor started it again`,
          workflowId: keySetWorkflowId(keySetId),
        })),
        ...report.violations.map((v): Alert => ({
          keySetId: v.keySetId,
          incident: invariantIncident(v.code, v.kid),
          status: 'firing',
          step: 'supervisor',
          summary: `key set "${v.keySetId}": ${VIOLATION_TITLES[v.code]}`,
          ...(v.kid !== undefined && { kid: v.kid }),
          error: v.message,
          code: v.code,
          workflowId: keySetWorkflowId(v.keySetId),
        })),
      ];
      const notices = await deps.incidents.recordRound({
        firing,
        // A workflow started again this round was not checked: its other incidents wait for the next round.
        unjudged: (keySetId, incident) => report.restarted.includes(keySetId) && incident !== WORKFLOW_STOPPED_INCIDENT,
        at,
        reminderMs: deps.reminderMs,
      });
      for (const { alert, kind, incident } of notices) {
        await announce(kind === 'resolved' ? { ...alert, summary: resolvedSummary(alert) } : alert, kind, incident, at);
      }
      const announced = notices.filter((n) => n.kind !== null).length;
      return { announced, suppressed: notices.length - announced };
    },

    /**
     * Sends one notification to one channel. A failure is thrown for Temporal to retry with backoff
     * (unless the receiver refused the message, which no retry changes); the last attempt's failure
     * is counted and logged as the delivery's end.
     */
    async deliverAlert(request: DeliveryRequest): Promise<void> {
      const { notification: n } = request;
      const about = `the ${n.kind === 'resolved' ? 'resolved' : 'firing'} alert for key set "${n.keySetId}"${n.kid ? ` (kid ${n.kid})` : ''}`;
      const context = { keySetId: n.keySetId, kid: n.kid, incident: n.incident, channel: request.channel };
      const channel = deps.channels.find((c) => c.name === request.channel);
      if (channel === undefined) {
        count(request.channel, 'failed');
        throw ApplicationFailure.nonRetryable(
          `${about} was not sent to ${request.channel}: this worker has no such channel (its SLACK_WEBHOOK_URL or ALERT_WEBHOOK_URL was unset since the alert was raised)`,
          'ERR_ALERT_NOT_DELIVERED',
        );
      }
      try {
        await channel.send(n);
      } catch (error) {
        const failure =
          error instanceof AlertDeliveryError ? error : new AlertDeliveryError((error as Error).message, true);
        const { attempt } = Context.current().info;
        const last = !failure.retryable || attempt >= request.attempts;
        const advice = failure.retryable
          ? `check that ${channel.target} is reachable from the worker`
          : `not retried: ${channel.whenRefused}`;
        const message = `${channel.target} did not take ${about}: ${failure.message}; ${advice}`;
        if (last) {
          count(channel.name, 'failed');
          deps.logger.error({ ...context, attempt }, `${message}; gave up after ${attempt} attempt(s)`);
        } else {
          deps.logger.warn({ ...context, attempt }, `${message}; retrying with backoff`);
        }
        throw ApplicationFailure.create({
          type: 'ERR_ALERT_NOT_DELIVERED',
          message,
          nonRetryable: !failure.retryable,
          ...(failure.retryAfterMs !== undefined && { nextRetryDelay: failure.retryAfterMs }),
        });
      }
      count(channel.name, 'sent');
      deps.logger.info({ ...context, attempt: Context.current().info.attempt }, `${about} was sent to ${channel.name}`);
    },
  };
}

function resolvedSummary(alert: Alert): string {
  return alert.incident === WORKFLOW_STOPPED_INCIDENT
    ? `key set "${alert.keySetId}": its workflow runs again`
    : `${alert.summary}: no longer found by the supervisor`;
}
