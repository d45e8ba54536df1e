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

/**
 * `keyturn_jwks_requests_total{key_set, code}` and `keyturn_jwks_request_duration_seconds{route}` in
 * `registry`; reused when the registry already has them (two servers, one registry).
 */
export function createJwksMetrics(registry: Registry): JwksMetrics {
  const requests =
    (registry.getSingleMetric('keyturn_jwks_requests_total') as Counter<'key_set' | 'code'> | undefined) ??
    new Counter({
      name: 'keyturn_jwks_requests_total',
      help: 'Requests answered by the JWKS server, by key set and HTTP status code',
      labelNames: ['key_set', 'code'],
      registers: [registry],
    });
  const duration =
    (registry.getSingleMetric('keyturn_jwks_request_duration_seconds') as Histogram<'route'> | undefined) ??
    new Histogram({
      name: 'keyturn_jwks_request_duration_seconds',
      help: 'Time from a request to its response being handed to the socket, by route',
      labelNames: ['route'],
      buckets: LATENCY_BUCKETS,
      registers: [registry],
    });

  // Children are looked up once per label combination: hashing labels on every request is measurable.
  const counters = new Map<string, Counter.Internal>();
  const histograms = new Map<JwksRouteName, Histogram.Internal<'route'>>();
  return {
    observe(route, keySet, code, seconds) {
      const key = `${keySet} ${code}`;
      let counter = counters.get(key);
      if (counter === undefined) {
        counter = requests.labels({ key_set: keySet, code: String(code) });
        counters.set(key, counter);
      }
      counter.inc();
      let histogram = histograms.get(route);
      if (histogram === undefined) {
        histogram = duration.labels({ route });
        histograms.set(route, histogram);
      }
      histogram.observe(seconds);
    },
  };
}
