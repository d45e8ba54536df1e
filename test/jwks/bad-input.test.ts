import { PRIVATE_JWK_MEMBERS } from '../../src/domain/private-jwk';
import { METHODS } from 'node:http';
import { connect, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { startJwksServer, type RunningJwksServer } from '../../src/jwks/server';
import { KeyStore } from '../../src/store/key-store';
import { KeySetDriver, testPolicy } from '../helpers/key-sets';
import { capturingLogger } from '../helpers/logs';
import { waitFor } from '../helpers/wait';
import { randomKekRing } from '../helpers/key-set-worker';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';

// Bad input on the JWKS server, one table per kind: each row a request sent as raw bytes over a real
// loopback socket, and the answer it must get. None of it stops the server answering everyone else.

const captured = capturingLogger();
let db: TestDatabase;
let server: RunningJwksServer;
/** Everything the server sent back in this file, to search for key material at the end. */
const responses: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  const store = new KeyStore(db.pool, randomKekRing());
  await (await KeySetDriver.register(store, 'default', testPolicy())).rotate();
  server = await startJwksServer({
    port: 0,
    host: '127.0.0.1',
    pool: db.pool,
    registry: new Registry(),
    logger: captured.logger,
    defaultKeySetId: 'default',
  });
});
afterAll(async () => {
  await server?.close();
  await db?.drop();
});

/** An open connection to the server: what it has received so far, and a promise of the whole once the server closes it. */
interface Connection {
  socket: Socket;
  received(): string;
  closed: Promise<string>;
}

function open(): Connection {
  const { hostname, port } = new URL(server.url);
  const socket = connect({ host: hostname, port: Number(port) });
  const chunks: Buffer[] = [];
  socket.on('data', (chunk) => chunks.push(chunk));
  const received = () => Buffer.concat(chunks).toString('latin1');
  // A server that closes with bytes of ours unread resets the connection: what it answered still counts.
  socket.on('error', () => undefined);
  const closed = new Promise<string>((resolve) => {
    socket.on('close', () => {
      responses.push(received());
      resolve(received());
    });
  });
  return { socket, received, closed };
}

/**
 * Sends `bytes` and resolves to everything the server answered once it closes the connection (each
 * request here asks it to). Never half-closed: Node drops a request still being answered when its
 * client half-closes.
 */
function exchange(bytes: string | Buffer): Promise<string> {
  const connection = open();
  connection.socket.write(bytes);
  return connection.closed;
}

/** The status codes of every response in `raw`, in order. */
const statuses = (raw: string) => [...raw.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
const headerOf = (raw: string, name: string) => new RegExp(`^${name}: (.*)\\r$`, 'im').exec(raw)?.[1];
const bodyOf = (raw: string) => raw.slice(raw.indexOf('\r\n\r\n') + 4);

const request = (target: string, method = 'GET', headers = '') =>
  `${method} ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n${headers}\r\n`;

const ROUTES = [
  '/keysets/default/jwks.json',
  '/keysets/default/.well-known/openid-configuration',
  '/.well-known/jwks.json',
  '/.well-known/openid-configuration',
  '/healthz',
  '/readyz',
  '/metrics',
];

describe('request targets and heads', () => {
  const longId = 'a'.repeat(65);
  test.each<[string, number, string | Buffer]>([
    // key set ids
    ['the id "."', 400, request('/keysets/./jwks.json')],
    ['the id ".."', 400, request('/keysets/../jwks.json')],
    ['the id ".." in discovery', 400, request('/keysets/../.well-known/openid-configuration')],
    ['the id "." percent-encoded', 400, request('/keysets/%2e/jwks.json')],
    ['the id ".." percent-encoded', 400, request('/keysets/%2E%2E/jwks.json')],
    ['an empty id', 400, request('/keysets//jwks.json')],
    ['an id of 65 characters', 400, request(`/keysets/${longId}/jwks.json`)],
    ['an id of 65 characters in discovery', 400, request(`/keysets/${longId}/.well-known/openid-configuration`)],
    ['an id of 1,000 characters', 400, request(`/keysets/${'a'.repeat(1_000)}/jwks.json`)],
    ['an id of 2,000 characters', 414, request(`/keysets/${'a'.repeat(2_000)}/jwks.json`)],
    ['non-ASCII bytes in the id', 400, Buffer.from(request('/keysets/ünï/jwks.json'), 'utf8')],
    ['a non-ASCII id percent-encoded', 400, request('/keysets/%C3%BCn%C3%AF/jwks.json')],
    ['a full-width id percent-encoded', 400, request(`/keysets/${encodeURIComponent('ｄｅｆａｕｌｔ')}/jwks.json`)],
    ['an id with a NUL', 400, request('/keysets/a%00b/jwks.json')],
    ['an id with a space', 400, request('/keysets/a%20b/jwks.json')],
    ['an id with a slash', 400, request('/keysets/a%2Fb/jwks.json')],
    ['percent-encoded traversal', 400, request('/keysets/..%2F..%2Fetc/jwks.json')],
    ['plain traversal', 404, request('/keysets/../../etc/passwd')],
    // percent-encoding
    ['a truncated UTF-8 sequence', 400, request('/keysets/%E0%A4%A/jwks.json')],
    ['a lone "%"', 400, request('/keysets/a%/jwks.json')],
    ['"%" and no hex digits', 400, request('/.well-known/%zz')],
    ['an invalid UTF-8 byte', 400, request('/keysets/%C3/jwks.json')],
    ['an encoded surrogate', 400, request('/keysets/%ED%A0%80/jwks.json')],
    // sizes
    ['a target over 1 KiB', 414, request(`/${'a/'.repeat(1_000)}`)],
    ['a target over 16 KiB', 431, request(`/${'a'.repeat(20_000)}`)],
    ['a header over 16 KiB', 431, request('/healthz', 'GET', `X-Filler: ${'x'.repeat(20_000)}\r\n`)],
    // Node counts the bytes of names and values against maxHeaderSize (16 KiB), and keeps at most 2000 headers.
    ['10,000 headers', 431, request('/healthz', 'GET', 'X-A: b\r\n'.repeat(10_000))],
    // shapes
    ['a method HTTP does not know', 400, request('/', 'BREW')],
    ['a lower-case method', 400, request('/healthz', 'get')],
    ['the asterisk form', 400, request('*')],
    ['an unknown path', 404, request('/admin')],
    ['a query string on an unknown path', 404, request('/admin?x=../../')],
    ['a trailing slash', 404, request('/keysets/default/jwks.json/')],
    ['no Host header', 400, 'GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n'],
    ['garbage', 400, Buffer.from([0, 1, 2, 3, 13, 10, 13, 10])],
    ['a bad HTTP version', 400, 'GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n'],
    ['the HTTP/2 preface', 400, 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'],
    ['a bare LF between headers', 400, 'GET /healthz HTTP/1.1\nHost: x\n\n'],
    [
      'two Content-Lengths that disagree',
      400,
      request('/healthz', 'GET', 'Content-Length: 1\r\nContent-Length: 2\r\n'),
    ],
  ])('%s: %d', async (_name, expected, bytes) => {
    const response = await exchange(bytes);
    expect(statuses(response)).toEqual([expected]);
    // An error answer names the problem, quoting nothing of the request.
    if (headerOf(response, 'content-type') === 'application/json')
      expect(Object.keys(JSON.parse(bodyOf(response)) as object)).toEqual(['error']);
  });

  test('a valid but unknown id is a 404 naming it; the absolute form of a target is understood', async () => {
    const unknown = await exchange(request('/keysets/-no.such_set-/jwks.json'));
    expect(statuses(unknown)).toEqual([404]);
    expect(JSON.parse(bodyOf(unknown))).toEqual({ error: 'key set not found', keySetId: '-no.such_set-' });
    expect(statuses(await exchange(request('http://anything.example/keysets/default/jwks.json')))).toEqual([200]);
  });
});

describe('methods', () => {
  const refused = METHODS.filter((method) => !['GET', 'HEAD', 'CONNECT'].includes(method));

  test.each(ROUTES)('%s: every method but GET and HEAD is a 405 naming GET and HEAD in Allow', async (route) => {
    for (const method of refused) {
      const response = await exchange(request(route, method));
      expect({ method, statuses: statuses(response), allow: headerOf(response, 'allow') }).toEqual({
        method,
        statuses: [405],
        allow: 'GET, HEAD',
      });
    }
  });

  test.each(ROUTES)('%s: HEAD answers what GET does, without the body', async (route) => {
    const get = await exchange(request(route));
    const head = await exchange(request(route, 'HEAD'));
    expect(statuses(head)).toEqual(statuses(get));
    expect(bodyOf(head)).toBe('');
    expect(headerOf(head, 'content-type')).toBe(headerOf(get, 'content-type'));
  });

  test('CONNECT gets no tunnel: the connection closes without an answer', async () => {
    expect(await exchange('CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n')).toBe('');
    expect(await exchange(request('/keysets/default/jwks.json', 'CONNECT'))).toBe('');
  });
});

describe('bodies', () => {
  test.each([
    ['a POST with a small body', 'POST', 'Content-Length: 2\r\n\r\n{}', 405],
    ['a POST announcing a gigabyte', 'POST', `Content-Length: 1000000000\r\n\r\n${'x'.repeat(65_536)}`, 405],
    [
      'a GET with an endless chunked body',
      'GET',
      `Transfer-Encoding: chunked\r\n\r\n${'10000\r\n'.concat('x'.repeat(65_536), '\r\n')}`,
      200,
    ],
  ])('%s is answered and its connection closed, the body unread', async (_name, method, rest, expected) => {
    // Keep-alive and no half-close: only the server can end this connection.
    const connection = open();
    connection.socket.write(`${method} /keysets/default/jwks.json HTTP/1.1\r\nHost: localhost\r\n${rest}`);
    const response = await connection.closed;
    expect(statuses(response)).toEqual([expected]);
    expect(headerOf(response, 'connection')).toBe('close');
  });
});

describe('slow clients', () => {
  const jwksRequest = 'GET /keysets/default/jwks.json HTTP/1.1\r\nHost: localhost\r\n\r\n';
  const hanging: Connection[] = [];
  afterAll(() => hanging.forEach((c) => c.socket.destroy()));

  /** A client that sends `first`, then `drip` every half second until the server closes the connection. */
  function slowClient(first: string, drip?: string): Connection {
    const connection = open();
    connection.socket.write(first);
    if (drip !== undefined) {
      const timer = setInterval(() => connection.socket.write(drip), 500);
      connection.socket.on('close', () => clearInterval(timer));
    }
    hanging.push(connection);
    return connection;
  }

  test('are cut off by the header and keep-alive timeouts, while the JWKS keeps answering everyone else', async () => {
    const rows: [string, Connection, number[]][] = [
      [
        'a request head trickled, a header line every half second',
        slowClient('GET /keysets/default/jwks.json HTTP/1.1\r\nHost: x\r\n', 'X-Slow: 1\r\n'),
        [408],
      ],
      ['a request line trickled a byte at a time', slowClient('GET /keysets/', 'a'), [408]],
      ['a connection that sends nothing', slowClient(''), [408]],
      [
        'a second request trickled on a kept-alive connection',
        slowClient(`${jwksRequest}GET /healthz HTTP/1.1\r\n`, 'X-Slow: 1\r\n'),
        [200, 408],
      ],
      ['an idle kept-alive connection', slowClient(jwksRequest), [200]],
    ];
    // Many of the kind that holds a connection longest.
    const crowd = Array.from({ length: 100 }, () =>
      slowClient('GET /keysets/default/jwks.json HTTP/1.1\r\nHost: x\r\n', 'X-Slow: 1\r\n'),
    );

    // Another client, meanwhile, gets the JWKS at once: within a few seconds, where the slow ones hang for 10.
    const response = await fetch(`${server.url}/keysets/default/jwks.json`, { signal: AbortSignal.timeout(5_000) });
    expect(response.status).toBe(200);
    expect((await response.json()) as object).toEqual({ keys: [expect.objectContaining({ kid: expect.any(String) })] });
    expect(crowd.filter((c) => c.socket.closed || c.received() !== '')).toEqual([]);

    // The server closes every slow connection, within the 10-s header timeout and a busy machine's delays
    // (Node's own connection checks, every 30 s, would leave them open for up to 40 s).
    const slow = [...rows.map(([, connection]) => connection), ...crowd];
    await waitFor(
      () => (slow.every((c) => c.socket.closed) ? true : undefined),
      25_000,
      'the server to close every slow connection',
      100,
    );
    // A 408 where a request was under way, nothing more once idle.
    for (const [name, connection, expected] of rows)
      expect({ name, statuses: statuses(await connection.closed) }).toEqual({ name, statuses: expected });
    for (const connection of crowd) expect(statuses(await connection.closed)).toEqual([408]);
  }, 60_000);
});

test('a default key set id that is not one stops the start, naming the option (KEYTURN_DEFAULT_KEYSET is checked by loadConfig)', async () => {
  const start = (defaultKeySetId?: string) =>
    startJwksServer({
      port: 0,
      host: '127.0.0.1',
      pool: db.pool,
      registry: new Registry(),
      logger: captured.logger,
      defaultKeySetId,
    });
  await expect(start('..')).rejects.toMatchObject({ code: 'ERR_KEYSET_ID_INVALID', field: 'defaultKeySetId' });
  await expect(start('a/b')).rejects.toMatchObject({
    code: 'ERR_KEYSET_ID_INVALID',
    message: expect.stringMatching(/^defaultKeySetId: "a\/b" is not a valid key set id: use /),
  });
});

test('after all that the server still answers, and no answer carried key material', async () => {
  expect(statuses(await exchange(request('/healthz')))).toEqual([200]);
  expect(statuses(await exchange(request('/keysets/default/jwks.json')))).toEqual([200]);
  const everything = [...responses, captured.text()].join('\n');
  for (const member of PRIVATE_JWK_MEMBERS) expect(everything).not.toMatch(new RegExp(`"${member}"\\s*:`));
});
