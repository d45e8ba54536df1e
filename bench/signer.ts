import { randomBytes } from 'node:crypto';
import path from 'node:path';
import autocannon from 'autocannon';
import { parseKekRing } from '../src/crypto/kek';
import type { SigningAlgorithm } from '../src/domain/algorithms';
import { KeyStore } from '../src/store/key-store';
import { openActiveKey } from '../test/helpers/sealed-keys';
import { KeySetDriver, testPolicy } from '../test/helpers/key-sets';
import { createTestDatabase } from '../test/helpers/postgres';
import { addClient } from '../test/helpers/signer';
import { cpuPinning } from './cpu-pinning';
import type { SignerTargetMessage } from './signer-target';
import { count, latencyMs, latencyRatio, median, ratio } from './stats';
import type { Row } from './table';
import { startTarget, type Target } from './target-process';

const ALGORITHMS: SigningAlgorithm[] = ['ES256', 'EdDSA', 'RS256'];
const CONNECTIONS = 10;
const WARM_UP_SECONDS = 1;
const DURATION_SECONDS = 3;
/**
 * Rounds in the order B K, K B, …: a drift of the machine weighs on both alike. Each ratio is the median
 * of the rounds' own (K against the B next to it); on a shared machine one start of a server may run a
 * fifth faster or slower than the next, so there are enough rounds for the median to hold.
 */
const ROUNDS = 8;
const ISSUER = 'https://issuer.example';
/** What a login system asks for: a subject, an audience, a scope; 5 minutes. */
const REQUEST_BODY = JSON.stringify({ claims: { sub: 'user-1234', aud: 'api', scope: 'read write' }, ttl: '5m' });

/** signer-target.ts as `tsc -p bench/tsconfig.json` (part of `npm run bench`) compiled it. */
const TARGET_SCRIPT = path.join(__dirname, '..', 'dist', 'bench', 'signer-target.js');

interface LoadResult {
  requestsPerSecond: number;
  p99: number;
  cpuMicrosPerRequest: number;
}

/** POSTs the signing request over keep-alive connections for DURATION_SECONDS after a warm-up; every answer must be 200. */
async function load(target: Target, url: string, headers: Record<string, string>): Promise<LoadResult> {
  const options = { url, method: 'POST' as const, headers, body: REQUEST_BODY, connections: CONNECTIONS };
  await autocannon({ ...options, duration: WARM_UP_SECONDS });
  const cpuBefore = await target.cpuMicros();
  const result = await autocannon({ ...options, duration: DURATION_SECONDS });
  const cpu = (await target.cpuMicros()) - cpuBefore;
  if (result.errors > 0 || result.timeouts > 0 || result['2xx'] !== result.requests.total) {
    throw new Error(
      `load on ${url}: ${result.errors} errors, ${result.timeouts} timeouts, ${result.requests.total - result['2xx']} answers other than 200`,
    );
  }
  return {
    requestsPerSecond: result.requests.total / result.duration,
    p99: result.latency.p99,
    cpuMicrosPerRequest: cpu / result.requests.total,
  };
}

async function measure(message: SignerTargetMessage, route: string, headers: Record<string, string>) {
  const target = await startTarget(TARGET_SCRIPT, message, `the ${message.mode} signer target`);
  try {
    return await load(target, `${target.url}${route}`, headers);
  } finally {
    await target.stop();
  }
}

/**
 * `keyturn signer` against a bare node:http server that parses the same JSON and signs it with
 * crypto.sign and the same key, each in a process of its own (pinned to a core of its own where
 * possible), loaded by autocannon over keep-alive connections from this one, for ES256, EdDSA and RS256.
 * keyturn's side authenticates a bearer secret, checks the client's key set, rate and the claims, and
 * counts the signing; the baseline does none of it.
 */
export async function benchSigner(): Promise<Row[]> {
  const db = await createTestDatabase();
  try {
    const kek = randomBytes(32).toString('base64');
    const kekRing = parseKekRing(kek);
    const store = new KeyStore(db.pool, kekRing);
    const rows: Row[] = [];
    for (const alg of ALGORITHMS) {
      const keySet = await KeySetDriver.register(store, `bench-signer-${alg.toLowerCase()}`, {
        ...testPolicy(alg),
        issuer: ISSUER,
      });
      await keySet.rotate();
      const secret = await addClient(db.pool, {
        name: `bench-${alg.toLowerCase()}`,
        keySetIds: [keySet.keySetId],
        rate: { perSecond: 1_000_000, burst: 1_000_000 },
      });
      const active = (await openActiveKey(db.pool, kekRing, keySet.keySetId))!;
      const keyturn: SignerTargetMessage = { mode: 'keyturn', databaseUrl: db.url, kek, issuer: ISSUER };
      const baseline: SignerTargetMessage = { mode: 'baseline', alg, kid: active.kid, privateJwk: active.privateJwk };
      const route = `/v1/keysets/${keySet.keySetId}/sign`;
      const headers = { 'content-type': 'application/json', authorization: `Bearer ${secret}` };

      const runs = { keyturn: [] as LoadResult[], baseline: [] as LoadResult[] };
      cpuPinning?.pinSelf();
      try {
        for (let round = 0; round < ROUNDS; round += 1) {
          const order = round % 2 === 0 ? (['baseline', 'keyturn'] as const) : (['keyturn', 'baseline'] as const);
          for (const mode of order)
            runs[mode].push(await measure(mode === 'keyturn' ? keyturn : baseline, route, headers));
        }
      } finally {
        cpuPinning?.release();
      }
      rows.push(...signerRows(alg, runs));
    }
    return rows;
  } finally {
    await db.drop();
  }
}

function signerRows(alg: SigningAlgorithm, runs: { keyturn: LoadResult[]; baseline: LoadResult[] }): Row[] {
  const figure = (results: LoadResult[], field: keyof LoadResult) => median(results.map((r) => r[field]));
  const listed = (results: LoadResult[]) => results.map((r) => count(r.requestsPerSecond)).join(', ');
  const { keyturn: k, baseline: b } = runs;
  const perRound = (field: keyof LoadResult) => k.map((run, round) => run[field] / b[round][field]);
  const throughput = median(perRound('requestsPerSecond'));
  const cores = cpuPinning ? 'load generator on CPU 0, server on CPU 1' : 'unpinned';
  const label = `signer POST /v1/keysets/{id}/sign ${alg}`;
  return [
    {
      measure: `${label}, keep-alive, ${CONNECTIONS} conns, ${ROUNDS}×${DURATION_SECONDS} s, ${cores}: req/s`,
      result: `${count(figure(k, 'requestsPerSecond'))} (runs: ${listed(k)})`,
      reference: `${count(figure(b, 'requestsPerSecond'))} bare node:http + crypto.sign (runs: ${listed(b)})`,
      figure: `${ratio(throughput)}×`,
      target: '≥ 0.80×',
      pass: throughput >= 0.8,
    },
    {
      measure: `${label}: p99 latency`,
      result: latencyMs(figure(k, 'p99')),
      reference: `${latencyMs(figure(b, 'p99'))} (bare node:http + crypto.sign)`,
      figure: latencyRatio(figure(k, 'p99'), figure(b, 'p99')),
      target: '–',
      pass: undefined,
    },
    {
      measure: `${label}: server CPU time per request`,
      result: `${figure(k, 'cpuMicrosPerRequest').toFixed(1)} µs`,
      reference: `${figure(b, 'cpuMicrosPerRequest').toFixed(1)} µs (bare node:http + crypto.sign)`,
      figure: `${ratio(median(perRound('cpuMicrosPerRequest').map((more) => 1 / more)))}×`,
      target: '–',
      pass: undefined,
    },
  ];
}
