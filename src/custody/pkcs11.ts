import { createHash, randomBytes } from 'node:crypto';
import * as pkcs11 from 'pkcs11js';
import { toPublicJwk } from '../crypto/generate';
import { jwkThumbprint } from '../crypto/kid';
import type { SigningAlgorithm } from '../domain/algorithms';
import { CUSTODY_ALGORITHMS, type Pkcs11CustodySettings } from '../domain/custody-settings';
import { KeyturnError } from '../domain/errors';
import type { CustodyKey, CustodyKeyProperties, HeldKey, KeyCustody, KeyOwner, SignatureFunction } from './key-custody';
import { errorText } from './pkcs11-module';
import { findByKeyId, flag, keyPairTemplates, readPublicJwk, type Pkcs11Algorithm } from './pkcs11-objects';
import { pinSourceOf } from './pkcs11-pin';
import { ignoreErrors, isPkcs11Error, Pkcs11Sessions, type SessionWork } from './pkcs11-sessions';

/**
 * Sessions per custody. Signatures run on libuv's worker threads (4 by default), one per session at a
 * time, so four sessions let four run at once; more would only queue there.
 */
const SESSIONS = 4;

interface Signing {
  mechanism: pkcs11.Mechanism;
  /** Room for the signature: 64 bytes for P-256, up to a 4096-bit modulus for RSA. */
  room: number;
  /** What the token signs, made before any await: the caller may reuse the signing input once the function returns. */
  prepare(signingInput: Buffer): Buffer;
}

/** RSASSA-PSS with SHA-256 and MGF1-SHA-256, salted with as many bytes as its hash (RFC 7518 §3.5). */
const PSS_SHA256: pkcs11.RsaPSS = {
  type: pkcs11.CK_PARAMS_RSA_PSS,
  hashAlg: pkcs11.CKM_SHA256,
  mgf: pkcs11.CKG_MGF1_SHA256,
  saltLen: 32,
};

/**
 * The token's mechanism for each algorithm. ES256 signs the SHA-256 digest with CKM_ECDSA, whose output
 * is already JOSE's r‖s: CKM_ECDSA_SHA256 is missing from many tokens (SoftHSM2 2.6 among them), and
 * the digest is no secret.
 */
const SIGNING: Record<Pkcs11Algorithm, Signing> = {
  ES256: {
    mechanism: { mechanism: pkcs11.CKM_ECDSA },
    room: 64,
    prepare: (input) => createHash('sha256').update(input).digest(),
  },
  RS256: {
    mechanism: { mechanism: pkcs11.CKM_SHA256_RSA_PKCS },
    room: 512,
    prepare: (input) => Buffer.from(input),
  },
  PS256: {
    mechanism: {
      mechanism: pkcs11.CKM_SHA256_RSA_PKCS_PSS,
      parameter: PSS_SHA256,
    },
    room: 512,
    prepare: (input) => Buffer.from(input),
  },
};

/** Object handles go stale when the object is destroyed or its session's login state is lost. */
const HANDLE_STALE = new Set([pkcs11.CKR_OBJECT_HANDLE_INVALID, pkcs11.CKR_KEY_HANDLE_INVALID]);

/**
 * Keys generated on a PKCS#11 token (an HSM, or SoftHSM2), sensitive and never extractable: keyturn
 * sees only their public halves. Each key pair carries a random 16-byte CKA_ID (its handle, in hex)
 * and the CKA_LABEL `keyturn:<key set>:<kid>`. Signing is C_Sign on one of a small pool of logged-in
 * sessions, run on a libuv worker thread (C_SignAsync) so that a network HSM's round trip never blocks
 * the event loop; on SoftHSM2 four sessions also sign faster than synchronous calls on one.
 */
export class Pkcs11Custody implements KeyCustody {
  readonly backend = 'pkcs11';
  readonly algorithms = CUSTODY_ALGORITHMS.pkcs11;
  readonly privateKeysPassThroughKeyturn = false;
  readonly #tokenLabel: string;
  readonly #module: string;
  readonly #sessions: Pkcs11Sessions;

  /** Checks the settings; the module is loaded and the token logged in to on first use. */
  constructor(settings: Pkcs11CustodySettings) {
    for (const field of ['module', 'tokenLabel'] as const) {
      if (typeof settings[field] !== 'string' || settings[field] === '') {
        throw new KeyturnError('ERR_CONFIG_INVALID', `the pkcs11 custody needs custody.${field}`, { field });
      }
    }
    this.#tokenLabel = settings.tokenLabel;
    this.#module = settings.module;
    const pin = pinSourceOf(settings);
    this.#sessions = new Pkcs11Sessions({
      module: settings.module,
      tokenLabel: settings.tokenLabel,
      pin,
      size: SESSIONS,
    });
  }

  async generate(alg: SigningAlgorithm, owner: KeyOwner): Promise<CustodyKey> {
    const supported = this.#supported(alg, owner.keySetId);
    return this.#run(`generate a new ${alg} key for key set "${owner.keySetId}"`, owner, async (library, session) => {
      const id = randomBytes(16);
      const templates = keyPairTemplates(supported, id, `keyturn:${owner.keySetId}`);
      const pair = await library.C_GenerateKeyPairAsync(
        session,
        templates.mechanism,
        templates.publicKey,
        templates.privateKey,
      );
      try {
        const jwk = readPublicJwk(library, session, pair.publicKey, supported);
        const kid = jwkThumbprint(jwk);
        if (kid === undefined) {
          throw new TypeError(`the token generated a new ${alg} key keyturn cannot name by its thumbprint`);
        }
        const label = [{ type: pkcs11.CKA_LABEL, value: `keyturn:${owner.keySetId}:${kid}` }];
        library.C_SetAttributeValue(session, pair.privateKey, label);
        library.C_SetAttributeValue(session, pair.publicKey, label);
        return { kid, alg, publicJwk: toPublicJwk(jwk, { kid, alg }), handle: id.toString('hex') };
      } catch (error) {
        // Not left behind half made: keyturn would never use or destroy a key it has no record of.
        for (const object of [pair.privateKey, pair.publicKey]) {
          ignoreErrors(() => library.C_DestroyObject(session, object));
        }
        throw error;
      }
    });
  }

  async signer(key: HeldKey): Promise<SignatureFunction> {
    const signing = SIGNING[this.#supported(key.alg, key.keySetId)];
    const id = keyIdOf(key);
    const find = (library: pkcs11.PKCS11, session: pkcs11.Handle) => {
      const [found] = findByKeyId(library, session, pkcs11.CKO_PRIVATE_KEY, id);
      if (found === undefined) throw this.#missing(key);
      return { handle: found, generation: this.#sessions.generation };
    };
    let privateKey = await this.#run(`find key ${key.kid} of key set "${key.keySetId}"`, key, find);
    const action = `sign with key ${key.kid} of key set "${key.keySetId}"`;

    return (signingInput) => {
      const data = signing.prepare(signingInput);
      return this.#run(action, key, async (library, session) => {
        // Handles found before a lost session may be gone with its login: find the key again.
        if (privateKey.generation !== this.#sessions.generation) privateKey = find(library, session);
        try {
          library.C_SignInit(session, signing.mechanism, privateKey.handle);
        } catch (error) {
          if (!isPkcs11Error(error, HANDLE_STALE)) throw error;
          privateKey = find(library, session); // destroyed meanwhile: ERR_CUSTODY_KEY_MISSING
          library.C_SignInit(session, signing.mechanism, privateKey.handle);
        }
        const signature = await library.C_SignAsync(session, data, Buffer.alloc(signing.room));
        if (key.alg === 'ES256' && signature.length !== 64) {
          throw new KeyturnError(
            'ERR_CUSTODY_UNAVAILABLE',
            `the token answered a ${signature.length}-byte ECDSA signature, not 64 bytes (r‖s)`,
          );
        }
        return signature;
      });
    };
  }

  /** Destroys the private and public objects; none found means already destroyed. */
  async destroy(key: HeldKey): Promise<void> {
    const id = keyIdOf(key);
    await this.#run(`destroy key ${key.kid} of key set "${key.keySetId}"`, key, (library, session) => {
      for (const objectClass of [pkcs11.CKO_PRIVATE_KEY, pkcs11.CKO_PUBLIC_KEY]) {
        for (const object of findByKeyId(library, session, objectClass, id)) {
          try {
            library.C_DestroyObject(session, object);
          } catch (error) {
            if (!isPkcs11Error(error, HANDLE_STALE)) throw error; // destroyed by someone else meanwhile
          }
        }
      }
    });
  }

  /**
   * Read from the token: extractable unless the private object is, and always was, sensitive and
   * never extractable (CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE).
   */
  async properties(key: HeldKey): Promise<CustodyKeyProperties> {
    const id = keyIdOf(key);
    return this.#run(`read key ${key.kid} of key set "${key.keySetId}"`, key, (library, session) => {
      const [privateKey] = findByKeyId(library, session, pkcs11.CKO_PRIVATE_KEY, id);
      if (privateKey === undefined) throw this.#missing(key);
      const [extractable, sensitive, neverExtractable, alwaysSensitive] = library
        .C_GetAttributeValue(session, privateKey, [
          { type: pkcs11.CKA_EXTRACTABLE },
          { type: pkcs11.CKA_SENSITIVE },
          { type: pkcs11.CKA_NEVER_EXTRACTABLE },
          { type: pkcs11.CKA_ALWAYS_SENSITIVE },
        ])
        .map((attribute) => flag(attribute.value));
      return { extractable: extractable || !sensitive || !neverExtractable || !alwaysSensitive };
    });
  }

  /** Closes the sessions (logging out if no other custody in this process uses the token) and finalises the module if this was its last user. */
  async close(): Promise<void> {
    await this.#sessions.close();
  }

  #supported(alg: SigningAlgorithm, keySetId: string): Pkcs11Algorithm {
    if ((this.algorithms as readonly string[]).includes(alg)) return alg as Pkcs11Algorithm;
    throw new KeyturnError(
      'ERR_CUSTODY_ALGORITHM_UNSUPPORTED',
      `key set "${keySetId}" uses ${alg}, which the pkcs11 custody does not support (it supports ` +
        `${this.algorithms.join(', ')}): choose one of those algorithms, or another custody for this key set`,
      { keySetId, field: 'algorithm' },
    );
  }

  /**
   * Runs work on a session. Token failures become ERR_CUSTODY_UNAVAILABLE naming the token, the key and
   * the PKCS#11 return value; keyturn's own errors (a wrong PIN, a missing key) pass as they are.
   */
  async #run<T>(action: string, owner: KeyOwner & { kid?: string }, work: SessionWork<T>): Promise<T> {
    try {
      return await this.#sessions.use(work);
    } catch (error) {
      if (error instanceof KeyturnError && error.code !== 'ERR_CUSTODY_UNAVAILABLE') throw error;
      if (error instanceof TypeError) throw error; // misuse, not the token's doing
      const check =
        error instanceof KeyturnError
          ? ''
          : `; check that the token is connected and the module ${this.#module} can reach it`;
      throw new KeyturnError(
        'ERR_CUSTODY_UNAVAILABLE',
        `pkcs11 token "${this.#tokenLabel}" could not ${action}: ${errorText(error)}${check}`,
        { keySetId: owner.keySetId, kid: owner.kid, cause: error },
      );
    }
  }

  #missing(key: HeldKey): KeyturnError {
    return new KeyturnError(
      'ERR_CUSTODY_KEY_MISSING',
      `key ${key.kid} of key set "${key.keySetId}" is not on pkcs11 token "${this.#tokenLabel}" (no private key ` +
        `object with CKA_ID ${key.handle}): it was destroyed, or the token is not the one it was generated on; ` +
        `if it was deleted outside keyturn, revoke it (\`keyturn revoke ${key.keySetId} ${key.kid} --reason ...\`) and a new key replaces it`,
      { keySetId: key.keySetId, kid: key.kid },
    );
  }
}

/** The CKA_ID a key's handle names (hex). */
function keyIdOf(key: HeldKey): Buffer {
  if (!/^(?:[0-9a-f]{2})+$/i.test(key.handle)) {
    throw new KeyturnError(
      'ERR_CUSTODY_KEY_MISSING',
      `key ${key.kid} of key set "${key.keySetId}" has the handle "${key.handle}", which names no pkcs11 object (a hex CKA_ID)`,
      { keySetId: key.keySetId, kid: key.kid },
    );
  }
  return Buffer.from(key.handle, 'hex');
}
