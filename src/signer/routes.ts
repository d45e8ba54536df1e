import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Pool } from 'pg';
import type { Registry } from 'prom-client';
import { isKeySetId, KEY_SET_ID_RULE } from '../domain/key-set-id';
import type { KeyRing } from '../issuer/key-ring';
import type { Logger } from '../logger';
import { normaliseSubject, type Authentication, type ClientRegistry, type SignerClient } from './client-registry';
import type { DenialAudit } from './denial-audit';
import { readKeySetInfo } from './key-set-info';
import type { SignerMetrics } from './metrics';
import { problem, problemOfError, PROBLEM_TYPE, type ProblemReply } from './problems';
import { readSignRequest } from './sign-request';

export interface SignerRoutesDependencies {
  ring: KeyRing;
  clients: ClientRegistry;
  /** For `GET /v1/keysets/{id}`, which reads the key set's state. */
  pool: Pool;
  metrics: SignerMetrics;
  denials: DenialAudit;
  registry: Registry;
  logger: Logger;
  maxTokenTtlCeilingMs: number;
  /** Larger bodies get 413. */
  maxBodyBytes: number;
  /** A body not received in full within this gets 408. */
  bodyTimeoutMs: number;
}

type Route =
  | { name: 'sign' | 'keySet'; keySetId: string }
  | { name: 'healthz' }
  | { name: 'metrics' }
  | { name: 'notFound' }
  | { name: 'badKeySetId' };

const ALLOWED: Record<Route['name'], string> = {
  sign: 'POST',
  keySet: 'GET',
  healthz: 'GET',
  metrics: 'GET',
  notFound: '',
  badKeySetId: '',
};

const COMMON_HEADERS = { 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' } as const;
/** The signed answer's headers as Node takes them fastest, a flat list (content-length follows). */
const SIGNED_HEADERS = [
  'x-content-type-options',
  'nosniff',
  'cache-control',
  'no-store',
  'content-type',
  'application/json',
] as const;
const KEY_SETS_PREFIX = '/v1/keysets/';
const SIGN_SUFFIX = '/sign';

/**
 * The signing service's request handler: `POST /v1/keysets/{id}/sign`, `GET /v1/keysets/{id}`, and
 * `/healthz` and `/metrics`. Every refusal is an RFC 9457 problem document. A request is authenticated
 * (bearer secret or client certificate) before anything about the key set is said, and a client learns
 * only of its own key sets.
 */
export function createSignerRequestHandler(
  deps: SignerRoutesDependencies,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    handle(req, res, deps).catch((error: unknown) => {
      deps.logger.error({ err: error }, 'signer request failed');
      if (!res.headersSent) sendProblem(req, res, problemOfError(error));
      else res.destroy();
    });
  };
}

async function handle(req: IncomingMessage, res: ServerResponse, deps: SignerRoutesDependencies): Promise<void> {
  const route = matchRoute(req.url ?? '');
  if (route.name === 'notFound') return sendProblem(req, res, problem(404, 'ERR_NOT_FOUND', 'no such resource'));
  if (route.name === 'badKeySetId') {
    return sendProblem(req, res, problem(400, 'ERR_KEYSET_ID_INVALID', `invalid key set id: use ${KEY_SET_ID_RULE}`));
  }
  const allowed = ALLOWED[route.name];
  if (req.method !== allowed) {
    return sendProblem(
      req,
      res,
      problem(405, 'ERR_METHOD_NOT_ALLOWED', `use ${allowed} here`, { headers: { allow: allowed } }),
    );
  }
  if (route.name === 'healthz') return sendJson(req, res, 200, { status: 'ok' });
  if (route.name === 'metrics') {
    const text = await deps.registry.metrics();
    req.resume();
    res.writeHead(200, { ...COMMON_HEADERS, 'content-type': deps.registry.contentType });
    res.end(text);
    return;
  }

  const { keySetId } = route;
  const authentication = authenticate(req, deps.clients);
  if (authentication.outcome !== 'client') {
    if (authentication.outcome === 'stale') {
      return sendProblem(
        req,
        res,
        problem(
          503,
          'ERR_SIGNER_CLIENTS_STALE',
          'the signing service has not confirmed its clients with its database recently enough: try again shortly',
          { headers: { 'retry-after': '5' } },
        ),
      );
    }
    return deny(req, res, deps, keySetId, null, problemOfUnauthenticated(authentication));
  }
  const { client } = authentication;
  if (!client.keySetIds.has(keySetId)) {
    return deny(
      req,
      res,
      deps,
      keySetId,
      client.name,
      problem(403, 'ERR_FORBIDDEN', `client "${client.name}" may not sign for key set "${keySetId}"`, { keySetId }),
    );
  }
  if (route.name === 'keySet') return answerKeySet(req, res, deps, keySetId);
  return sign(req, res, deps, client, keySetId);
}

async function sign(
  req: IncomingMessage,
  res: ServerResponse,
  deps: SignerRoutesDependencies,
  client: SignerClient,
  keySetId: string,
): Promise<void> {
  const waitMs = client.bucket.take();
  if (waitMs > 0) {
    const retryAfter = String(Math.max(1, Math.ceil(waitMs / 1000)));
    return deny(
      req,
      res,
      deps,
      keySetId,
      client.name,
      problem(429, 'ERR_RATE_LIMITED', `client "${client.name}" is over its rate: try again in ${retryAfter} s`, {
        headers: { 'retry-after': retryAfter },
      }),
    );
  }
  const refused = (reply: ProblemReply) => {
    deps.metrics.countSigning(client.name, keySetId, 'refused');
    sendProblem(req, res, reply);
  };
  if (!isJson(req.headers['content-type'])) {
    return refused(problem(415, 'ERR_UNSUPPORTED_MEDIA_TYPE', 'send the request body as application/json'));
  }
  const body = await readBody(req, deps.maxBodyBytes, deps.bodyTimeoutMs);
  if (!Buffer.isBuffer(body)) return refused(body);
  const request = readSignRequest(body, client);
  if ('problem' in request) {
    if (request.problem.code === 'ERR_CLAIM_PINNED') return deny(req, res, deps, keySetId, client.name, request);
    return refused(request);
  }
  let token: string;
  try {
    token = await deps.ring.sign(keySetId, request.claims, { ttl: request.ttl });
  } catch (error) {
    const reply = problemOfError(error);
    if (reply.problem.status === 500) {
      deps.logger.error({ err: error, keySetId, client: client.name }, 'signing failed');
      deps.metrics.countSigning(client.name, keySetId, 'failed');
      return sendProblem(req, res, reply);
    }
    return refused(reply);
  }
  deps.metrics.countSigning(client.name, keySetId, 'signed');
  sendSigned(res, token);
}

/** `"iat":…,"exp":…}` at the end of a payload, where the key ring writes them. */
const TIMES_AT_END = /"iat":(\d+),"exp":(\d+)\}$/;

/**
 * A token's iat and exp, from the last 48 bytes of its payload (64 base64url characters, from a
 * 4-character boundary so that they decode alone) where the key ring writes them; the whole payload
 * is parsed only if they are not there.
 */
function timesOf(payload: string): { iat: number; exp: number } {
  const tailStart = Math.max(0, ((payload.length - 64) >> 2) << 2);
  const times = TIMES_AT_END.exec(Buffer.from(payload.slice(tailStart), 'base64url').toString('latin1'));
  if (times !== null) return { iat: Number(times[1]), exp: Number(times[2]) };
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { iat: number; exp: number };
}

/** The kid of each protected header seen: the same few headers (one per key) on every token. */
const kidOfHeader = new Map<string, string>();

/**
 * `{"token","kid","iat","exp"}`, read back from the token the ring signed (what it says is what a
 * verifier sees), written without JSON.stringify: a token holds only base64url characters and dots.
 */
function sendSigned(res: ServerResponse, token: string): void {
  const headerEnd = token.indexOf('.');
  const payloadEnd = token.indexOf('.', headerEnd + 1);
  const header = token.slice(0, headerEnd);
  let kid = kidOfHeader.get(header);
  if (kid === undefined) {
    kid = (JSON.parse(Buffer.from(header, 'base64url').toString('utf8')) as { kid: string }).kid;
    if (kidOfHeader.size > 1_000) kidOfHeader.clear();
    kidOfHeader.set(header, kid);
  }
  const { iat, exp } = timesOf(token.slice(headerEnd + 1, payloadEnd));
  const body = `{"token":"${token}","kid":${JSON.stringify(kid)},"iat":${iat},"exp":${exp}}`;
  res.writeHead(200, [...SIGNED_HEADERS, 'content-length', String(body.length)]);
  res.end(body);
}

async function answerKeySet(
  req: IncomingMessage,
  res: ServerResponse,
  deps: SignerRoutesDependencies,
  keySetId: string,
): Promise<void> {
  req.resume();
  const info = await readKeySetInfo(deps.pool, keySetId, deps.maxTokenTtlCeilingMs);
  if (info === undefined) {
    return sendProblem(
      req,
      res,
      problem(404, 'ERR_KEYSET_NOT_FOUND', `key set "${keySetId}" is not registered`, { keySetId }),
    );
  }
  sendJson(req, res, 200, info);
}

/** A refusal of who the client is or what it may do: counted, audited (summed), and answered. */
function deny(
  req: IncomingMessage,
  res: ServerResponse,
  deps: SignerRoutesDependencies,
  keySetId: string,
  client: string | null,
  reply: ProblemReply,
): void {
  deps.metrics.countDenial(reply.problem.code);
  deps.denials.deny(keySetId, client, reply.problem.code);
  sendProblem(req, res, reply);
}

/**
 * A bearer secret when the request carries one; else the subject of a client certificate the TLS layer
 * verified (only a server with a client CA asks for one).
 */
function authenticate(req: IncomingMessage, clients: ClientRegistry): Authentication {
  const authorization = req.headers.authorization;
  if (authorization !== undefined) {
    const match = /^Bearer +(\S+) *$/i.exec(authorization);
    return match === null ? { outcome: 'unknown' } : clients.authenticateBearer(match[1]);
  }
  const socket = req.socket as Partial<TLSSocket>;
  if (socket.authorized === true && socket.getPeerX509Certificate !== undefined) {
    const certificate = socket.getPeerX509Certificate();
    if (certificate !== undefined) return clients.authenticateCertificate(normaliseSubject(certificate.subject));
  }
  return { outcome: 'unknown' };
}

function problemOfUnauthenticated(authentication: Authentication): ProblemReply {
  const detail =
    authentication.outcome === 'expired'
      ? "the client's credentials have expired: ask an operator for a new client (`keyturn signer client add`)"
      : 'send Authorization: Bearer <the client secret `keyturn signer client add` printed>, or a client certificate mapped to a client';
  return problem(401, 'ERR_UNAUTHENTICATED', detail, { headers: { 'www-authenticate': 'Bearer' } });
}

/** The route of a request target; `?` and what follows are ignored. */
function matchRoute(target: string): Route {
  const end = target.indexOf('?');
  const path = end === -1 ? target : target.slice(0, end);
  if (path === '/healthz') return { name: 'healthz' };
  if (path === '/metrics') return { name: 'metrics' };
  if (!path.startsWith(KEY_SETS_PREFIX)) return { name: 'notFound' };
  const rest = path.slice(KEY_SETS_PREFIX.length);
  const signing = rest.endsWith(SIGN_SUFFIX);
  const id = signing ? rest.slice(0, -SIGN_SUFFIX.length) : rest;
  // An id that passes the pattern holds no `/` or `%`: nothing to decode, no other path to reach.
  if (id.includes('/')) return { name: 'notFound' };
  if (!isKeySetId(id)) return { name: 'badKeySetId' };
  return { name: signing ? 'sign' : 'keySet', keySetId: id };
}

function isJson(contentType: string | undefined): boolean {
  if (contentType === undefined) return false;
  const end = contentType.indexOf(';');
  return (end === -1 ? contentType : contentType.slice(0, end)).trim().toLowerCase() === 'application/json';
}

/**
 * The request body, or the problem it is refused with: 413 past `limit` bytes (declared or sent), 408
 * if it has not all arrived within `timeoutMs`. Either refusal closes the connection.
 */
function readBody(req: IncomingMessage, limit: number, timeoutMs: number): Promise<Buffer | ProblemReply> {
  const tooLarge = () =>
    problem(413, 'ERR_BODY_TOO_LARGE', `the request body exceeds ${limit} bytes`, { headers: { connection: 'close' } });
  if (Number(req.headers['content-length'] ?? 0) > limit) return Promise.resolve(tooLarge());
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (result: Buffer | ProblemReply) => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) finish(tooLarge());
      else chunks.push(chunk);
    };
    const onEnd = () => finish(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks, size));
    const onError = () => finish(problem(400, 'ERR_REQUEST_INVALID', 'the request body could not be read'));
    const timer = setTimeout(
      () =>
        finish(
          problem(408, 'ERR_REQUEST_TIMEOUT', `the request body did not arrive within ${timeoutMs} ms`, {
            headers: { connection: 'close' },
          }),
        ),
      timeoutMs,
    );
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
  });
}

function sendJson(req: IncomingMessage, res: ServerResponse, status: number, value: object): void {
  send(req, res, status, 'application/json', JSON.stringify(value), undefined);
}

function sendProblem(req: IncomingMessage, res: ServerResponse, reply: ProblemReply): void {
  send(req, res, reply.problem.status, PROBLEM_TYPE, JSON.stringify(reply.problem), reply.headers);
}

/**
 * Writes the answer. A request whose body was not read is drained in the background (keep-alive goes
 * on), unless the answer says `connection: close`, after which Node ends the connection itself.
 */
function send(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  type: string,
  body: string,
  headers: OutgoingHttpHeaders | undefined,
): void {
  res.writeHead(status, {
    ...COMMON_HEADERS,
    ...headers,
    'content-type': type,
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
  if (headers?.connection !== 'close' && !req.complete) req.resume();
}
