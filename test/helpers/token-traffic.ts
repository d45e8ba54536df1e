import { decodeJwt, decodeProtectedHeader } from 'jose';
import type { KeyRing } from '../../src/issuer/key-ring';
import { CachingVerifier } from './caching-verifier';

/** A token is verified when it is issued and once more in its last moments, about this long before it expires. */
const END_OF_LIFE_MS = 300;

/** What the key ring answers for a key set not registered yet, or without an active key. */
const CANNOT_SIGN_YET = ['ERR_KEYSET_NOT_FOUND', 'ERR_NO_ACTIVE_KEY'];

interface IssuedToken {
  keySetId: string;
  kid: string;
  token: string;
  expiresAt: number;
  verifiedOnIssue: boolean;
  verifiedBeforeExpiry: boolean;
}

/**
 * Tokens signed throughout by a key ring and checked by a cache-abiding verifier per key set, as
 * an issuer and its relying parties would: every key set signs a token every `issueEveryMs`, and each
 * token is verified on issue and again shortly before it expires. Any rejection of an unexpired
 * token is recorded. A key set that cannot sign yet or any more (not started, not bootstrapped,
 * wound down) signs nothing.
 */
export class TokenTraffic {
  /** Each rejection of an unexpired token, in words. */
  readonly rejections: string[] = [];
  /** Signing failures of a key set that could sign, in words. */
  readonly signFailures: string[] = [];
  /** The latest expiry of a token each kid signed, by kid. */
  readonly lastExpiry = new Map<string, number>();
  #pending: IssuedToken[] = [];
  #verifiedBeforeExpiry = 0;
  #issued = 0;
  #issuing = true;
  readonly #verifiers: Map<string, CachingVerifier>;
  readonly #running: Promise<void>;

  constructor(
    private readonly ring: KeyRing,
    jwksBaseUrl: string,
    readonly keySetIds: readonly string[],
    private readonly issueEveryMs = 100,
  ) {
    this.#verifiers = new Map(
      keySetIds.map((id) => [id, new CachingVerifier(`${jwksBaseUrl}/keysets/${encodeURIComponent(id)}/jwks.json`)]),
    );
    this.#running = this.#run();
  }

  /** How many tokens were signed, and how many of them were verified in their last moments too. */
  get counts(): { issued: number; verifiedBeforeExpiry: number } {
    return { issued: this.#issued, verifiedBeforeExpiry: this.#verifiedBeforeExpiry };
  }

  /** Stops signing and resolves once every token signed has been verified for the last time. */
  async stop(): Promise<void> {
    this.#issuing = false;
    await this.#running;
  }

  async #run(): Promise<void> {
    let nextIssue = 0;
    while (this.#issuing || this.#pending.length > 0) {
      if (this.#issuing && Date.now() >= nextIssue) {
        nextIssue = Date.now() + this.issueEveryMs;
        await Promise.all(this.keySetIds.map((id) => this.#issue(id)));
      }
      await this.#verifyDue();
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async #issue(keySetId: string): Promise<void> {
    let token: string;
    try {
      token = await this.ring.sign(keySetId, { sub: 'fault-test' });
    } catch (error) {
      if (!CANNOT_SIGN_YET.includes((error as { code?: string }).code ?? ''))
        this.signFailures.push(`${keySetId}: ${String(error)}`);
      return;
    }
    const kid = decodeProtectedHeader(token).kid!;
    const expiresAt = decodeJwt(token).exp! * 1000;
    this.#issued += 1;
    this.lastExpiry.set(kid, Math.max(expiresAt, this.lastExpiry.get(kid) ?? 0));
    this.#pending.push({ keySetId, kid, token, expiresAt, verifiedOnIssue: false, verifiedBeforeExpiry: false });
  }

  async #verifyDue(): Promise<void> {
    const now = Date.now();
    // Too close to its expiry, a rejection could not be told from an expiry: the token is done.
    this.#pending = this.#pending.filter((t) => t.expiresAt - now > END_OF_LIFE_MS && !t.verifiedBeforeExpiry);
    const due = this.#pending.filter((t) => !t.verifiedOnIssue || t.expiresAt - now < END_OF_LIFE_MS * 2);
    await Promise.all(
      due.map(async (token) => {
        const moment = token.verifiedOnIssue ? 'shortly before expiry' : 'on issue';
        if (token.verifiedOnIssue) token.verifiedBeforeExpiry = true;
        token.verifiedOnIssue = true;
        try {
          await this.#verifiers.get(token.keySetId)!.verify(token.token);
          if (token.verifiedBeforeExpiry) this.#verifiedBeforeExpiry += 1;
        } catch (error) {
          const msLeft = token.expiresAt - Date.now();
          // A verification that outlasted the token (a slow JWKS fetch) says nothing about the keys.
          if ((error as { code?: string }).code === 'ERR_JWT_EXPIRED' && msLeft <= 0) return;
          this.rejections.push(
            `${token.keySetId}: a token of ${token.kid} rejected ${moment}, ${msLeft} ms before it expired: ${(error as { code?: string }).code ?? String(error)}`,
          );
        }
      }),
    );
  }
}
