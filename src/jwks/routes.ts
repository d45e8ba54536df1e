import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Registry } from 'prom-client';
import { roughDuration } from '../domain/describe';
import { formatDuration } from '../domain/duration';
import { keySetIssuer } from '../domain/issuer';
import { isKeySetId, KEY_SET_ID_RULE } from '../domain/key-set-id';
import type { Logger } from '../logger';
import type { CachedJwks, JwksCache } from './jwks-cache';
import { KEY_SET_LABEL, type JwksMetrics, type JwksRouteName } from './metrics';

/** Longer request targets get 414: no route is anywhere near this long. */
const MAX_TARGET_LENGTH = 1024;

const ALLOWED_METHODS = 'GET, HEAD';

export interface JwksRoutesDependencies {
  cache: JwksCache;
  metrics: JwksMetrics;
  registry: Registry;
  logger: Logger;
  /** The key set behind `/.well-known/jwks.json` and `/.well-known/openid-configuration`. */
  defaultKeySetId: string;
  /** The issuer of key sets whose policy names none; by default their discovery document's base URL (keySetIssuer). */
  issuer?: string;
  /** The absolute URL verifiers reach this server at, without a trailing slash (known once listening). */
  publicUrl(): string;
  /** How old the server's view of the keys is; for /readyz. */
  freshness(): JwksFreshness;
}

/** How old the server's view of the keys is, in milliseconds: 0 while known current. */
export interface JwksFreshness {
  /** Since the server last heard from PostgreSQL (a check that read every key set's version). */
  databaseAgeMs: number;
  /** Each key set's JWKS in memory: its age (older than the database's while its rebuild fails) and its staleness limit, the policy's jwksMaxAge. */
  keySets: { keySetId: string; ageMs: number; limitMs: number }[];
}

type Route =
  | { name: 'jwks'; keySetId: string }
  | { name: 'discovery'; keySetId: string; wellKnown: boolean }
  | { name: 'healthz' | 'readyz' | 'metrics' };

type Refusal = { status: 400 | 404 | 414; error: string };

/** A request's answer before it is written: the status, headers and body. */
interface Reply {
  status: number;
  headers: OutgoingHttpHeaders;
  body?: string | Buffer;
  keySet: string;
}

const JSON_TYPE = 'application/json';
const COMMON_HEADERS = { 'x-content-type-options': 'nosniff' } as const;
// Public keys and discovery are meant to be fetched from anywhere, browsers included.
const PUBLIC_HEADERS = { ...COMMON_HEADERS, 'access-control-allow-origin': '*' } as const;

/**
 * The JWKS server's request handler: GET and HEAD of the JWKS and discovery documents (per key set
 * and for the default one), /healthz, /readyz and /metrics. Every response is JSON but /metrics'; no
 * error answer quotes more of the request than a valid key set id, and none carries key material.
 */
export function createJwksRequestHandler(
  deps: JwksRoutesDependencies,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const exchange: Exchange = {
      res,
      head: req.method === 'HEAD',
      route: 'other',
      started: performance.now(),
      deps,
    };
    // No route takes a body. A request with one is answered as usual, but its connection closes after
    // the answer instead of reading the rest: a client cannot make the server take in megabytes for nothing.
    if (carriesBody(req)) res.setHeader('connection', 'close');
    req.resume();
    try {
      if (req.method !== 'GET' && !exchange.head) {
        send(exchange, jsonReply(405, { error: 'method not allowed' }, KEY_SET_LABEL.none, { allow: ALLOWED_METHODS }));
        return;
      }
      const route = matchRoute(req.url ?? '', deps.defaultKeySetId);
      if ('status' in route) {
        send(exchange, jsonReply(route.status, { error: route.error }, KEY_SET_LABEL.none));
        return;
      }
      exchange.route = route.name;
      const reply = answer(route, req, deps);
      if (reply instanceof Promise) {
        reply.then(
          (r) => send(exchange, r),
          (error: unknown) => fail(exchange, error),
        );
      } else {
        send(exchange, reply);
      }
    } catch (error) {
      fail(exchange, error);
    }
  };
}

function carriesBody(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || Number(req.headers['content-length'] ?? 0) > 0;
}

/** One request on its way to an answer. Plain data: the hot path allocates no closures per request. */
interface Exchange {
  res: ServerResponse;
  head: boolean;
  route: JwksRouteName;
  /** performance.now() when the request came in: a double, where hrtime.bigint() would allocate a BigInt at each end. */
  started: number;
  deps: JwksRoutesDependencies;
}

function send(exchange: Exchange, reply: Reply): void {
  const { res } = exchange;
  res.writeHead(reply.status, reply.headers);
  res.end(exchange.head ? undefined : reply.body);
  const seconds = (performance.now() - exchange.started) / 1000;
  exchange.deps.metrics.observe(exchange.route, reply.keySet, reply.status, seconds);
}

/** Never throws: an exception escaping a request listener would take the whole server down. */
function fail(exchange: Exchange, error: unknown): void {
  exchange.deps.logger.error({ err: error, route: exchange.route }, 'JWKS server request failed');
  try {
    if (!exchange.res.headersSent)
      return send(exchange, jsonReply(500, { error: 'internal error' }, KEY_SET_LABEL.none));
  } catch {
    // Nothing more can be said on this response.
  }
  exchange.res.destroy();
}

/** Synchronous when the answer is in memory (the hot path); a Promise when it needs a look-up. */
function answer(route: Route, req: IncomingMessage, deps: JwksRoutesDependencies): Reply | Promise<Reply> {
  switch (route.name) {
    case 'healthz':
      return jsonReply(200, { status: 'ok' }, KEY_SET_LABEL.none);
    case 'readyz':
      return readiness(deps);
    case 'metrics':
      return deps.registry.metrics().then((text) => ({
        status: 200,
        headers: { ...COMMON_HEADERS, 'content-type': deps.registry.contentType, 'cache-control': 'no-store' },
        body: text,
        keySet: KEY_SET_LABEL.none,
      }));
    case 'jwks':
    case 'discovery': {
      // In memory: answered at once, with no closure or promise made for it.
      const cached = deps.cache.peek(route.keySetId);
      if (cached !== undefined) return keySetReply(route, cached, req, deps);
      return deps.cache.lookup(route.keySetId).then(
        (jwks) => keySetReply(route, jwks, req, deps),
        (error: unknown) => {
          deps.logger.warn({ err: error, keySetId: route.keySetId }, 'cannot look up a key set');
          return jsonReply(
            503,
            { error: 'key set unavailable, try again', keySetId: route.keySetId },
            KEY_SET_LABEL.unknown,
            {
              'retry-after': '1',
            },
          );
        },
      );
    }
  }
}

/** A key set's JWKS or discovery document, or 404 for a key set found nowhere. */
function keySetReply(
  route: Extract<Route, { keySetId: string }>,
  jwks: CachedJwks | undefined,
  req: IncomingMessage,
  deps: JwksRoutesDependencies,
): Reply {
  if (jwks === undefined)
    return jsonReply(404, { error: 'key set not found', keySetId: route.keySetId }, KEY_SET_LABEL.unknown);
  return route.name === 'jwks'
    ? jwksReply(jwks, req.headers['if-none-match'])
    : discoveryReply(jwks, route.wellKnown, deps);
}

/** The two answers a JWKS can get, built once per JWKS: the hot path only picks one. */
const jwksReplies = new WeakMap<CachedJwks, { ok: Reply; notModified: Reply }>();

function jwksReply(jwks: CachedJwks, ifNoneMatch: string | undefined): Reply {
  let replies = jwksReplies.get(jwks);
  if (replies === undefined) {
    const headers = { ...PUBLIC_HEADERS, etag: jwks.etag, 'cache-control': jwks.cacheControl };
    replies = {
      ok: {
        status: 200,
        headers: { ...headers, 'content-type': JSON_TYPE, 'content-length': jwks.body.length },
        body: jwks.body,
        keySet: jwks.keySetId,
      },
      notModified: { status: 304, headers, keySet: jwks.keySetId },
    };
    jwksReplies.set(jwks, replies);
  }
  if (ifNoneMatch === undefined) return replies.ok;
  // What a caching verifier sends back: its ETag as it got it, matched without parsing the header.
  if (ifNoneMatch === jwks.etag) return replies.notModified;
  return etagMatches(ifNoneMatch, jwks.etag) ? replies.notModified : replies.ok;
}

/**
 * A minimal OpenID discovery document. Its issuer is the one the key ring puts in the key set's
 * tokens (keySetIssuer): without one from the policy or the deployment, the URL the key set's document
 * sits under, as OpenID Discovery expects of it.
 */
function discoveryReply(jwks: CachedJwks, wellKnown: boolean, deps: JwksRoutesDependencies): Reply {
  const base = deps.publicUrl();
  const keySetBase = wellKnown ? base : `${base}/keysets/${encodeURIComponent(jwks.keySetId)}`;
  const document = {
    issuer: keySetIssuer(jwks.keySetId, jwks.issuer, {
      issuer: deps.issuer,
      publicUrl: base,
      defaultKeySetId: deps.defaultKeySetId,
    }),
    jwks_uri: `${keySetBase}${wellKnown ? '/.well-known' : ''}/jwks.json`,
    id_token_signing_alg_values_supported: jwks.algorithms,
  };
  return jsonReply(200, document, jwks.keySetId, { ...PUBLIC_HEADERS, 'cache-control': jwks.cacheControl });
}

/**
 * Ready once every key set has a JWKS, for as long as the server has heard from PostgreSQL within each
 * key set's jwksMaxAge (verifiers' caches may be that old anyway): a database outage shorter than that
 * is served through from memory, and does not take the JWKS offline behind a load balancer. A key set
 * whose rebuild fails is warned about, not made a reason: one broken key set must not take the others
 * offline.
 */
function readiness(deps: JwksRoutesDependencies): Reply {
  if (!deps.cache.loaded)
    return jsonReply(503, { status: 'not ready', reasons: ['key sets not loaded yet'] }, KEY_SET_LABEL.none);
  const { databaseAgeMs, keySets } = deps.freshness();
  const lastHeard = `PostgreSQL last confirmed the keys ${roughDuration(databaseAgeMs)} ago`;
  const stale = keySets.filter((k) => databaseAgeMs > k.limitMs);
  if (stale.length > 0) {
    const reasons = stale.map(
      (k) => `key set "${k.keySetId}": ${lastHeard}, longer than its jwksMaxAge ${formatDuration(k.limitMs)}`,
    );
    return jsonReply(503, { status: 'not ready', reasons }, KEY_SET_LABEL.none);
  }
  const warnings = [
    ...(databaseAgeMs > 0
      ? [`${lastHeard}: serving the JWKS from memory (ready while within each key set's jwksMaxAge)`]
      : []),
    ...keySets
      .filter((k) => k.ageMs > databaseAgeMs)
      .map(
        (k) =>
          `key set "${k.keySetId}": its JWKS could not be rebuilt for ${roughDuration(k.ageMs)}: serving the last one built`,
      ),
  ];
  return jsonReply(
    200,
    warnings.length === 0 ? { status: 'ready' } : { status: 'ready', warnings },
    KEY_SET_LABEL.none,
  );
}

function jsonReply(status: number, value: object, keySet: string, extraHeaders: OutgoingHttpHeaders = {}): Reply {
  const body = JSON.stringify(value);
  return {
    status,
    headers: {
      ...COMMON_HEADERS,
      'cache-control': 'no-store',
      ...extraHeaders,
      'content-type': JSON_TYPE,
      'content-length': Buffer.byteLength(body),
    },
    body,
    keySet,
  };
}

/**
 * The route of a request target, or why it has none. Segments are percent-decoded one by one, so an
 * encoded `/` or `..` stays inside its segment and then fails the key set id pattern: nothing here
 * touches a file system, and an id is a database key only after it passed the pattern.
 */
function matchRoute(target: string, defaultKeySetId: string): Route | Refusal {
  if (target.length > MAX_TARGET_LENGTH) return { status: 414, error: 'request target too long' };
  // The hot path, a key set's JWKS, without splitting or decoding: an id that passes the pattern holds
  // no `/`, `%`, `?` or `#`, so this matches exactly what the general path below would.
  if (target.startsWith(KEY_SET_JWKS_PREFIX) && target.endsWith(KEY_SET_JWKS_SUFFIX)) {
    const keySetId = target.slice(KEY_SET_JWKS_PREFIX.length, -KEY_SET_JWKS_SUFFIX.length);
    if (isKeySetId(keySetId)) return { name: 'jwks', keySetId };
  }
  const end = target.search(/[?#]/);
  let path = end === -1 ? target : target.slice(0, end);
  if (!path.startsWith('/')) {
    // HTTP/1.1 servers must accept the absolute form (`GET http://host/path`); `*` and the rest are refused.
    const absolute = URL.canParse(path) ? new URL(path) : undefined;
    if (absolute === undefined || !['http:', 'https:'].includes(absolute.protocol)) {
      return { status: 400, error: 'malformed request target' };
    }
    path = absolute.pathname;
  }
  let segments: string[];
  try {
    segments = path.split('/').slice(1).map(decodeURIComponent);
  } catch {
    return { status: 400, error: 'malformed percent-encoding in the path' };
  }
  const [first, second, third, fourth] = segments;
  switch (segments.length) {
    case 1:
      if (first === 'healthz' || first === 'readyz' || first === 'metrics') return { name: first };
      break;
    case 2:
      if (first === '.well-known' && second === 'jwks.json') return { name: 'jwks', keySetId: defaultKeySetId };
      if (first === '.well-known' && second === 'openid-configuration') {
        return { name: 'discovery', keySetId: defaultKeySetId, wellKnown: true };
      }
      break;
    case 3:
      if (first === 'keysets' && third === 'jwks.json') return withKeySet(second, { name: 'jwks', keySetId: second });
      break;
    case 4:
      if (first === 'keysets' && third === '.well-known' && fourth === 'openid-configuration') {
        return withKeySet(second, { name: 'discovery', keySetId: second, wellKnown: false });
      }
      break;
  }
  return { status: 404, error: 'not found' };
}

const KEY_SET_JWKS_PREFIX = '/keysets/';
const KEY_SET_JWKS_SUFFIX = '/jwks.json';

/** An id that is no key set id is refused before any look-up. */
function withKeySet(keySetId: string, route: Route): Route | Refusal {
  return isKeySetId(keySetId) ? route : { status: 400, error: `invalid key set id: use ${KEY_SET_ID_RULE}` };
}

/** If-None-Match uses the weak comparison (RFC 9110 §13.1.2): `W/` prefixes are ignored; `*` matches. */
function etagMatches(header: string, etag: string): boolean {
  if (header.trim() === '*') return true;
  return header.split(',').some((candidate) => {
    const tag = candidate.trim();
    return (tag.startsWith('W/') ? tag.slice(2) : tag) === etag;
  });
}
