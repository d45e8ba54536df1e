import type { AlertConfig, SecretUrl } from '../config';
import { webhookPayload, type AlertNotification } from './notification';
import { slackMessage } from './slack';

/** A place notifications are sent to besides the log. */
export interface AlertChannel {
  /** The `channel` label of keyturn_alerts_total, and the name workflows ask for it by. */
  name: string;
  /** What it is and which setting names it, for error messages (never its URL). */
  target: string;
  /** What an operator should check when it refuses a message outright (4xx). */
  whenRefused: string;
  /** Sends one notification or throws an AlertDeliveryError. */
  send(notification: AlertNotification): Promise<void>;
}

/** Why a delivery failed, worded without the channel's URL; `retryable` unless the receiver refused the message. */
export class AlertDeliveryError extends Error {
  constructor(
    message: string,
    readonly retryable: boolean,
    /** The receiver's Retry-After, when it asked to be left alone for a while. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'AlertDeliveryError';
  }
}

/** A Slack incoming webhook: Block Kit messages. */
export function slackChannel(url: SecretUrl, timeoutMs: number): AlertChannel {
  return {
    name: 'slack',
    target: 'Slack (SLACK_WEBHOOK_URL)',
    whenRefused: 'check SLACK_WEBHOOK_URL: Slack answers 403 or 404 for a revoked or removed webhook',
    send: (notification) => postJson(url, slackMessage(notification), timeoutMs),
  };
}

/** Any receiver of keyturn's JSON alert object (an incident tool, a chat bridge, a script). */
export function webhookChannel(url: SecretUrl, timeoutMs: number): AlertChannel {
  return {
    name: 'webhook',
    target: 'the alert webhook (ALERT_WEBHOOK_URL)',
    whenRefused: 'check ALERT_WEBHOOK_URL and what its receiver expects',
    send: (notification) => postJson(url, webhookPayload(notification), timeoutMs),
  };
}

/** The channels the configuration names; none when neither URL is set (alerts are then only logged). */
export function alertChannelsFrom(config: AlertConfig): AlertChannel[] {
  return [
    ...(config.slackWebhookUrl ? [slackChannel(config.slackWebhookUrl, config.timeoutMs)] : []),
    ...(config.webhookUrl ? [webhookChannel(config.webhookUrl, config.timeoutMs)] : []),
  ];
}

/**
 * POSTs `body` as JSON and resolves on a 2xx answer within `timeoutMs` (the answer's body included).
 * 5xx, 408, 429, timeouts and network errors are retryable; any other answer is a refusal.
 */
async function postJson(url: SecretUrl, body: unknown, timeoutMs: number): Promise<void> {
  const signal = AbortSignal.timeout(timeoutMs);
  let response: Response;
  try {
    response = await fetch(url.reveal(), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'user-agent': 'keyturn' },
      body: JSON.stringify(body),
      signal,
    });
  } catch (error) {
    throw new AlertDeliveryError(networkFailure(error, timeoutMs), true);
  }
  let answer: string;
  try {
    answer = await response.text();
  } catch (error) {
    throw new AlertDeliveryError(networkFailure(error, timeoutMs), true);
  }
  if (response.ok) return;
  const status = response.status;
  // A receiver may echo the request line: whatever it says is stripped of the URL before it is kept.
  const detail = redact(answer.trim().slice(0, 200), url);
  throw new AlertDeliveryError(
    `HTTP ${status}${detail ? ` (${detail})` : ''}`,
    status >= 500 || status === 408 || status === 429,
    retryAfterMs(response.headers.get('retry-after')),
  );
}

/** A network failure in words: the error's code only, since undici's messages can quote the address. */
function networkFailure(error: unknown, timeoutMs: number): string {
  const { name, cause } = (error ?? {}) as { name?: unknown; cause?: { code?: unknown } };
  if (name === 'TimeoutError') return `no answer within ${timeoutMs} ms`;
  const code = cause?.code;
  return `the connection failed${typeof code === 'string' ? ` (${code})` : ''}`;
}

function redact(text: string, url: SecretUrl): string {
  const full = url.reveal();
  const { pathname, search } = new URL(full);
  let redacted = text.split(full).join('[secret URL]');
  if (pathname.length > 1) redacted = redacted.split(pathname + search).join('[secret URL]');
  return redacted;
}

/** Retry-After in seconds (the form Slack and most receivers use); an HTTP date is left to the default backoff. */
function retryAfterMs(value: string | null): number | undefined {
  if (value === null || !/^\d+$/.test(value.trim())) return undefined;
  return Number(value.trim()) * 1000;
}
