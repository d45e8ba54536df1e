import { proxyActivities } from '@temporalio/workflow';
import type { AlertDelivery, KeyturnActivities } from '../activities';

/** Attempts per channel: 5 s doubling to 10 min between them, about half an hour in all. */
const DELIVERY_ATTEMPTS = 10;

const { deliverAlert } = proxyActivities<Pick<KeyturnActivities, 'deliverAlert'>>({
  // Above the longest delivery timeout KEYTURN_ALERT_TIMEOUT allows (30 s): the activity ends each attempt itself.
  startToCloseTimeout: '1m',
  retry: { initialInterval: '5s', backoffCoefficient: 2, maximumInterval: '10m', maximumAttempts: DELIVERY_ATTEMPTS },
});

/**
 * Sends one message to each of its channels. Each channel is its own activity, retried with
 * backoff on its own, so a retry for a failing Slack never sends the webhook's message twice. The
 * alert activity starts it as a workflow of its own, not a child: a channel that is down delays no
 * rotation, and neither continue-as-new nor the end of a supervisor round cuts its retries short.
 * Answers how each channel ended, which the Web UI shows.
 */
export async function alertDeliveryWorkflow(delivery: AlertDelivery): Promise<Record<string, 'sent' | 'failed'>> {
  const { notification, channels } = delivery;
  const outcomes = await Promise.allSettled(
    channels.map((channel) => deliverAlert({ channel, notification, attempts: DELIVERY_ATTEMPTS })),
  );
  return Object.fromEntries(
    channels.map((channel, i) => [channel, outcomes[i].status === 'fulfilled' ? 'sent' : 'failed']),
  );
}
