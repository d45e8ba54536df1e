import { createLocalJWKSet, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose';

/**
 * A strict verifier: it fetches the JWKS, keeps it for the response's `Cache-Control: max-age`, and
 * never refetches early, not even for an unknown kid (jose's remote JWKS would, which would hide a
 * key that was not published in time). What it accepts is what every cache-abiding verifier accepts.
 */
export class CachingVerifier {
  #keys: JWTVerifyGetKey | undefined;
  #expiresAt = 0;
  #fetches = 0;

  constructor(readonly jwksUrl: string) {}

  /** How many times the JWKS was fetched. */
  get fetches(): number {
    return this.#fetches;
  }

  async verify(token: string): Promise<JWTPayload> {
    const { payload } = await jwtVerify(token, await this.#keySet());
    return payload;
  }

  async #keySet(): Promise<JWTVerifyGetKey> {
    if (this.#keys === undefined || Date.now() >= this.#expiresAt) {
      const response = await fetchRetryingOnce(this.jwksUrl);
      if (!response.ok) throw new Error(`JWKS fetch failed: ${response.status}`);
      const maxAge = Number(/max-age=(\d+)/.exec(response.headers.get('cache-control') ?? '')?.[1] ?? 0);
      this.#keys = createLocalJWKSet((await response.json()) as JSONWebKeySet);
      this.#expiresAt = Date.now() + maxAge * 1000;
      this.#fetches += 1;
    }
    return this.#keys;
  }
}

/**
 * A GET whose connection failed is sent once more, as an HTTP load balancer does on another upstream
 * (nginx's proxy_next_upstream): a request that was on a kept-alive connection to a JWKS server killed
 * just then fails at the connection, and says nothing about the keys. An HTTP error is no such failure.
 */
async function fetchRetryingOnce(url: string): Promise<Response> {
  try {
    return await fetch(url);
  } catch {
    return fetch(url);
  }
}
