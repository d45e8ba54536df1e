import { Counter, type Registry } from 'prom-client';

/** How a signing request of an authenticated client for one of its key sets ended. */
export type SigningOutcome = 'signed' | 'refused' | 'failed';

export interface SignerMetrics {
  /** `keyturn_signer_signings_total{client, key_set, outcome}`. */
  countSigning(client: string, keySetId: string, outcome: SigningOutcome): void;
  /** `keyturn_signer_denials_total{code}`: requests refused as not authenticated, not allowed, or over the rate. */
  countDenial(code: string): void;
}

/** Signings of one client, key set and outcome: counted here, handed to prom-client when scraped. */
interface Tally {
  labels: { client: string; key_set: string; outcome: SigningOutcome };
  count: number;
  reported: number;
}

/**
 * The signer's counters. Their labels are bounded: a client and key set are labels only once the
 * client is authenticated and the key set is one of its own, so no request can make up a series.
 * Signings are tallied in plain numbers and handed over at scrape time, as the JWKS server's requests
 * are: prom-client's labelled inc() hashes its labels on every call, a measurable share of a signing.
 */
export function createSignerMetrics(registry: Registry): SignerMetrics {
  const tallies = new Map<string, Tally>();
  new Counter({
    name: 'keyturn_signer_signings_total',
    help: 'Signing requests of authenticated clients for their own key sets, by client, key set and outcome (signed, refused: a bad request or a key set that cannot sign now, failed: an internal error)',
    labelNames: ['client', 'key_set', 'outcome'],
    registers: [registry],
    collect() {
      for (const tally of tallies.values()) {
        this.inc(tally.labels, tally.count - tally.reported);
        tally.reported = tally.count;
      }
    },
  });
  const denials = new Counter({
    name: 'keyturn_signer_denials_total',
    help: 'Requests the signer refused as not authenticated (ERR_UNAUTHENTICATED), not allowed (ERR_FORBIDDEN, ERR_CLAIM_PINNED) or over their rate (ERR_RATE_LIMITED), by code',
    labelNames: ['code'],
    registers: [registry],
  });
  return {
    countSigning(client, keySetId, outcome) {
      const key = `${client}\u0000${keySetId}\u0000${outcome}`;
      const tally = tallies.get(key);
      if (tally !== undefined) tally.count += 1;
      else tallies.set(key, { labels: { client, key_set: keySetId, outcome }, count: 1, reported: 0 });
    },
    countDenial(code) {
      denials.inc({ code });
    },
  };
}
