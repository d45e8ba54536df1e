import { constants, createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { inspect } from 'node:util';
import type { JWK } from 'jose';
import type { SigningAlgorithm } from '../domain/algorithms';

/** Signs JWS signing input with a private key, the way `alg` prescribes. */
type SignatureFunction = (signingInput: Buffer, key: KeyObject) => Buffer;

/**
 * Node's crypto for each algorithm. ECDSA signatures go out in IEEE P1363 form (r‖s), as JWS requires,
 * not Node's DER default; PS256 uses a salt as long as its hash, as RFC 7518 §3.5 requires.
 */
const SIGNATURES: Record<SigningAlgorithm, SignatureFunction> = {
  ES256: (input, key) => sign('sha256', input, { key, dsaEncoding: 'ieee-p1363' }),
  RS256: (input, key) => sign('sha256', input, { key, padding: constants.RSA_PKCS1_PADDING }),
  PS256: (input, key) => sign('sha256', input, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }),
  // Ed25519 hashes internally: no digest is named.
  EdDSA: (input, key) => sign(null, input, key),
};

/**
 * One signing key, ready for the hot path: the private key is imported once into a KeyObject (whose
 * bytes no print or JSON shows), and the protected header, the same for every token, is encoded once.
 */
export class TokenSigner {
  readonly kid: string;
  readonly alg: SigningAlgorithm;
  readonly #key: KeyObject;
  readonly #signature: SignatureFunction;
  /** `base64url({"alg","kid","typ":"JWT"})` followed by the `.` that joins it to the payload. */
  readonly #headerPrefix: string;

  constructor(key: { kid: string; alg: SigningAlgorithm; privateJwk: JWK }) {
    this.kid = key.kid;
    this.alg = key.alg;
    this.#key = createPrivateKey({ key: key.privateJwk, format: 'jwk' });
    this.#signature = SIGNATURES[key.alg];
    const header = JSON.stringify({ alg: key.alg, kid: key.kid, typ: 'JWT' });
    this.#headerPrefix = `${Buffer.from(header, 'utf8').toString('base64url')}.`;
  }

  /**
   * A compact JWS of `claims` with `iat` and `exp` (Unix seconds) added; `claims` must not hold them.
   * The times are appended to the claims' JSON rather than spread into a copy of them: on the hot path
   * of every login, the copy costs more than the rest of the encoding.
   */
  sign(claims: object, times: { iat: number; exp: number }): string {
    const json = JSON.stringify(claims);
    if (json === undefined || !json.startsWith('{')) throw new TypeError('claims must serialise to a JSON object');
    const timesJson = `"iat":${times.iat},"exp":${times.exp}}`;
    const payload = json === '{}' ? `{${timesJson}` : `${json.slice(0, -1)},${timesJson}`;
    const signingInput = this.#headerPrefix + Buffer.from(payload, 'utf8').toString('base64url');
    const signature = this.#signature(Buffer.from(signingInput, 'latin1'), this.#key);
    return `${signingInput}.${signature.toString('base64url')}`;
  }

  toJSON(): { kid: string; alg: SigningAlgorithm } {
    return { kid: this.kid, alg: this.alg };
  }

  [inspect.custom](): string {
    return `TokenSigner { kid: '${this.kid}', alg: '${this.alg}' }`;
  }
}
