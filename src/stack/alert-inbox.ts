import { appendFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';

/** Where a notification came in: as Slack or PagerDuty would receive Alertmanager's, or keyturn's own webhook. */
export type InboxChannel = 'slack' | 'pagerduty' | 'keyturn';

export interface ReceivedNotification {
  channel: InboxChannel;
  /** Epoch milliseconds. */
  receivedAt: number;
  /** The JSON body as sent. */
  body: unknown;
  /** One line about it: `FIRING: <summary>`, `RESOLVED: …`. */
  headline: string;
}

export interface AlertInbox {
  /** Base URL; the channels are its paths `/slack`, `/pagerduty`, `/keyturn`. */
  url: string;
  received: ReceivedNotification[];
  close(): Promise<void>;
}

const CHANNELS: readonly InboxChannel[] = ['slack', 'pagerduty', 'keyturn'];

/**
 * The stack's stand-in for Slack, PagerDuty and keyturn's alert webhook, on loopback: Alertmanager's
 * Slack and PagerDuty receivers (deploy/alertmanager/alertmanager.yml) and the workers' webhook post
 * here. Each notification is kept, appended to `logFile` as a JSON line and told to `onNotification`.
 */
export async function startAlertInbox(
  port: number,
  logFile: string,
  onNotification: (n: ReceivedNotification) => void,
): Promise<AlertInbox> {
  const received: ReceivedNotification[] = [];
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const channel = CHANNELS.find((name) => request.url === `/${name}`);
      if (request.method !== 'POST' || channel === undefined) {
        response.writeHead(404).end();
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        response.writeHead(400).end('not JSON');
        return;
      }
      const notification: ReceivedNotification = {
        channel,
        receivedAt: Date.now(),
        body,
        headline: headlineOf(channel, body),
      };
      received.push(notification);
      void appendFile(logFile, `${JSON.stringify(notification)}\n`, { mode: 0o600 });
      onNotification(notification);
      // Slack answers `ok`; PagerDuty's Events API answers 202 with JSON. Alertmanager takes any 2xx.
      response.writeHead(channel === 'pagerduty' ? 202 : 200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port, exclusive: true }, resolve);
  });
  const bound = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${bound}`,
    received,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** What a notification says, in one line, whichever shape its channel gives it. */
function headlineOf(channel: InboxChannel, body: unknown): string {
  const b = body as {
    attachments?: { title?: string }[];
    event_action?: string;
    payload?: { summary?: string };
    kind?: string;
    summary?: string;
  };
  if (channel === 'slack') return b.attachments?.[0]?.title ?? 'Slack message';
  if (channel === 'pagerduty')
    return `${b.event_action === 'resolve' ? 'RESOLVED' : 'TRIGGERED'}: ${b.payload?.summary ?? 'page'}`;
  return `${b.kind ?? 'alert'}: ${b.summary ?? ''}`;
}
