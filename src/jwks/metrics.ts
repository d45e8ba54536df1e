import { Counter, type Metric, type Registry } from 'prom-client';
import { reportsEveryKeySet } from '../observability/metrics';

/** What a request was for; the latency histogram's only label, so its series stay few. */
export type JwksRouteName = 'jwks' | 'discovery' | 'healthz' | 'readyz' | 'metrics' | 'other';

/**
 * `key_set` label values (where every key set is reported) that are not key set ids (parentheses are
 * outside the id alphabet, so they cannot collide with one). Ids nobody registered are counted as
 * `(unknown)`: a label per made-up id would let anyone grow the metrics without bound.
 */
export const KEY_SET_LABEL = { unknown: '(unknown)', none: '(none)' } as const;

export interface JwksMetrics {
  /** Counts one answered request and observes how long it took. */
  observe(route: JwksRouteName, keySet: string, code: number, seconds: number): void;
  /**
   * Counts the stored keys a rebuild of a key set's JWKS left out because their kid is not the
   * thumbprint of their public key; called with 0 too, so that the series exists before its first increase.
   */
  keysRefused(keySet: string, count: number): void;
}

// Serving from memory takes microseconds; the upper buckets catch database look-ups and a busy event loop.
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

const DURATION_NAME = 'keyturn_jwks_request_duration_seconds';

/** Requests answered with one status code (for one key set, when every key set is reported), and how many of them prom-client has been told of. */
interface Tally {
  labels: { code: string; key_set?: string };
  count: number;
  reported: number;
}

/** One route's latency histogram: per-bucket counts (the last bucket is +Inf), their sum and count. */
interface RouteLatency {
  buckets: number[];
  sum: number;
  count: number;
}

/**
 * What the JWKS server counts, in plain numbers: prom-client's labelled inc() and observe() validate
 * and hash the labels on every call, a measurable share of a request served from memory. The
 * counter is handed its increments when scraped; the histogram is rendered from these numbers.
 */
class RequestStats implements JwksMetrics {
  /**
   * By key set, then status code: the key set id is a string the cache already holds, the code a
   * number. Only one entry, under ALL_KEY_SETS, unless every key set is reported.
   */
  readonly tallies = new Map<string, Map<number, Tally>>();
  readonly latencies = new Map<JwksRouteName, RouteLatency>();

  constructor(
    private readonly refusedKeys: Counter,
    private readonly everyKeySet: boolean,
  ) {}

  keysRefused(keySet: string, count: number): void {
    this.refusedKeys.inc(this.everyKeySet ? { key_set: keySet } : {}, count);
  }

  observe(route: JwksRouteName, keySet: string, code: number, seconds: number): void {
    const tallyKey = this.everyKeySet ? keySet : ALL_KEY_SETS;
    let byCode = this.tallies.get(tallyKey);
    if (byCode === undefined) this.tallies.set(tallyKey, (byCode = new Map()));
    let tally = byCode.get(code);
    if (tally === undefined) {
      const labels = this.everyKeySet ? { key_set: keySet, code: String(code) } : { code: String(code) };
      byCode.set(code, (tally = { labels, count: 0, reported: 0 }));
    }
    tally.count += 1;

    let latency = this.latencies.get(route);
    if (latency === undefined)
      this.latencies.set(
        route,
        (latency = { buckets: new Array<number>(LATENCY_BUCKETS.length + 1).fill(0), sum: 0, count: 0 }),
      );
    let bucket = 0;
    while (bucket < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[bucket]) bucket += 1;
    latency.buckets[bucket] += 1;
    latency.sum += seconds;
    latency.count += 1;
  }
}

/** The tallies' one key when requests are counted over every key set. */
const ALL_KEY_SETS = '';

/**
 * `keyturn_jwks_request_duration_seconds{route}` as prom-client renders a histogram (cumulative
 * `_bucket{le}` series, `_sum`, `_count`), read from RequestStats when scraped.
 */
function latencyHistogram(stats: RequestStats) {
  return {
    name: DURATION_NAME,
    help: 'Time from a request to its response being handed to the socket, by route',
    type: 'histogram',
    aggregator: 'sum',
    async get() {
      const values = [...stats.latencies].flatMap(([route, latency]) => {
        let cumulative = 0;
        const buckets = latency.buckets.map((count, i) => {
          cumulative += count;
          const le = i < LATENCY_BUCKETS.length ? LATENCY_BUCKETS[i] : '+Inf';
          return { metricName: `${DURATION_NAME}_bucket`, labels: { le, route }, value: cumulative };
        });
        return [
          ...buckets,
          { metricName: `${DURATION_NAME}_sum`, labels: { route }, value: latency.sum },
          { metricName: `${DURATION_NAME}_count`, labels: { route }, value: latency.count },
        ];
      });
      return { name: DURATION_NAME, help: this.help, type: 'histogram', values, aggregator: 'sum' };
    },
    reset() {
      stats.latencies.clear();
    },
  };
}

/** Each registry's stats, shared by every JWKS server that counts into it. */
const statsByRegistry = new WeakMap<Registry, RequestStats>();

/**
 * `keyturn_jwks_requests_total{code}`, `keyturn_jwks_request_duration_seconds{route}` and
 * `keyturn_jwks_refused_keys_total` in `registry`, with a `key_set` label on the first and the last
 * where the registry reports every key set (KEYTURN_METRICS_PER_KEY_SET); shared when the registry
 * already has them (two servers, one registry).
 */
export function createJwksMetrics(registry: Registry): JwksMetrics {
  let stats = statsByRegistry.get(registry);
  if (stats === undefined) {
    const everyKeySet = reportsEveryKeySet(registry);
    const ownStats = new RequestStats(
      new Counter({
        name: 'keyturn_jwks_refused_keys_total',
        help:
          'Stored keys left out of a JWKS because their kid is not the RFC 7638 thumbprint of their public key (once per rebuild of the JWKS)' +
          (everyKeySet ? ', by key set' : ''),
        labelNames: everyKeySet ? ['key_set'] : [],
        registers: [registry],
      }),
      everyKeySet,
    );
    stats = ownStats;
    statsByRegistry.set(registry, ownStats);
    new Counter({
      name: 'keyturn_jwks_requests_total',
      help: everyKeySet
        ? 'Requests answered by the JWKS server, by key set and HTTP status code'
        : 'Requests answered by the JWKS server, by HTTP status code',
      labelNames: everyKeySet ? ['key_set', 'code'] : ['code'],
      registers: [registry],
      collect() {
        for (const byCode of ownStats.tallies.values()) {
          for (const tally of byCode.values()) {
            this.inc(tally.labels, tally.count - tally.reported);
            tally.reported = tally.count;
          }
        }
      },
    });
    // A collector of our own rather than a prom-client Histogram, which has no way to take counts in bulk.
    registry.registerMetric(latencyHistogram(ownStats) as unknown as Metric);
  }
  return stats;
}
