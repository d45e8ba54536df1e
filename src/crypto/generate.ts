import { exportJWK, generateKeyPair, type GenerateKeyPairOptions, type JWK } from 'jose';
import type { SigningAlgorithm } from '../domain/algorithms';
import { PRIVATE_JWK_MEMBERS } from '../domain/private-jwk';
import { jwkThumbprint } from './kid';

/** A signing key's public half as published in a JWKS: public members plus kid, alg and use. */
export type PublicJwk = {
  kty: 'EC' | 'RSA' | 'OKP';
  kid: string;
  alg: SigningAlgorithm;
  use: 'sig';
  crv?: string;
  x?: string;
  y?: string;
  n?: string;
  e?: string;
};

/** A freshly generated signing key. `privateJwk` must be sealed before it is stored anywhere. */
export interface GeneratedSigningKey {
  /** RFC 7638 SHA-256 thumbprint of the public key, so the kid follows from the key itself. */
  kid: string;
  alg: SigningAlgorithm;
  publicJwk: PublicJwk;
  /** The whole key pair, with the same kid, alg and use as the public half. */
  privateJwk: JWK;
}

/** The public members of each key type; anything else is left out of a published key. */
const PUBLIC_MEMBERS = {
  EC: ['crv', 'x', 'y'],
  RSA: ['n', 'e'],
  OKP: ['crv', 'x'],
} as const satisfies Record<PublicJwk['kty'], readonly (keyof PublicJwk)[]>;

const KEY_PAIR_OPTIONS: Record<SigningAlgorithm, GenerateKeyPairOptions> = {
  ES256: {}, // the algorithm fixes the curve, P-256
  RS256: { modulusLength: 2048 },
  PS256: { modulusLength: 2048 },
  EdDSA: { crv: 'Ed25519' }, // jose's default for EdDSA; spelled out because keyturn promises Ed25519
};

/** Generates a key pair for `alg` (RSA: 2048 bits, EdDSA: Ed25519) and names it by its thumbprint. */
export async function generateSigningKey(alg: SigningAlgorithm): Promise<GeneratedSigningKey> {
  const { publicKey, privateKey } = await generateKeyPair(alg, { ...KEY_PAIR_OPTIONS[alg], extractable: true });
  const exportedPublic = await exportJWK(publicKey);
  const kid = jwkThumbprint(exportedPublic);
  if (kid === undefined) throw new TypeError(`jose generated a ${alg} key keyturn cannot name by its thumbprint`);
  const privateJwk: JWK = { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' };
  return { kid, alg, publicJwk: toPublicJwk(exportedPublic, { kid, alg }), privateJwk };
}

/**
 * Builds the publishable form of a key from a public or private JWK by copying only the public
 * members of its key type (an allow-list, so new private members can never slip through).
 * Throws a TypeError for a key type or shape keyturn does not sign with.
 */
export function toPublicJwk(jwk: JWK, meta: { kid: string; alg: SigningAlgorithm }): PublicJwk {
  const kty = jwk.kty;
  if (!isSigningKeyType(kty)) throw new TypeError(`cannot publish a JWK of key type "${String(kty)}"`);
  const publicJwk: PublicJwk = { kty, kid: meta.kid, alg: meta.alg, use: 'sig' };
  for (const member of PUBLIC_MEMBERS[kty]) {
    const value = jwk[member];
    if (typeof value !== 'string') throw new TypeError(`${kty} JWK "${meta.kid}" lacks its "${member}" member`);
    publicJwk[member] = value;
  }
  return publicJwk;
}

function isSigningKeyType(kty: unknown): kty is PublicJwk['kty'] {
  return typeof kty === 'string' && Object.hasOwn(PUBLIC_MEMBERS, kty);
}

/**
 * Throws a TypeError if `jwk` carries any private member. A guard for code that publishes keys
 * it did not build with {@link toPublicJwk}, e.g. rows read back from the store.
 */
export function assertPublicOnly(jwk: object): void {
  const found = PRIVATE_JWK_MEMBERS.filter((member) => Object.hasOwn(jwk, member));
  if (found.length > 0) {
    const kid = (jwk as { kid?: unknown }).kid;
    throw new TypeError(`public JWK "${String(kid)}" carries private members: ${found.join(', ')}`);
  }
}
