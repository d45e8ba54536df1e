import { Counter, Histogram, type Registry } from 'prom-client';

/** What a request was for; the latency histogram's only label, so its series stay few. */
export type JwksRouteName = 'jwks' | 'discovery' | 'healthz' | 'readyz' | 'metrics' | 'other';

/**
 * `key_set` label values that are not key set ids (parentheses are outside the id alphabet, so they
 * cannot collide with one). Ids nobody registered are counted as UNKNOWN: a label per made-up id
 * would let anyone grow the metrics without bound.
 */
export const KEY_SET_LABEL = { unknown: '(unknown)', none: '(none)' } as const;

export interface JwksMetrics {
  /** Counts one answered request and observes how long it took. */
  observe(route: JwksRouteName, keySet: string, code: number, seconds: number): void;
}

// Serving from memory takes microseconds; the upper buckets catch database look-ups and a busy event loop.
const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1];

/** Requests answered per key set and status code, not yet handed to prom-client. */
interface Tally {
  labels: { key_set: string; code: string };
  count: number;
  reported: number;
}

/** The tallies of each registry's request counter, shared by every server that counts into it. */
const talliesByRegistry = new WeakMap<Registry, Map<string, Tally>>();

/**
 * `keyturn_jwks_requests_total{key_set, code}` and `keyturn_jwks_request_duration_seconds{route}` in
 * `registry`; reused when the registry already has them (two servers, one registry). Requests are
 * counted in plain numbers and handed to the prom-client counter when it is scraped: its labelled
 * inc() validates and hashes the labels on every call, a measurable share of a request served from memory.
 */
export function createJwksMetrics(registry: Registry): JwksMetrics {
  let tallies = talliesByRegistry.get(registry);
  if (tallies === undefined) {
    const ownTallies = new Map<string, Tally>();
    tallies = ownTallies;
    talliesByRegistry.set(registry, ownTallies);
    new Counter({
      name: 'keyturn_jwks_requests_total',
      help: 'Requests answered by the JWKS server, by key set and HTTP status code',
      labelNames: ['key_set', 'code'],
      registers: [registry],
      collect() {
        for (const tally of ownTallies.values()) {
          this.inc(tally.labels, tally.count - tally.reported);
          tally.reported = tally.count;
        }
      },
    });
  }
  const duration =
    (registry.getSingleMetric('keyturn_jwks_request_duration_seconds') as Histogram<'route'> | undefined) ??
    new Histogram({
      name: 'keyturn_jwks_request_duration_seconds',
      help: 'Time from a request to its response being handed to the socket, by route',
      labelNames: ['route'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });

  const histograms = new Map<JwksRouteName, Histogram.Internal<'route'>>();
  const requestTallies = tallies;
  return {
    observe(route, keySet, code, seconds) {
      const key = `${keySet} ${code}`;
      let tally = requestTallies.get(key);
      if (tally === undefined) {
        tally = { labels: { key_set: keySet, code: String(code) }, count: 0, reported: 0 };
        requestTallies.set(key, tally);
      }
      tally.count += 1;
      let histogram = histograms.get(route);
      if (histogram === undefined) {
        histogram = duration.labels({ route });
        histograms.set(route, histogram);
      }
      histogram.observe(seconds);
    },
  };
}
