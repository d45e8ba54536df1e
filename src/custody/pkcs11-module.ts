import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { realpathSync } from 'node:fs';
import * as pkcs11 from 'pkcs11js';
import { KeyturnError } from '../domain/errors';

interface LoadedModule {
  library: pkcs11.PKCS11;
  users: number;
  /** False when something else in this process had already initialised the module: it finalises it, not us. */
  initialisedHere: boolean;
  /** Per token label, how many users are logged in to it: PKCS#11 login is per application and token, not per session. */
  tokenUsers: Map<string, number>;
  /**
   * Per token label, an HMAC of the PIN keyturn logged in to it with (under a key made for this load,
   * never the PIN): a later user, whose own PIN the token no longer checks, is checked against it.
   */
  loginPins: Map<string, Buffer>;
  loginPinKey: Buffer;
}

/**
 * C_Initialize and C_Finalize are per process and module, so every custody for one module shares one
 * loaded library (keyed by the module's real path): the first user initialises it, the last finalises it.
 */
const loaded = new Map<string, LoadedModule>();

/** One user's share of a loaded PKCS#11 module. */
export class Pkcs11Module {
  readonly #key: string;
  readonly #module: LoadedModule;
  #released = false;

  private constructor(key: string, module: LoadedModule) {
    this.#key = key;
    this.#module = module;
  }

  /** Loads and initialises the module at `modulePath`, or shares the copy already loaded. */
  static acquire(modulePath: string): Pkcs11Module {
    const key = realPath(modulePath);
    let module = loaded.get(key);
    if (module === undefined) {
      module = initialise(modulePath);
      loaded.set(key, module);
    }
    module.users += 1;
    return new Pkcs11Module(key, module);
  }

  get library(): pkcs11.PKCS11 {
    if (this.#released) throw new TypeError('this share of the PKCS#11 module was released');
    return this.#module.library;
  }

  /** Counts a login to `tokenLabel`; the token stays logged in until the last user leaves it. */
  enterToken(tokenLabel: string): void {
    this.#module.tokenUsers.set(tokenLabel, (this.#module.tokenUsers.get(tokenLabel) ?? 0) + 1);
  }

  /** Whether the caller was the token's last user, and so should log out. */
  leaveToken(tokenLabel: string): boolean {
    const users = (this.#module.tokenUsers.get(tokenLabel) ?? 1) - 1;
    if (users > 0) {
      this.#module.tokenUsers.set(tokenLabel, users);
      return false;
    }
    this.#module.tokenUsers.delete(tokenLabel);
    this.#module.loginPins.delete(tokenLabel);
    return true;
  }

  /** Notes that `pin` logged in to `tokenLabel` (as an HMAC, not the PIN). */
  rememberLogin(tokenLabel: string, pin: string): void {
    this.#module.loginPins.set(tokenLabel, this.#pinDigest(pin));
  }

  /** Whether `pin` is the PIN keyturn logged in to `tokenLabel` with; undefined when keyturn did not log it in. */
  isLoginPin(tokenLabel: string, pin: string): boolean | undefined {
    const loggedInWith = this.#module.loginPins.get(tokenLabel);
    return loggedInWith === undefined ? undefined : timingSafeEqual(loggedInWith, this.#pinDigest(pin));
  }

  #pinDigest(pin: string): Buffer {
    return createHmac('sha256', this.#module.loginPinKey).update(pin, 'utf8').digest();
  }

  /** Gives this share back; the last one finalises and unloads the module. Idempotent. */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    const module = this.#module;
    module.users -= 1;
    if (module.users > 0) return;
    loaded.delete(this.#key);
    try {
      if (module.initialisedHere) module.library.C_Finalize();
    } finally {
      module.library.close();
    }
  }
}

function initialise(modulePath: string): LoadedModule {
  const library = new pkcs11.PKCS11();
  try {
    library.load(modulePath);
  } catch (error) {
    throw new KeyturnError(
      'ERR_CONFIG_INVALID',
      `cannot load the PKCS#11 module ${modulePath} (${errorText(error)}): set custody.module to the HSM vendor's PKCS#11 ` +
        `library (for SoftHSM2 on Debian, /usr/lib/softhsm/libsofthsm2.so)`,
      { field: 'module', cause: error },
    );
  }
  try {
    // The library may be called from libuv's worker threads (asynchronous signing): let it lock with the OS's primitives.
    library.C_Initialize({ flags: pkcs11.CKF_OS_LOCKING_OK });
    return { library, users: 0, initialisedHere: true, ...noLogins() };
  } catch (error) {
    if (error instanceof pkcs11.Pkcs11Error && error.code === pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      return { library, users: 0, initialisedHere: false, ...noLogins() };
    }
    library.close();
    throw error;
  }
}

function noLogins(): Pick<LoadedModule, 'tokenUsers' | 'loginPins' | 'loginPinKey'> {
  return { tokenUsers: new Map(), loginPins: new Map(), loginPinKey: randomBytes(32) };
}

/** The module's real path, so that a symlink and its target share one initialisation. */
function realPath(modulePath: string): string {
  try {
    return realpathSync(modulePath);
  } catch {
    return modulePath; // loading it reports the missing file
  }
}

/** A PKCS#11 error by its CKR_ name (what pkcs11js puts in the message), anything else by its message. */
export function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
