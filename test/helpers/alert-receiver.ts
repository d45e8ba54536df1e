import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { Socket } from 'node:net';

/** How the receiver answers: 200, a status of your choice (500 for an outage), or never (`hang`). */
export type ReceiverMode = 'ok' | 'hang' | { status: number; body?: string; retryAfterSeconds?: number };

export interface ReceivedRequest {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  /** The JSON body, parsed. */
  body: unknown;
  /** Real time it arrived, epoch milliseconds. */
  receivedAt: number;
  /** The status it was answered with; null while it hangs, or if the sender gave up first. */
  status: number | null;
}

/**
 * A stand-in for Slack or an alert webhook on loopback: records every request and answers as `mode`
 * says, which a test may change at any time (an outage, then recovery). Hanging requests are held
 * until the sender gives up or the receiver closes.
 */
export class AlertReceiver {
  mode: ReceiverMode = 'ok';
  readonly requests: ReceivedRequest[] = [];
  readonly #held = new Set<ServerResponse>();
  readonly #sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    /** The URL to configure, e.g. as SLACK_WEBHOOK_URL. */
    readonly url: string,
  ) {}

  /** Listens on a free loopback port; `path` is what the URL ends with (a Slack webhook's secret path, say). */
  static async start(path = '/'): Promise<AlertReceiver> {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const receiver = new AlertReceiver(server, `http://127.0.0.1:${port}${path}`);
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () =>
        receiver.receive(request.method ?? '', request.url ?? '', request.headers, Buffer.concat(chunks), response),
      );
    });
    const sockets = receiver.#sockets;
    server.on('connection', (socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    return receiver;
  }

  /** The bodies of the requests answered with a 2xx, in arrival order. */
  get delivered(): unknown[] {
    return this.requests.filter((r) => r.status !== null && r.status < 300).map((r) => r.body);
  }

  /** How many requests are being held unanswered right now. */
  get hanging(): number {
    return this.#held.size;
  }

  async close(): Promise<void> {
    for (const response of this.#held) response.destroy();
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private receive(
    method: string,
    path: string,
    headers: IncomingHttpHeaders,
    raw: Buffer,
    response: ServerResponse,
  ): void {
    const text = raw.toString('utf8');
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // Kept as text: a test asserting JSON will say what arrived.
    }
    const record: ReceivedRequest = { method, path, headers, body, receivedAt: Date.now(), status: null };
    this.requests.push(record);
    const mode = this.mode;
    if (mode === 'hang') {
      this.#held.add(response);
      response.on('close', () => this.#held.delete(response));
      return;
    }
    const status = mode === 'ok' ? 200 : mode.status;
    record.status = status;
    response.writeHead(status, {
      'content-type': 'text/plain',
      ...(mode !== 'ok' && mode.retryAfterSeconds !== undefined && { 'retry-after': String(mode.retryAfterSeconds) }),
    });
    response.end(mode === 'ok' ? 'ok' : (mode.body ?? ''));
  }
}
