import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import path from 'node:path';
import autocannon from 'autocannon';
import { cpuPinning } from './cpu-pinning';
import type { TargetMessage } from './jwks-target';
import { startTarget, type Target } from './target-process';
import { count, latencyMs, latencyRatio, median, ratio } from './stats';
import type { Row } from './table';

const CONNECTIONS = 10;
const WARM_UP_SECONDS = 1;
const DURATION_SECONDS = 3;
/** Each round loads both servers, the one first in the last round going second in this one. */
const ROUNDS = 4;
/** Headers Node's http server writes by itself on every response: the baseline gets its own. */
const NODE_OWN_HEADERS = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding']);

/** jwks-target.ts as `tsc -p bench/tsconfig.json` (part of `npm run bench`) compiled it. */
const TARGET_SCRIPT = path.join(__dirname, '..', 'dist', 'bench', 'jwks-target.js');

const startJwksTarget = (message: TargetMessage) =>
  startTarget(TARGET_SCRIPT, message, `the ${message.mode} JWKS target`);

interface LoadResult {
  requestsPerSecond: number;
  p99: number;
  /** Server CPU time per request answered, µs: what the server's code costs, whatever else runs. */
  cpuMicrosPerRequest: number;
}

/** The two answers a verifier gets: the JWKS, and 304 to a conditional GET with the ETag it holds. */
type Answer = 'ok' | 'notModified';
const ANSWERS: Record<Answer, { label: string; status: number }> = {
  ok: { label: 'JWKS GET 200', status: 200 },
  notModified: { label: 'JWKS conditional GET 304 (If-None-Match)', status: 304 },
};

/** Loads `url` for DURATION_SECONDS after a warm-up, every response expected to be `status`. */
async function load(target: Target, url: string, headers: Record<string, string>, status: number): Promise<LoadResult> {
  await autocannon({ url, headers, connections: CONNECTIONS, duration: WARM_UP_SECONDS });
  const cpuBefore = await target.cpuMicros();
  const result = await autocannon({ url, headers, connections: CONNECTIONS, duration: DURATION_SECONDS });
  const cpu = (await target.cpuMicros()) - cpuBefore;
  const answered = result[`${String(status)[0]}xx` as '2xx' | '3xx'];
  if (result.errors > 0 || result.timeouts > 0 || answered !== result.requests.total) {
    throw new Error(
      `load on ${url}: ${result.errors} errors, ${result.timeouts} timeouts, ${result.requests.total - answered} answers other than ${status}`,
    );
  }
  return {
    requestsPerSecond: result.requests.total / result.duration,
    p99: result.latency.p99,
    cpuMicrosPerRequest: cpu / result.requests.total,
  };
}

/** One start of a target, loaded with each answer in turn (`first` first). */
async function measure(
  message: TargetMessage,
  route: string,
  etag: string,
  first: Answer,
): Promise<Record<Answer, LoadResult>> {
  const target = await startJwksTarget(message);
  try {
    const url = `${target.url}${route}`;
    const results = {} as Record<Answer, LoadResult>;
    for (const answer of first === 'ok' ? (['ok', 'notModified'] as const) : (['notModified', 'ok'] as const)) {
      results[answer] = await load(
        target,
        url,
        answer === 'ok' ? {} : { 'if-none-match': etag },
        ANSWERS[answer].status,
      );
    }
    return results;
  } finally {
    await target.stop();
  }
}

/** The status and headers keyturn answered `route` with, without those node:http writes by itself, and the body. */
async function probe(
  url: string,
  headers: Record<string, string>,
  status: number,
): Promise<{ headers: OutgoingHttpHeaders; body: Buffer }> {
  const response = await fetch(url, { headers });
  if (response.status !== status) throw new Error(`GET ${url} answered ${response.status}, not ${status}`);
  const served: IncomingHttpHeaders = Object.fromEntries(response.headers);
  return {
    headers: Object.fromEntries(Object.entries(served).filter(([name]) => !NODE_OWN_HEADERS.has(name))),
    body: Buffer.from(await response.arrayBuffer()),
  };
}

/**
 * keyturn's JWKS server against a bare node:http server serving the very bytes and headers keyturn
 * answered with (and 304 to a conditional GET with its ETag, as keyturn does), each in its own process
 * (pinned to a core of its own where possible), loaded by autocannon from this one. `keySetsInDatabase`
 * key sets are in PostgreSQL, each with its JWKS in the server's memory: a request's cost must not
 * depend on them. ROUNDS rounds in the order B K, K B, B K, …, and within each start of a server the
 * 200 and the 304 loads in turns, so that a drift of the machine weighs on both alike; each figure is
 * the median of its runs.
 */
export async function benchJwks(databaseUrl: string, keySetId: string, keySetsInDatabase: number): Promise<Row[]> {
  const route = `/keysets/${keySetId}/jwks.json`;
  const keyturn: TargetMessage = { mode: 'keyturn', databaseUrl };

  // What keyturn answers, to serve it again from the baseline.
  const probed = await startJwksTarget(keyturn);
  let ok: Awaited<ReturnType<typeof probe>>;
  let notModified: Awaited<ReturnType<typeof probe>>;
  try {
    ok = await probe(`${probed.url}${route}`, {}, 200);
    notModified = await probe(`${probed.url}${route}`, { 'if-none-match': String(ok.headers.etag) }, 304);
  } finally {
    await probed.stop();
  }
  const etag = String(ok.headers.etag);
  const kids = (JSON.parse(ok.body.toString('utf8')) as { keys: { kid: string }[] }).keys.length;
  const baseline: TargetMessage = {
    mode: 'baseline',
    body: ok.body.toString('base64'),
    headers: ok.headers,
    etag,
    notModifiedHeaders: notModified.headers,
  };

  const runs = { keyturn: [] as Record<Answer, LoadResult>[], baseline: [] as Record<Answer, LoadResult>[] };
  cpuPinning?.pinSelf();
  try {
    for (let round = 0; round < ROUNDS; round += 1) {
      const order = round % 2 === 0 ? (['baseline', 'keyturn'] as const) : (['keyturn', 'baseline'] as const);
      const first: Answer = Math.floor(round / 2) % 2 === 0 ? 'ok' : 'notModified';
      for (const mode of order)
        runs[mode].push(await measure(mode === 'keyturn' ? keyturn : baseline, route, etag, first));
    }
  } finally {
    cpuPinning?.release();
  }
  const cores = cpuPinning ? 'load generator on CPU 0, server on CPU 1' : 'unpinned';
  return (['ok', 'notModified'] as const).flatMap((answer) => {
    const of = (side: 'keyturn' | 'baseline') => runs[side].map((r) => r[answer]);
    const figure = (results: LoadResult[], field: keyof LoadResult) => median(results.map((r) => r[field]));
    const listed = (results: LoadResult[]) => results.map((r) => count(r.requestsPerSecond)).join(', ');
    const [k, b] = [of('keyturn'), of('baseline')];
    const throughput = figure(k, 'requestsPerSecond') / figure(b, 'requestsPerSecond');
    const cpuRatio = figure(b, 'cpuMicrosPerRequest') / figure(k, 'cpuMicrosPerRequest');
    const { label } = ANSWERS[answer];
    return [
      {
        measure:
          `${label} (${kids} keys, ${answer === 'ok' ? `${ok.body.length} B` : 'no body'}; ${count(keySetsInDatabase)} key sets in PostgreSQL), ` +
          `${CONNECTIONS} conns, ${ROUNDS}×${DURATION_SECONDS} s, ${cores}: req/s`,
        result: `${count(figure(k, 'requestsPerSecond'))} (runs: ${listed(k)})`,
        reference: `${count(figure(b, 'requestsPerSecond'))} bare node:http (runs: ${listed(b)})`,
        figure: `${ratio(throughput)}×`,
        target: '≥ 0.90×',
        pass: throughput >= 0.9,
      },
      {
        measure: `${label}: p99 latency`,
        result: latencyMs(figure(k, 'p99')),
        reference: `${latencyMs(figure(b, 'p99'))} (bare node:http)`,
        figure: latencyRatio(figure(k, 'p99'), figure(b, 'p99')),
        target: '–',
        pass: undefined,
      },
      {
        measure: `${label}: server CPU time per request`,
        result: `${figure(k, 'cpuMicrosPerRequest').toFixed(1)} µs`,
        reference: `${figure(b, 'cpuMicrosPerRequest').toFixed(1)} µs (bare node:http)`,
        figure: `${ratio(cpuRatio)}× the baseline's requests per CPU second`,
        target: '≥ 1.00×',
        pass: cpuRatio >= 1,
      },
    ];
  });
}
