import { fork, type ChildProcess } from 'node:child_process';
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import path from 'node:path';
import autocannon from 'autocannon';
import { cpuPinning } from './cpu-pinning';
import type { TargetMessage, TargetRequest } from './jwks-target';
import { count, median, ms, ratio } from './stats';
import type { Row } from './table';

const CONNECTIONS = 10;
const WARM_UP_SECONDS = 1;
const DURATION_SECONDS = 3;
/** Each round loads both servers, the one first in the last round going second in this one. */
const ROUNDS = 4;
/** Headers Node's http server writes by itself on every response: the baseline gets its own. */
const NODE_OWN_HEADERS = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding']);

interface Target {
  url: string;
  /** CPU time the server process has used so far, in µs. */
  cpuMicros(): Promise<number>;
  stop(): Promise<void>;
}

/** jwks-target.ts as `tsc -p bench/tsconfig.json` (part of `npm run bench`) compiled it. */
const TARGET_SCRIPT = path.join(__dirname, '..', 'dist', 'bench', 'jwks-target.js');

/** Starts the compiled jwks-target in a child process (plain node, no tsx) and waits for its URL. */
async function startTarget(message: TargetMessage): Promise<Target> {
  const child: ChildProcess = fork(TARGET_SCRIPT, { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  cpuPinning?.pinServer(child.pid!);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    child.once('message', (reply: { url: string }) => resolve(reply.url));
    child.once('exit', (code) => reject(new Error(`the ${message.mode} JWKS target exited with ${code} before listening`)));
    child.send(message);
  });
  const ask = (request: TargetRequest) => child.send(request);
  return {
    url,
    cpuMicros: () =>
      new Promise<number>((resolve) => {
        child.once('message', (reply: { cpuMicros: number }) => resolve(reply.cpuMicros));
        ask('cpu');
      }),
    async stop() {
      ask('stop');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

interface LoadResult {
  requestsPerSecond: number;
  p99: number;
  /** Server CPU time per request answered, µs: what the server's code costs, whatever else runs. */
  cpuMicrosPerRequest: number;
}

async function measure(message: TargetMessage, route: string): Promise<LoadResult> {
  const target = await startTarget(message);
  try {
    const url = `${target.url}${route}`;
    await autocannon({ url, connections: CONNECTIONS, duration: WARM_UP_SECONDS });
    const cpuBefore = await target.cpuMicros();
    const result = await autocannon({ url, connections: CONNECTIONS, duration: DURATION_SECONDS });
    const cpu = (await target.cpuMicros()) - cpuBefore;
    if (result.errors > 0 || result.non2xx > 0 || result.timeouts > 0) {
      throw new Error(`load on ${url}: ${result.errors} errors, ${result.timeouts} timeouts, ${result.non2xx} non-2xx answers`);
    }
    return {
      requestsPerSecond: result.requests.total / result.duration,
      p99: result.latency.p99,
      cpuMicrosPerRequest: cpu / result.requests.total,
    };
  } finally {
    await target.stop();
  }
}

/**
 * keyturn's JWKS server against a bare node:http server serving the very bytes and headers keyturn
 * answered with, each in its own process (pinned to a core of its own where possible), loaded by
 * autocannon from this one. ROUNDS rounds in the order B K, K B, B K, …, so that a drift of the
 * machine weighs on both alike; each side's figure is the median of its runs.
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
  cpuPinning?.pinSelf();
  try {
    for (let round = 0; round < ROUNDS; round += 1) {
      const order = round % 2 === 0 ? (['baseline', 'keyturn'] as const) : (['keyturn', 'baseline'] as const);
      for (const mode of order) runs[mode].push(await measure(mode === 'keyturn' ? keyturn : baseline, route));
    }
  } finally {
    cpuPinning?.release();
  }
  const figure = (results: LoadResult[], of: keyof LoadResult) => median(results.map((r) => r[of]));
  const listed = (results: LoadResult[]) => results.map((r) => count(r.requestsPerSecond)).join(', ');
  const throughput = figure(runs.keyturn, 'requestsPerSecond') / figure(runs.baseline, 'requestsPerSecond');
  const cores = cpuPinning ? 'load generator on CPU 0, server on CPU 1' : 'unpinned';
  return [
    {
      measure: `JWKS GET (${kids} keys, ${body.length} B), ${CONNECTIONS} conns, ${ROUNDS}×${DURATION_SECONDS} s, ${cores}: req/s`,
      result: `${count(figure(runs.keyturn, 'requestsPerSecond'))} (runs: ${listed(runs.keyturn)})`,
      reference: `${count(figure(runs.baseline, 'requestsPerSecond'))} bare node:http (runs: ${listed(runs.baseline)})`,
      figure: `${ratio(throughput)}×`,
      target: '≥ 0.90×',
      pass: throughput >= 0.9,
    },
    {
      measure: 'JWKS GET: p99 latency',
      result: ms(figure(runs.keyturn, 'p99')),
      reference: `${ms(figure(runs.baseline, 'p99'))} (bare node:http)`,
      figure: `${ratio(figure(runs.keyturn, 'p99') / figure(runs.baseline, 'p99'))}×`,
      target: '–',
      pass: undefined,
    },
    {
      measure: 'JWKS GET: server CPU time per request',
      result: `${figure(runs.keyturn, 'cpuMicrosPerRequest').toFixed(1)} µs`,
      reference: `${figure(runs.baseline, 'cpuMicrosPerRequest').toFixed(1)} µs (bare node:http)`,
      figure: `${ratio(figure(runs.baseline, 'cpuMicrosPerRequest') / figure(runs.keyturn, 'cpuMicrosPerRequest'))}× the baseline's requests per CPU second`,
      target: '–',
      pass: undefined,
    },
  ];
}
