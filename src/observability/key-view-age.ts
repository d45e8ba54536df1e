import { Gauge, type Registry } from 'prom-client';
import { reportsEveryKeySet } from './metrics';

/** Whose view of the keys: a JWKS server's cache, or an issuer's key ring. */
export type KeyViewHolder = 'jwks' | 'key_ring';

/** How old one key set's view is: time since PostgreSQL last confirmed it, 0 while it is known current. */
export interface KeyViewAge {
  keySetId: string;
  ageMs: number;
}

interface KeyViewSource {
  view: KeyViewHolder;
  ages(): KeyViewAge[];
}

const NAME = 'keyturn_key_view_age_seconds';

/** Each registry's sources, read by the one gauge registered in it. */
const sourcesByRegistry = new WeakMap<Registry, Set<KeyViewSource>>();

/**
 * Reports `ages()` at each scrape of `registry` as `keyturn_key_view_age_seconds{view}`, the oldest
 * view of any key set, or `{view, key_set}` for each key set where the registry reports every key set
 * (KEYTURN_METRICS_PER_KEY_SET); where several servers or rings of one process share a registry, the
 * oldest view counts. Returns the function that stops reporting (on close).
 */
export function reportKeyViewAges(registry: Registry, view: KeyViewHolder, ages: () => KeyViewAge[]): () => void {
  let sources = sourcesByRegistry.get(registry);
  if (sources === undefined) {
    const registered = new Set<KeyViewSource>();
    sources = registered;
    sourcesByRegistry.set(registry, registered);
    const everyKeySet = reportsEveryKeySet(registry);
    new Gauge({
      name: NAME,
      help:
        "Seconds since this process last confirmed a key set's keys with PostgreSQL (0 while it listens for changes and has " +
        "confirmed them since), by view: jwks (the JWKS server) or key_ring (an issuer); the oldest key set's" +
        (everyKeySet ? ', by key set' : ''),
      labelNames: everyKeySet ? ['view', 'key_set'] : ['view'],
      registers: [registry],
      collect() {
        const oldest = new Map<string, { labels: Record<string, string>; ageMs: number }>();
        for (const source of registered) {
          for (const { keySetId, ageMs } of source.ages()) {
            const labels: Record<string, string> = everyKeySet
              ? { view: source.view, key_set: keySetId }
              : { view: source.view };
            const key = everyKeySet ? `${source.view} ${keySetId}` : source.view;
            if ((oldest.get(key)?.ageMs ?? -1) < ageMs) oldest.set(key, { labels, ageMs });
          }
        }
        // Key sets no longer viewed (gone from the database, a ring closed) leave no series behind.
        this.reset();
        for (const { labels, ageMs } of oldest.values()) this.set(labels, ageMs / 1000);
      },
    });
  }
  const source: KeyViewSource = { view, ages };
  sources.add(source);
  return () => sources.delete(source);
}
