import { constants, createPublicKey, randomBytes, verify } from 'node:crypto';
import type { SigningAlgorithm } from '../domain/algorithms';
import { KeyturnError } from '../domain/errors';
import type { PublicJwk } from './generate';

/** Node's verify options for each algorithm, as JWS signs (ECDSA as r‖s, PSS with a 32-byte salt). */
const VERIFY_OPTIONS: Record<SigningAlgorithm, { digest: string | null; options: object }> = {
  ES256: { digest: 'sha256', options: { dsaEncoding: 'ieee-p1363' } },
  RS256: { digest: 'sha256', options: { padding: constants.RSA_PKCS1_PADDING } },
  PS256: { digest: 'sha256', options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } },
  EdDSA: { digest: null, options: {} },
};

/**
 * Signs a random probe with `sign` and throws ERR_KID_MISMATCH unless the stored public key verifies it:
 * a handle that names another key in a KMS or on a token (a row changed outside keyturn) never signs
 * tokens that no verifier would accept.
 */
export async function assertSignsAsPublished(
  sign: (input: Buffer) => Buffer | Promise<Buffer>,
  key: { keySetId: string; kid: string; alg: SigningAlgorithm; publicJwk: PublicJwk },
): Promise<void> {
  const probe = randomBytes(32);
  const signature = await sign(probe);
  const { digest, options } = VERIFY_OPTIONS[key.alg];
  const publicKey = createPublicKey({ key: key.publicJwk, format: 'jwk' });
  if (verify(digest, probe, { key: publicKey, ...options }, signature)) return;
  const { keySetId, kid } = key;
  throw new KeyturnError(
    'ERR_KID_MISMATCH',
    `the active key ${kid} of key set "${keySetId}" signs with another key than its stored public key (its custody handle names ` +
      `a different key), so the key ring will not sign with it: it was changed outside keyturn; revoke it ` +
      `(\`keyturn revoke ${keySetId} ${kid} --reason ...\`) and a new key replaces it`,
    { keySetId, kid },
  );
}
