import { createHash, createPublicKey } from 'node:crypto';
import {
  CreateKeyCommand,
  DescribeKeyCommand,
  GetPublicKeyCommand,
  KMSClient,
  ScheduleKeyDeletionCommand,
  SignCommand,
  TagResourceCommand,
  type KeyMetadata,
  type KeySpec,
  type KMSClientConfig,
  type SigningAlgorithmSpec,
} from '@aws-sdk/client-kms';
import { derToJoseSignature } from '../crypto/ecdsa-signature';
import { toPublicJwk } from '../crypto/generate';
import { jwkThumbprint } from '../crypto/kid';
import type { SigningAlgorithm } from '../domain/algorithms';
import { CUSTODY_ALGORITHMS } from '../domain/custody-settings';
import { KeyturnError } from '../domain/errors';
import type { CustodyKey, CustodyKeyProperties, HeldKey, KeyCustody, KeyOwner, SignatureFunction } from './key-custody';

/** The KMS key spec of a JWS algorithm's keys, and the KMS signing algorithm that makes its signatures. */
interface KmsAlgorithm {
  keySpec: KeySpec;
  signingAlgorithm: SigningAlgorithmSpec;
}

/** The JWS algorithms KMS signs with. KMS has no Ed25519 signing keys. */
const KMS_ALGORITHMS: Partial<Record<SigningAlgorithm, KmsAlgorithm>> = {
  ES256: { keySpec: 'ECC_NIST_P256', signingAlgorithm: 'ECDSA_SHA_256' },
  RS256: { keySpec: 'RSA_2048', signingAlgorithm: 'RSASSA_PKCS1_V1_5_SHA_256' },
  PS256: { keySpec: 'RSA_2048', signingAlgorithm: 'RSASSA_PSS_SHA_256' },
};

/** The shortest pending window KMS allows before it deletes a key for good. */
const PENDING_WINDOW_DAYS = 7;
/** The longest message KMS signs as RAW; a longer signing input is sent as its SHA-256 digest. */
const RAW_MESSAGE_LIMIT = 4096;
/** Bytes of r and of s in a P-256 signature. */
const P256_INTEGER_BYTES = 32;
/** The tags a key carries in KMS, so an operator can tell whose key it is. */
const KEY_SET_TAG = 'keyturn:key-set';
const KID_TAG = 'keyturn:kid';

/** How keyturn reaches KMS; whatever is left out comes from the standard AWS chain (environment, profile, instance role). */
export interface AwsKmsCustodyOptions {
  region?: string;
  /** Another KMS endpoint (a test server); AWS_ENDPOINT_URL_KMS works too. */
  endpoint?: string;
  credentials?: KMSClientConfig['credentials'];
}

/**
 * Keys generated and used inside AWS KMS: one KMS key per keyturn key, tagged with its key set and
 * kid. The private half never leaves KMS; keyturn holds only the key's ARN.
 */
export class AwsKmsCustody implements KeyCustody {
  readonly backend = 'aws-kms';
  readonly algorithms = CUSTODY_ALGORITHMS['aws-kms'];
  readonly privateKeysPassThroughKeyturn = false;
  readonly #client: KMSClient;

  constructor(options: AwsKmsCustodyOptions = {}) {
    this.#client = new KMSClient({
      ...options,
      // A KMS that does not answer fails a step in seconds (then Temporal retries it): without
      // throwOnRequestTimeout the SDK only logs a warning when a request outlasts requestTimeout, and waits on.
      maxAttempts: 3,
      requestHandler: { connectionTimeout: 3_000, requestTimeout: 5_000, throwOnRequestTimeout: true },
    });
  }

  async generate(alg: SigningAlgorithm, owner: KeyOwner): Promise<CustodyKey> {
    const { keySpec } = this.#kmsAlgorithm(alg, owner.keySetId);
    const what = `generate an ${alg} key for key set ${owner.keySetId}`;
    const created = await this.#send('CreateKey', what, owner, () =>
      this.#client.send(
        new CreateKeyCommand({
          KeyUsage: 'SIGN_VERIFY',
          KeySpec: keySpec,
          Description: `keyturn ${alg} signing key of key set ${owner.keySetId}`,
          Tags: [{ TagKey: KEY_SET_TAG, TagValue: owner.keySetId }],
        }),
      ),
    );
    const handle = created.KeyMetadata?.Arn ?? created.KeyMetadata?.KeyId;
    if (handle === undefined) throw this.#unavailable(what, owner, new Error('CreateKey answered no key ARN'));
    try {
      const { PublicKey } = await this.#send('GetPublicKey', what, owner, () =>
        this.#client.send(new GetPublicKeyCommand({ KeyId: handle })),
      );
      if (PublicKey === undefined) throw new Error(`GetPublicKey answered no public key for ${handle}`);
      const jwk = createPublicKey({ key: Buffer.from(PublicKey), format: 'der', type: 'spki' }).export({
        format: 'jwk',
      });
      const kid = jwkThumbprint(jwk);
      if (kid === undefined) throw new Error(`KMS answered a ${String(jwk.kty)} public key for ${handle}`);
      const publicJwk = toPublicJwk(jwk, { kid, alg });
      await this.#send('TagResource', what, { ...owner, kid }, () =>
        this.#client.send(new TagResourceCommand({ KeyId: handle, Tags: [{ TagKey: KID_TAG, TagValue: kid }] })),
      );
      return { kid, alg, publicJwk, handle };
    } catch (error) {
      // No orphan left behind: a key keyturn will never store is scheduled for deletion (best effort).
      await this.#client
        .send(new ScheduleKeyDeletionCommand({ KeyId: handle, PendingWindowInDays: PENDING_WINDOW_DAYS }))
        .catch(() => undefined);
      throw error instanceof KeyturnError ? error : this.#unavailable(what, owner, error);
    }
  }

  async signer(key: HeldKey): Promise<SignatureFunction> {
    const { keySpec, signingAlgorithm } = this.#kmsAlgorithm(key.alg, key.keySetId);
    const what = `sign with key ${key.kid} of key set ${key.keySetId}`;
    // Looked up once: a key gone, disabled or pending deletion fails here, before any token is built on it.
    const metadata = await this.#describe(key, what);
    if (metadata.KeyState !== 'Enabled') throw missing(key, `it is ${metadata.KeyState ?? 'in an unknown state'}`);
    if (metadata.KeySpec !== keySpec)
      throw missing(key, `it is a ${metadata.KeySpec} key, not the ${keySpec} ${key.alg} needs`);
    return async (signingInput) => {
      // RAW lets KMS hash what it signs (and an IAM policy require kms:MessageType RAW); KMS takes at most
      // 4096 bytes that way, so a longer signing input goes as its digest.
      const raw = signingInput.length <= RAW_MESSAGE_LIMIT;
      // Copied (or hashed) now: the key ring writes the next token's signing input into the same buffer
      // while this request is on its way.
      const message = raw ? Buffer.from(signingInput) : createHash('sha256').update(signingInput).digest();
      const { Signature } = await this.#send('Sign', what, key, () =>
        this.#client.send(
          new SignCommand({
            KeyId: key.handle,
            SigningAlgorithm: signingAlgorithm,
            MessageType: raw ? 'RAW' : 'DIGEST',
            Message: message,
          }),
        ),
      );
      if (Signature === undefined) throw this.#unavailable(what, key, new Error('Sign answered no signature'));
      return key.alg === 'ES256' ? derToJoseSignature(Signature, P256_INTEGER_BYTES) : Buffer.from(Signature);
    };
  }

  async destroy(key: HeldKey): Promise<void> {
    const what = `destroy key ${key.kid} of key set ${key.keySetId}`;
    try {
      await this.#client.send(
        new ScheduleKeyDeletionCommand({ KeyId: key.handle, PendingWindowInDays: PENDING_WINDOW_DAYS }),
      );
    } catch (error) {
      if (errorName(error) === 'NotFoundException') return;
      // KMS refuses to schedule a key already pending deletion: it is on its way out already.
      if (errorName(error) === 'KMSInvalidStateException') {
        if ((await this.#describe(key, what).catch(() => undefined))?.KeyState === 'PendingDeletion') return;
      }
      throw this.#failure('ScheduleKeyDeletion', what, key, error);
    }
  }

  async properties(key: HeldKey): Promise<CustodyKeyProperties> {
    const metadata = await this.#describe(key, `describe key ${key.kid} of key set ${key.keySetId}`);
    // KMS never exports the private half of a key it generated itself; imported key material (EXTERNAL) or
    // an external key store are another party's guarantee, and keyturn makes neither.
    return { extractable: metadata.Origin !== 'AWS_KMS' };
  }

  async close(): Promise<void> {
    this.#client.destroy();
  }

  #kmsAlgorithm(alg: SigningAlgorithm, keySetId: string): KmsAlgorithm {
    const found = KMS_ALGORITHMS[alg];
    if (found === undefined) {
      throw new KeyturnError(
        'ERR_CUSTODY_ALGORITHM_UNSUPPORTED',
        `key set ${keySetId} signs with ${alg}, which aws-kms custody cannot: AWS KMS signs with ${this.algorithms.join(', ')}; choose one of those or another custody`,
        { keySetId, field: 'algorithm' },
      );
    }
    return found;
  }

  async #describe(key: HeldKey, what: string): Promise<KeyMetadata> {
    const { KeyMetadata } = await this.#send('DescribeKey', what, key, () =>
      this.#client.send(new DescribeKeyCommand({ KeyId: key.handle })),
    );
    if (KeyMetadata === undefined) throw missing(key, 'DescribeKey answered nothing for it');
    return KeyMetadata;
  }

  /** Makes one KMS call (`operation`, for the permission it needs); any failure becomes a KeyturnError saying what could not be done. */
  async #send<T>(operation: string, what: string, about: Subject, call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (error) {
      throw this.#failure(operation, what, about, error);
    }
  }

  #failure(operation: string, what: string, about: Subject, error: unknown): KeyturnError {
    const name = errorName(error);
    if (about.handle !== undefined && KEY_GONE.has(name)) {
      return missing(about as HeldKey, `KMS answered ${name}: ${errorMessage(error)}`, error);
    }
    return this.#unavailable(what, about, error, operation);
  }

  #unavailable(what: string, about: Subject, error: unknown, operation?: string): KeyturnError {
    const permission = operation === undefined ? '' : ` and allow kms:${operation}`;
    return new KeyturnError(
      'ERR_CUSTODY_UNAVAILABLE',
      `aws-kms could not ${what}: ${errorName(error)}: ${errorMessage(error)}; check that AWS KMS is reachable ` +
        `(region, endpoint) and that keyturn's AWS credentials are valid${permission}`,
      { keySetId: about.keySetId, kid: about.kid, cause: error },
    );
  }
}

/** What a KMS call concerns: a key set, and a key once there is one (with its handle once stored). */
type Subject = KeyOwner & { kid?: string; handle?: string };

/** What KMS answers for a key that is gone, disabled or pending deletion. */
const KEY_GONE = new Set(['NotFoundException', 'DisabledException', 'KMSInvalidStateException']);

function missing(key: HeldKey, why: string, cause?: unknown): KeyturnError {
  return new KeyturnError(
    'ERR_CUSTODY_KEY_MISSING',
    `key ${key.kid} of key set ${key.keySetId} is not usable in AWS KMS (${key.handle}): ${why}; ` +
      'if it is still wanted, enable it or cancel its deletion in KMS, else revoke it',
    { keySetId: key.keySetId, kid: key.kid, cause },
  );
}

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : 'Error';
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
