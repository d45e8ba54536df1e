import { fork, type ChildProcess } from 'node:child_process';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import path from 'node:path';
import autocannon from 'autocannon';
import type { TargetMessage } from './jwks-target';
import { count, mean, ms, ratio } from './stats';
import type { Row } from './table';

const CONNECTIONS = 10;
const WARM_UP_SECONDS = 1;
const DURATION_SECONDS = 5;
/** Headers Node's http server writes by itself on every response: the baseline gets its own. */
const NODE_OWN_HEADERS = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding']);

interface Target {
  url: string;
  stop(): Promise<void>;
}

/** Starts jwks-target.ts in a child process (same tsx loader) and waits for its URL. */
async function startTarget(message: TargetMessage): Promise<Target> {
  const child: ChildProcess = fork(path.join(__dirname, 'jwks-target.ts'), { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (reply: { url: string }) => resolve(reply.url));
    child.once('exit', (code) => reject(new Error(`the ${message.mode} JWKS target exited with ${code} before listening`)));
    child.send(message);
  });
  return {
    url,
    async stop() {
      child.send('stop');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

interface LoadResult {
  requestsPerSecond: number;
  p99: number;
}

async function load(url: string): Promise<LoadResult> {
  await autocannon({ url, connections: CONNECTIONS, duration: WARM_UP_SECONDS });
  const result = await autocannon({ url, connections: CONNECTIONS, duration: DURATION_SECONDS });
  if (result.errors > 0 || result.non2xx > 0 || result.timeouts > 0) {
    throw new Error(`load on ${url}: ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx answers`);
  }
  return { requestsPerSecond: result.requests.total / result.duration, p99: result.latency.p99 };
}

async function measure(message: TargetMessage, route: string): Promise<LoadResult> {
  const target = await startTarget(message);
  try {
    return await load(`${target.url}${route}`);
  } finally {
    await target.stop();
  }
}

/**
 * keyturn's JWKS server against a bare node:http server serving the very bytes and headers keyturn
 * answered with, each in its own process, loaded by autocannon from this one. Order
 * baseline, keyturn, keyturn, baseline, so that a drift of the machine weighs on both alike.
 */
export async function benchJwks(databaseUrl: string, keySetId: string): Promise<Row[]> {
  const route = `/keysets/${keySetId}/jwks.json`;
  const keyturn: TargetMessage = { mode: 'keyturn', databaseUrl };

  // What keyturn answers, to serve it again from the baseline.
  const probe = await startTarget(keyturn);
  let body: Buffer;
  let served: IncomingHttpHeaders;
  try {
    const response = await fetch(`${probe.url}${route}`);
    if (response.status !== 200) throw new Error(`GET ${route} answered ${response.status}`);
    body = Buffer.from(await response.arrayBuffer());
    served = Object.fromEntries(response.headers);
  } finally {
    await probe.stop();
  }
  const kids = (JSON.parse(body.toString('utf8')) as { keys: { kid: string }[] }).keys.length;
  const headers: OutgoingHttpHeaders = Object.fromEntries(Object.entries(served).filter(([name]) => !NODE_OWN_HEADERS.has(name)));
  const baseline: TargetMessage = { mode: 'baseline', body: body.toString('base64'), headers };

  const runs = { keyturn: [] as LoadResult[], baseline: [] as LoadResult[] };
  for (const mode of ['baseline', 'keyturn', 'keyturn', 'baseline'] as const) {
    runs[mode].push(await measure(mode === 'keyturn' ? keyturn : baseline, route));
  }
  const rps = (results: LoadResult[]) => mean(results.map((r) => r.requestsPerSecond));
  const p99 = (results: LoadResult[]) => mean(results.map((r) => r.p99));
  const throughput = rps(runs.keyturn) / rps(runs.baseline);
  return [
    {
      measure: `JWKS GET (${kids} keys, ${body.length} B), ${CONNECTIONS} conns, 2×${DURATION_SECONDS} s: req/s`,
      result: `${count(rps(runs.keyturn))} (runs: ${runs.keyturn.map((r) => count(r.requestsPerSecond)).join(', ')})`,
      reference: `${count(rps(runs.baseline))} bare node:http (runs: ${runs.baseline.map((r) => count(r.requestsPerSecond)).join(', ')})`,
      figure: `${ratio(throughput)}×`,
      target: '≥ 0.90×',
      pass: throughput >= 0.9,
    },
    {
      measure: 'JWKS GET: p99 latency',
      result: ms(p99(runs.keyturn)),
      reference: `${ms(p99(runs.baseline))} (bare node:http)`,
      figure: `${ratio(p99(runs.keyturn) / p99(runs.baseline))}×`,
      target: '–',
      pass: undefined,
    },
  ];
}
