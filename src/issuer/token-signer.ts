import { inspect } from 'node:util';
import type { SignatureFunction } from '../custody/key-custody';
import type { SigningAlgorithm } from '../domain/algorithms';
import { writeSimpleClaimsJson } from './claims-json';

/** Bytes of the payload being encoded: shared by every signer, as signing is synchronous; grown when a token needs more. */
let payloadBytes = Buffer.allocUnsafeSlow(4096);

/** The base64url alphabet as bytes, indexed by 6-bit value. */
const BASE64URL = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_', 'latin1');

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
  /**
   * The token being signed: the header prefix, written once, then the payload's base64url (the signing
   * input), then `.` and the signature's base64url.
   */
  #token: Buffer;
  /** The view of #token last signed, kept for the next token of the same length. */
  #signingView: Buffer;
  /** The registered members of the last token, and their UTF-8. */
  #registered = '';
  #registeredBytes = Buffer.alloc(0);

  constructor(key: { kid: string; alg: SigningAlgorithm; signature: SignatureFunction }) {
    this.kid = key.kid;
    this.alg = key.alg;
    this.#signature = key.signature;
    const header = JSON.stringify({ alg: key.alg, kid: key.kid, typ: 'JWT' });
    this.#headerPrefix = `${Buffer.from(header, 'utf8').toString('base64url')}.`;
    this.#token = tokenBuffer(this.#headerPrefix, 1024);
    this.#signingView = this.#token.subarray(0, 0);
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
    // Most claims are written directly, the others by JSON.stringify; either leaves room for `registered`
    // (UTF-8 takes at most 3 bytes per UTF-16 code unit; one more for the comma).
    let length = writeSimpleClaimsJson(claims, payloadBytes);
    if (length < 0 || length + 3 * registered.length + 1 > payloadBytes.length) length = writeJson(claims, registered);
    length -= 1; // without the closing brace
    if (length > 1) payloadBytes[length++] = 0x2c; // `,` after a claim
    // The same members for every token of a second: their UTF-8 is made once, and copied byte by byte
    // (cheaper here than a Buffer write, with the signature evicting the CPU's caches between two tokens).
    if (registered !== this.#registered) {
      this.#registered = registered;
      this.#registeredBytes = Buffer.from(registered, 'utf8');
    }
    const registeredBytes = this.#registeredBytes;
    for (let i = 0; i < registeredBytes.length; i += 1) payloadBytes[length++] = registeredBytes[i];
    payloadBytes[length++] = 0x7d; // `}`
    // Encoded straight into the token's buffer, and the token read out of it as one string: Buffer's
    // base64url made a string of each part, then copied into the signing input and joined into the token
    // (measured in `npm run bench`: the ring's ES256 rate about 2% higher for this).
    const headerLength = this.#headerPrefix.length;
    const inputLength = headerLength + base64urlLength(length);
    if (this.#token.length < inputLength) this.#grow(inputLength, 0);
    base64urlInto(payloadBytes, length, this.#token, headerLength);
    // An issuer's tokens are mostly of one length: their view is made once.
    if (this.#signingView.length !== inputLength) this.#signingView = this.#token.subarray(0, inputLength);
    const signature = this.#signature(this.#signingView);
    // Not `instanceof Promise`, which walks a Buffer's whole prototype chain: Uint8Array is two steps up.
    if (!(signature instanceof Uint8Array)) {
      // The buffer is the next token's once this returns.
      const signingInput = this.#token.toString('latin1', 0, inputLength);
      return signature.then((made) => `${signingInput}.${made.toString('base64url')}`);
    }
    const tokenLength = inputLength + 1 + base64urlLength(signature.length);
    if (this.#token.length < tokenLength) this.#grow(tokenLength, inputLength);
    this.#token[inputLength] = 0x2e; // `.`
    base64urlInto(signature, signature.length, this.#token, inputLength + 1);
    return this.#token.toString('latin1', 0, tokenLength);
  }

  /** A larger token buffer, keeping its first `keep` bytes (the header prefix is written anew). */
  #grow(size: number, keep: number): void {
    const token = tokenBuffer(this.#headerPrefix, size);
    this.#token.copy(token, 0, 0, keep);
    this.#token = token;
    this.#signingView = token.subarray(0, 0);
  }

  toJSON(): { kid: string; alg: SigningAlgorithm } {
    return { kid: this.kid, alg: this.alg };
  }

  [inspect.custom](): string {
    return `TokenSigner { kid: '${this.kid}', alg: '${this.alg}' }`;
  }
}

/** `JSON.stringify(claims)` in payloadBytes, grown to hold it and `registered` after it; its length in bytes. */
function writeJson(claims: object, registered: string): number {
  const json = JSON.stringify(claims);
  // 0x7b is `{`.
  if (json === undefined || json.charCodeAt(0) !== 0x7b) throw new TypeError('claims must serialise to a JSON object');
  const most = 3 * (json.length + registered.length) + 1;
  if (payloadBytes.length < most) payloadBytes = Buffer.allocUnsafeSlow(2 ** Math.ceil(Math.log2(most)));
  return payloadBytes.write(json, 0, 'utf8');
}

/** A buffer of at least `size` bytes (a power of two) that starts with the header prefix. */
function tokenBuffer(headerPrefix: string, size: number): Buffer {
  const buffer = Buffer.allocUnsafeSlow(2 ** Math.ceil(Math.log2(size)));
  buffer.write(headerPrefix, 0, 'latin1');
  return buffer;
}

/** Characters of the unpadded base64url of `length` bytes. */
function base64urlLength(length: number): number {
  return Math.ceil((length * 4) / 3);
}

/** Writes the unpadded base64url of `source`'s first `length` bytes into `target` at `at`. */
function base64urlInto(source: Uint8Array, length: number, target: Uint8Array, at: number): void {
  let i = 0;
  for (; i + 2 < length; i += 3) {
    const bits = (source[i] << 16) | (source[i + 1] << 8) | source[i + 2];
    target[at++] = BASE64URL[bits >>> 18];
    target[at++] = BASE64URL[(bits >>> 12) & 63];
    target[at++] = BASE64URL[(bits >>> 6) & 63];
    target[at++] = BASE64URL[bits & 63];
  }
  if (i === length) return;
  const bits = (source[i] << 16) | (i + 1 < length ? source[i + 1] << 8 : 0);
  target[at++] = BASE64URL[bits >>> 18];
  target[at++] = BASE64URL[(bits >>> 12) & 63];
  if (i + 1 < length) target[at] = BASE64URL[(bits >>> 6) & 63];
}
