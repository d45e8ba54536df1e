import { inspect } from 'node:util';
import type { SignatureFunction } from '../custody/key-custody';
import type { SigningAlgorithm } from '../domain/algorithms';

/** Bytes of the payload being encoded: shared by every signer, as signing is synchronous; grown when a token needs more. */
let payloadBytes = Buffer.allocUnsafeSlow(4096);

/**
 * One signing key, ready for the hot path: its custody's signature function, made once (a sealed key
 * opened into a KeyObject whose bytes no print or JSON shows, a KMS key or token object looked up), and
 * the protected header, the same for every token, encoded once.
 */
export class TokenSigner {
  readonly kid: string;
  readonly alg: SigningAlgorithm;
  readonly #signature: SignatureFunction;
  /** `base64url({"alg","kid","typ":"JWT"})` followed by the `.` that joins it to the payload. */
  readonly #headerPrefix: string;
  /** The signing input of the token being signed: the header prefix, written once, then the payload's base64url. */
  #signingInput: Buffer;
  /** The view of #signingInput last signed, kept for the next token of the same length. */
  #signingView: Buffer;

  constructor(key: { kid: string; alg: SigningAlgorithm; signature: SignatureFunction }) {
    this.kid = key.kid;
    this.alg = key.alg;
    this.#signature = key.signature;
    const header = JSON.stringify({ alg: key.alg, kid: key.kid, typ: 'JWT' });
    this.#headerPrefix = `${Buffer.from(header, 'utf8').toString('base64url')}.`;
    this.#signingInput = signingInputBuffer(this.#headerPrefix, 1024);
    this.#signingView = this.#signingInput.subarray(0, 0);
  }

  /**
   * A compact JWS of `claims` with `registered` added: the JSON members keyturn sets, such as
   * `"iat":1700000000,"exp":1700000300`, which `claims` must not hold. They are written after the
   * claims' JSON in place of its closing brace rather than spread into a copy of the claims, and the
   * payload is encoded in buffers kept from one token to the next: on the hot path of every login, copies
   * and allocations cost more than the rest of the encoding. A string at once where the signature is
   * made in memory; a promise where a KMS or an HSM makes it.
   */
  sign(claims: object, registered: string): string | Promise<string> {
    const json = JSON.stringify(claims);
    // 0x7b is `{`.
    if (json === undefined || json.charCodeAt(0) !== 0x7b)
      throw new TypeError('claims must serialise to a JSON object');
    // UTF-8 takes at most 3 bytes per UTF-16 code unit; one more for the comma.
    const most = 3 * (json.length + registered.length) + 1;
    if (payloadBytes.length < most) payloadBytes = Buffer.allocUnsafeSlow(2 ** Math.ceil(Math.log2(most)));
    let length = payloadBytes.write(json, 0, 'utf8') - 1; // without the closing brace
    if (length > 1) payloadBytes[length++] = 0x2c; // `,` after a claim
    length += payloadBytes.write(registered, length, 'utf8');
    payloadBytes[length++] = 0x7d; // `}`
    const payload = payloadBytes.toString('base64url', 0, length);
    const inputLength = this.#headerPrefix.length + payload.length;
    if (this.#signingInput.length < inputLength) {
      this.#signingInput = signingInputBuffer(this.#headerPrefix, inputLength);
      this.#signingView = this.#signingInput.subarray(0, 0);
    }
    this.#signingInput.write(payload, this.#headerPrefix.length, 'latin1');
    // An issuer's tokens are mostly of one length: their view is made once.
    if (this.#signingView.length !== inputLength) this.#signingView = this.#signingInput.subarray(0, inputLength);
    const signature = this.#signature(this.#signingView);
    if (signature instanceof Promise) {
      const signingInput = `${this.#headerPrefix}${payload}`;
      return signature.then((made) => `${signingInput}.${made.toString('base64url')}`);
    }
    return `${this.#headerPrefix}${payload}.${signature.toString('base64url')}`;
  }

  toJSON(): { kid: string; alg: SigningAlgorithm } {
    return { kid: this.kid, alg: this.alg };
  }

  [inspect.custom](): string {
    return `TokenSigner { kid: '${this.kid}', alg: '${this.alg}' }`;
  }
}

/** A buffer of at least `size` bytes (a power of two) that starts with the header prefix. */
function signingInputBuffer(headerPrefix: string, size: number): Buffer {
  const buffer = Buffer.allocUnsafeSlow(2 ** Math.ceil(Math.log2(size)));
  buffer.write(headerPrefix, 0, 'latin1');
  return buffer;
}
