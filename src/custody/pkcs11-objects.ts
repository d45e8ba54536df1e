import type { JWK } from 'jose';
import * as pkcs11 from 'pkcs11js';
import type { SigningAlgorithm } from '../domain/algorithms';
import { KeyturnError } from '../domain/errors';

/** The algorithms a PKCS#11 token makes keys for here (CUSTODY_ALGORITHMS.pkcs11). */
export type Pkcs11Algorithm = Exclude<SigningAlgorithm, 'EdDSA'>;

/** DER of the P-256 curve's object identifier (1.2.840.10045.3.1.7): CKA_EC_PARAMS of an ES256 key. */
const P256_PARAMS = Buffer.from('06082a8648ce3d030107', 'hex');

const RSA_PUBLIC_EXPONENT = Buffer.from([0x01, 0x00, 0x01]); // 65537

interface KeyPairTemplates {
  mechanism: pkcs11.Mechanism;
  publicKey: pkcs11.Template;
  privateKey: pkcs11.Template;
}

/**
 * What the token is asked to generate: a token key pair whose private half is sensitive and never
 * extractable (the token will not hand out its value, wrapped or in clear), private (seen only once
 * logged in) and good for signing only.
 */
export function keyPairTemplates(alg: Pkcs11Algorithm, id: Buffer, label: string): KeyPairTemplates {
  const named = [
    { type: pkcs11.CKA_ID, value: id },
    { type: pkcs11.CKA_LABEL, value: label },
    { type: pkcs11.CKA_TOKEN, value: true },
  ];
  const publicKey = [
    ...named,
    { type: pkcs11.CKA_CLASS, value: pkcs11.CKO_PUBLIC_KEY },
    { type: pkcs11.CKA_PRIVATE, value: false },
    { type: pkcs11.CKA_VERIFY, value: true },
    { type: pkcs11.CKA_ENCRYPT, value: false },
    { type: pkcs11.CKA_WRAP, value: false },
  ];
  const privateKey = [
    ...named,
    { type: pkcs11.CKA_CLASS, value: pkcs11.CKO_PRIVATE_KEY },
    { type: pkcs11.CKA_PRIVATE, value: true },
    { type: pkcs11.CKA_SENSITIVE, value: true },
    { type: pkcs11.CKA_EXTRACTABLE, value: false },
    { type: pkcs11.CKA_SIGN, value: true },
    { type: pkcs11.CKA_DECRYPT, value: false },
    { type: pkcs11.CKA_UNWRAP, value: false },
    { type: pkcs11.CKA_DERIVE, value: false },
  ];
  if (alg === 'ES256') {
    return {
      mechanism: { mechanism: pkcs11.CKM_EC_KEY_PAIR_GEN },
      publicKey: [
        ...publicKey,
        { type: pkcs11.CKA_KEY_TYPE, value: pkcs11.CKK_EC },
        { type: pkcs11.CKA_EC_PARAMS, value: P256_PARAMS },
      ],
      privateKey: [...privateKey, { type: pkcs11.CKA_KEY_TYPE, value: pkcs11.CKK_EC }],
    };
  }
  return {
    mechanism: { mechanism: pkcs11.CKM_RSA_PKCS_KEY_PAIR_GEN },
    publicKey: [
      ...publicKey,
      { type: pkcs11.CKA_KEY_TYPE, value: pkcs11.CKK_RSA },
      { type: pkcs11.CKA_MODULUS_BITS, value: 2048 },
      { type: pkcs11.CKA_PUBLIC_EXPONENT, value: RSA_PUBLIC_EXPONENT },
    ],
    privateKey: [...privateKey, { type: pkcs11.CKA_KEY_TYPE, value: pkcs11.CKK_RSA }],
  };
}

/** The public JWK of a public key object, from its attributes (the members RFC 7518 §6 names, no kid yet). */
export function readPublicJwk(
  library: pkcs11.PKCS11,
  session: pkcs11.Handle,
  publicKey: pkcs11.Handle,
  alg: Pkcs11Algorithm,
): JWK {
  if (alg === 'ES256') {
    const [point] = library.C_GetAttributeValue(session, publicKey, [{ type: pkcs11.CKA_EC_POINT }]);
    const { x, y } = p256Coordinates(point.value);
    return { kty: 'EC', crv: 'P-256', x: x.toString('base64url'), y: y.toString('base64url') };
  }
  const [modulus, exponent] = library.C_GetAttributeValue(session, publicKey, [
    { type: pkcs11.CKA_MODULUS },
    { type: pkcs11.CKA_PUBLIC_EXPONENT },
  ]);
  return {
    kty: 'RSA',
    n: unsigned(modulus.value).toString('base64url'),
    e: unsigned(exponent.value).toString('base64url'),
  };
}

/**
 * x and y of an uncompressed P-256 point (0x04‖x‖y). PKCS#11 v2.20+ wraps CKA_EC_POINT in a DER OCTET
 * STRING (0x04 0x41 …, as SoftHSM2 does); some tokens answer the bare point.
 */
function p256Coordinates(value: Buffer): { x: Buffer; y: Buffer } {
  const point = value.length === 67 && value[0] === 0x04 && value[1] === 0x41 ? value.subarray(2) : value;
  if (point.length !== 65 || point[0] !== 0x04) {
    throw new KeyturnError(
      'ERR_CUSTODY_UNAVAILABLE',
      `the token answered a ${value.length}-byte CKA_EC_POINT that is no uncompressed P-256 point`,
    );
  }
  return { x: point.subarray(1, 33), y: point.subarray(33) };
}

/** A big-endian integer without leading zero bytes, as JWK's n and e are written (RFC 7518 §6.3.1). */
function unsigned(value: Buffer): Buffer {
  let start = 0;
  while (start < value.length - 1 && value[start] === 0) start += 1;
  return value.subarray(start);
}

/** The objects of a class that carry CKA_ID `id`. */
export function findByKeyId(
  library: pkcs11.PKCS11,
  session: pkcs11.Handle,
  objectClass: number,
  id: Buffer,
): pkcs11.Handle[] {
  library.C_FindObjectsInit(session, [
    { type: pkcs11.CKA_CLASS, value: objectClass },
    { type: pkcs11.CKA_ID, value: id },
  ]);
  try {
    return library.C_FindObjects(session, 16);
  } finally {
    library.C_FindObjectsFinal(session);
  }
}

/** A boolean attribute (CK_BBOOL, one byte) read back from the token. */
export function flag(value: Buffer): boolean {
  return value.length > 0 && value[0] !== 0;
}
