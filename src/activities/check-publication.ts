import type { KeyTimeline } from '../domain/lifecycle';
import type { KeyChange, KeyStore } from '../store/key-store';

/** Where a key set's JWKS is served when its policy names no `publishedAt`; none: nothing to check. */
export type DefaultJwksUrl = (keySetId: string) => string | undefined;

export interface PublicationCheck {
  /** The URLs that do not show the kid yet, each with why. */
  missing: { url: string; reason: string }[];
  /** The key as recorded once every URL lists it. */
  listed?: KeyTimeline;
}

const FETCH_TIMEOUT_MS = 5_000;

/**
 * The propagation gate's eyes: fetches the JWKS at each URL and reports those that do not list the
 * next key yet. Unreachable or malformed answers count as missing; the workflow asks again later.
 * Once every URL lists it, records the listing (from now, so never before it was seen everywhere):
 * the key may sign once `waitMs` has passed, and not before `notBefore`.
 */
export function createPublicationActivities(keyStore: KeyStore, defaultJwksUrl: DefaultJwksUrl = () => undefined) {
  return {
    async confirmPublication(
      input: KeyChange & { kid: string; urls?: string[]; waitMs: number; notBefore: number },
    ): Promise<PublicationCheck> {
      const { kid, urls: policyUrls, waitMs, notBefore, ...change } = input;
      const fallback = defaultJwksUrl(change.keySetId);
      const urls = policyUrls ?? (fallback === undefined ? [] : [fallback]);
      const answers = await Promise.all(urls.map(async (url) => ({ url, reason: await whyMissing(url, kid) })));
      const missing = answers.filter((m): m is { url: string; reason: string } => m.reason !== undefined);
      if (missing.length > 0) return { missing };
      return { missing, listed: await keyStore.markListed(change, kid, { waitMs, notBefore, urls }) };
    },
  };
}

async function whyMissing(url: string, kid: string): Promise<string | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS), headers: { accept: 'application/json' } });
    if (!response.ok) return `HTTP ${response.status}`;
    const body = (await response.json()) as { keys?: { kid?: string }[] };
    if (!Array.isArray(body.keys)) return 'not a JWKS (no "keys" array)';
    return body.keys.some((key) => key.kid === kid) ? undefined : `kid ${kid} not listed yet`;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}
