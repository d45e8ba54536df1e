import type { KeyTimeline } from '../domain/lifecycle';
import type { KeyChange, KeyStore } from '../store/key-store';

/** Where a key set's JWKS is served (by every JWKS server) when its policy names no `publishedAt`; none: nothing to check. */
export type DefaultJwksUrls = (keySetId: string) => string[];

export interface PublicationCheck {
  /** The URLs that do not show the kid yet, each with why. */
  missing: { url: string; reason: string }[];
  /** The key as recorded once every URL lists it. */
  listed?: KeyTimeline;
}

/** The JWKS URLs to look at (the policy's `publishedAt`, else the deployment's own) and the wait a listing starts. */
export interface ListingRule {
  urls?: string[];
  /** How long after its listing the key may sign. */
  waitMs: number;
  /** The key may not sign before this time (older caches after a lower `jwksMaxAge`). */
  notBefore: number;
}

const FETCH_TIMEOUT_MS = 5_000;

/**
 * How long a key just generated is watched for its listing, in the activity that generated it: our
 * own JWKS servers list a key within milliseconds of its commit (LISTEN/NOTIFY), so the gate's first
 * look rarely needs a step (and Temporal actions) of its own. Short, so that a JWKS URL that is down
 * only makes the workflow's gate take over, with its backoff and alerts.
 */
const WATCH_DELAYS_MS = [100, 200, 400, 800];
/** A watching look's fetch timeout: at most 4 s in all, well within the activity's 10 s. */
const WATCH_FETCH_TIMEOUT_MS = 500;

/**
 * The propagation gate's eyes: fetches the JWKS at each URL and reports those that do not list the
 * key yet. Unreachable or malformed answers count as missing; the workflow asks again later. Once
 * every URL lists it, records the listing (from now, so never before it was seen everywhere): the key
 * may sign once `waitMs` has passed, and not before `notBefore`.
 */
export function createPublicationGate(keyStore: KeyStore, defaultJwksUrls: DefaultJwksUrls = () => []) {
  async function look(
    change: KeyChange,
    kid: string,
    rule: ListingRule,
    timeoutMs = FETCH_TIMEOUT_MS,
  ): Promise<PublicationCheck> {
    const urls = rule.urls ?? defaultJwksUrls(change.keySetId);
    const answers = await Promise.all(
      urls.map(async (url) => ({ url, reason: await whyMissing(url, kid, timeoutMs) })),
    );
    const missing = answers.filter((m): m is { url: string; reason: string } => m.reason !== undefined);
    if (missing.length > 0) return { missing };
    return {
      missing,
      listed: await keyStore.markListed(change, kid, { waitMs: rule.waitMs, notBefore: rule.notBefore, urls }),
    };
  }
  return {
    look,
    /**
     * Looks for a key just generated (by the change `generation`) a few times within about 1.5 s; its
     * listing is recorded under an operation id derived from the generation's, so a retried generation
     * records it once.
     */
    async watch(generation: KeyChange, kid: string, rule: ListingRule): Promise<PublicationCheck> {
      const change = { ...generation, operationId: `${generation.operationId}/listed` };
      let check = await look(change, kid, rule, WATCH_FETCH_TIMEOUT_MS);
      for (const delay of WATCH_DELAYS_MS) {
        if (check.listed !== undefined) break;
        await new Promise((resolve) => setTimeout(resolve, delay));
        check = await look(change, kid, rule, WATCH_FETCH_TIMEOUT_MS);
      }
      return check;
    },
  };
}

export type PublicationGate = ReturnType<typeof createPublicationGate>;

export function createPublicationActivities(gate: PublicationGate) {
  return {
    async confirmPublication(input: KeyChange & ListingRule & { kid: string }): Promise<PublicationCheck> {
      const { kid, urls, waitMs, notBefore, ...change } = input;
      return gate.look(change, kid, { urls, waitMs, notBefore });
    },
  };
}

async function whyMissing(url: string, kid: string, timeoutMs: number): Promise<string | undefined> {
  try {
    const response = await fetch(url, {
      signal: AbortSignal.timeout(timeoutMs),
      headers: { accept: 'application/json' },
    });
    if (!response.ok) return `HTTP ${response.status}`;
    const body = (await response.json()) as { keys?: { kid?: string }[] };
    if (!Array.isArray(body.keys)) return 'not a JWKS (no "keys" array)';
    return body.keys.some((key) => key.kid === kid) ? undefined : `kid ${kid} not listed yet`;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}
