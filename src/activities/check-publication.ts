/** Where a key set's JWKS is served when its policy names no `publishedAt` URLs; none: nothing to check. */
export type DefaultJwksUrl = (keySetId: string) => string | undefined;

export interface PublicationCheck {
  /** The URLs that do not show the kid yet, each with why. */
  missing: { url: string; reason: string }[];
}

const FETCH_TIMEOUT_MS = 5_000;

/**
 * The propagation gate's eyes: fetches the JWKS at each URL and reports those that do not list
 * `kid` yet. Unreachable or malformed answers count as missing; the workflow waits and asks again.
 */
export function createPublicationActivities(defaultJwksUrl: DefaultJwksUrl = () => undefined) {
  return {
    async checkPublication(input: { keySetId: string; kid: string; urls?: string[] }): Promise<PublicationCheck> {
      const fallback = defaultJwksUrl(input.keySetId);
      const urls = input.urls ?? (fallback === undefined ? [] : [fallback]);
      const missing = await Promise.all(urls.map(async (url) => ({ url, reason: await whyMissing(url, input.kid) })));
      return { missing: missing.filter((m): m is { url: string; reason: string } => m.reason !== undefined) };
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
