import type { KekRing } from '../crypto/kek';
import type { CustodySettings } from '../domain/custody-settings';
import { KeyturnError } from '../domain/errors';
import type { KeyCustody } from './key-custody';
import { SealedCustody } from './sealed';

/** Makes the backend for a key set's custody settings (other than `sealed`, which needs only the KEKs). */
export type CustodyFactory<S extends CustodySettings> = (settings: S) => KeyCustody | Promise<KeyCustody>;

export interface CustodyRegistryOptions {
  /** The KEKs that seal and open `sealed` keys. */
  kekRing: KekRing;
  /** How to reach AWS KMS and a PKCS#11 token; the defaults load the backend modules on first use. */
  factories?: {
    'aws-kms'?: CustodyFactory<Extract<CustodySettings, { backend: 'aws-kms' }>>;
    pkcs11?: CustodyFactory<Extract<CustodySettings, { backend: 'pkcs11' }>>;
  };
}

/** The sealed custody of a policy that names none. */
export const SEALED: CustodySettings = { backend: 'sealed' };

/**
 * One backend per distinct custody settings, made on first use and shared by every key set that names
 * the same settings (one KMS client, one PKCS#11 session pool). The KMS and PKCS#11 modules load only
 * when a key set uses them, so that a deployment without them pays nothing.
 */
export class CustodyRegistry {
  readonly #sealed: SealedCustody;
  readonly #factories: NonNullable<CustodyRegistryOptions['factories']>;
  readonly #backends = new Map<string, Promise<KeyCustody>>();

  constructor(options: CustodyRegistryOptions) {
    this.#sealed = new SealedCustody(options.kekRing);
    this.#factories = options.factories ?? {};
  }

  /** The backend that holds keys generated under `settings` (absent: sealed). */
  get(settings: CustodySettings = SEALED): Promise<KeyCustody> {
    if (settings.backend === 'sealed') return Promise.resolve(this.#sealed);
    const name = JSON.stringify(settings);
    let backend = this.#backends.get(name);
    if (backend === undefined) {
      backend = Promise.resolve(this.#make(settings));
      // A backend that could not be made (a module missing, a token absent) is tried again next time.
      backend.catch(() => this.#backends.delete(name));
      this.#backends.set(name, backend);
    }
    return backend;
  }

  async close(): Promise<void> {
    const backends = [...this.#backends.values()];
    this.#backends.clear();
    await Promise.allSettled(backends.map(async (backend) => (await backend).close()));
  }

  async #make(settings: Exclude<CustodySettings, { backend: 'sealed' }>): Promise<KeyCustody> {
    switch (settings.backend) {
      case 'aws-kms': {
        const make = this.#factories['aws-kms'];
        if (make) return make(settings);
        const { AwsKmsCustody } = await import('./aws-kms.js');
        return new AwsKmsCustody({ region: settings.region });
      }
      case 'pkcs11': {
        const make = this.#factories.pkcs11;
        if (make) return make(settings);
        const { Pkcs11Custody } = await import('./pkcs11.js').catch((error: unknown) => {
          // pkcs11js is an optional dependency: a native addon that needs a C++ toolchain to install.
          if ((error as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw error;
          throw new KeyturnError(
            'ERR_CUSTODY_UNAVAILABLE',
            `the pkcs11 custody of token "${settings.tokenLabel}" needs the optional dependency pkcs11js, which is not installed: ` +
              'install it (`npm install pkcs11js`, with make and a C++ compiler on the machine) and restart',
            { field: 'custody', cause: error },
          );
        });
        return new Pkcs11Custody(settings);
      }
    }
  }
}
