import { Counter, type Registry } from 'prom-client';

/** How a signing request of an authenticated client for one of its key sets ended. */
export type SigningOutcome = 'signed' | 'refused' | 'failed';

export interface SignerMetrics {
  /** `keyturn_signer_signings_total{client, key_set, outcome}`. */
  countSigning(client: string, keySetId: string, outcome: SigningOutcome): void;
  /** `keyturn_signer_denials_total{code}`: requests refused as not authenticated, not allowed, or over the rate. */
  countDenial(code: string): void;
}

/**
 * The signer's counters. Their labels are bounded: a client and key set are labels only once the
 * client is authenticated and the key set is one of its own, so no request can make up a series.
 * Each series' child is looked up once and kept: prom-client's labelled inc() hashes its labels on
 * every call, a measurable share of a signing.
 */
export function createSignerMetrics(registry: Registry): SignerMetrics {
  const signings = new Counter({
    name: 'keyturn_signer_signings_total',
    help: 'Signing requests of authenticated clients for their own key sets, by client, key set and outcome (signed, refused: a bad request or a key set that cannot sign now, failed: an internal error)',
    labelNames: ['client', 'key_set', 'outcome'],
    registers: [registry],
  });
  const denials = new Counter({
    name: 'keyturn_signer_denials_total',
    help: 'Requests the signer refused as not authenticated (ERR_UNAUTHENTICATED), not allowed (ERR_FORBIDDEN, ERR_CLAIM_PINNED) or over their rate (ERR_RATE_LIMITED), by code',
    labelNames: ['code'],
    registers: [registry],
  });
  const children = new Map<string, { inc(): void }>();
  return {
    countSigning(client, keySetId, outcome) {
      const key = `${client}\u0000${keySetId}\u0000${outcome}`;
      let child = children.get(key);
      if (child === undefined) children.set(key, (child = signings.labels(client, keySetId, outcome)));
      child.inc();
    },
    countDenial(code) {
      denials.inc({ code });
    },
  };
}
