import * as pkcs11 from 'pkcs11js';
import { KeyturnError } from '../domain/errors';
import { errorText, Pkcs11Module } from './pkcs11-module';
import type { PinSource } from './pkcs11-pin';

/** CK_STATE values of a session whose user is logged in (pkcs11js exports no CKS_ constants). */
const LOGGED_IN_STATES = new Set([1 /* CKS_RO_USER_FUNCTIONS */, 3 /* CKS_RW_USER_FUNCTIONS */]);

/**
 * Errors after which a session is gone, and most likely every session of the token with it (closed
 * underneath us, token removed, logged out): open a fresh one, logging in again.
 */
const SESSION_LOST = new Set([
  pkcs11.CKR_SESSION_HANDLE_INVALID,
  pkcs11.CKR_SESSION_CLOSED,
  pkcs11.CKR_DEVICE_REMOVED,
  pkcs11.CKR_DEVICE_ERROR,
  pkcs11.CKR_TOKEN_NOT_PRESENT,
  pkcs11.CKR_USER_NOT_LOGGED_IN,
]);

const PIN_REFUSED = new Set([
  pkcs11.CKR_PIN_INCORRECT,
  pkcs11.CKR_PIN_INVALID,
  pkcs11.CKR_PIN_LEN_RANGE,
  pkcs11.CKR_PIN_EXPIRED,
  pkcs11.CKR_PIN_LOCKED,
]);

export function isPkcs11Error(error: unknown, codes: ReadonlySet<number>): boolean {
  return error instanceof pkcs11.Pkcs11Error && codes.has(error.code);
}

export interface Pkcs11SessionsOptions {
  module: string;
  tokenLabel: string;
  pin: PinSource;
  /** Sessions open at most; one signature at a time runs on each. */
  size: number;
}

/** What work on a session is given: the module's functions and a logged-in read-write session of its own. */
export type SessionWork<T> = (library: pkcs11.PKCS11, session: pkcs11.Handle) => T | Promise<T>;

interface OpenSession {
  handle: pkcs11.Handle;
  /** The pool's generation when it was opened: a session older than the last loss is not used again. */
  generation: number;
}

/**
 * A small pool of logged-in sessions on one token. The module is loaded, the token found by its label
 * and logged in to on first use. A session that fails with a lost-session error is dropped, and the
 * idle ones with it; the work then runs once more on a freshly opened session (logging in again if the
 * token was logged out). The PIN is read from its source at each login, and at the first session on a
 * token another custody of this process logged in to (to check it), and never kept.
 */
export class Pkcs11Sessions {
  readonly #options: Pkcs11SessionsOptions;
  #module: Pkcs11Module | undefined;
  #slot: pkcs11.Handle | undefined;
  #enteredToken = false;
  readonly #idle: OpenSession[] = [];
  #open = 0;
  #inUse = 0;
  readonly #waiting: (() => void)[] = [];
  #generation = 0;
  #closed = false;
  #drained: (() => void) | undefined;

  constructor(options: Pkcs11SessionsOptions) {
    this.#options = options;
  }

  /** Counts session losses: an object handle found before the last loss must be found again. */
  get generation(): number {
    return this.#generation;
  }

  /** Runs `work` on a session of its own; after a lost session, once more on a fresh one. */
  async use<T>(work: SessionWork<T>): Promise<T> {
    try {
      return await this.#useOnce(work);
    } catch (error) {
      if (!isPkcs11Error(error, SESSION_LOST)) throw error;
      return this.#useOnce(work);
    }
  }

  /** Waits for work in progress, logs out (if no other custody in this process uses the token), closes the sessions and releases the module. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#wakeAll();
    if (this.#inUse > 0) await new Promise<void>((resolve) => (this.#drained = resolve));
    const module = this.#module;
    if (module === undefined) return;
    const library = module.library;
    const idle = this.#idle.splice(0);
    if (this.#enteredToken && module.leaveToken(this.#options.tokenLabel) && idle.length > 0) {
      ignoreErrors(() => library.C_Logout(idle[0].handle));
    }
    for (const session of idle) ignoreErrors(() => library.C_CloseSession(session.handle));
    module.release();
  }

  async #useOnce<T>(work: SessionWork<T>): Promise<T> {
    const session = await this.#take();
    const library = this.#library();
    let result: T;
    try {
      result = await work(library, session.handle);
    } catch (error) {
      if (isPkcs11Error(error, SESSION_LOST)) this.#lose(session);
      else this.#give(session);
      throw error;
    }
    this.#give(session);
    return result;
  }

  async #take(): Promise<OpenSession> {
    for (;;) {
      if (this.#closed) throw new TypeError(`the pkcs11 custody of token "${this.#options.tokenLabel}" is closed`);
      const idle = this.#idle.pop();
      if (idle !== undefined) {
        this.#inUse += 1;
        return idle;
      }
      if (this.#open < this.#options.size) {
        this.#open += 1;
        this.#inUse += 1;
        try {
          return await this.#openSession();
        } catch (error) {
          this.#open -= 1;
          this.#inUse -= 1;
          if (isPkcs11Error(error, SESSION_LOST)) this.#slot = undefined; // the token is gone from its slot
          this.#settled();
          throw error;
        }
      }
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    }
  }

  #give(session: OpenSession): void {
    this.#inUse -= 1;
    if (session.generation === this.#generation && !this.#closed) this.#idle.push(session);
    else this.#closeSession(session);
    this.#settled();
  }

  /** A lost session means the token's other sessions are most likely lost too: none opened before now is used again. */
  #lose(session: OpenSession): void {
    this.#inUse -= 1;
    this.#generation += 1;
    this.#slot = undefined; // a token taken out and put back may sit in another slot
    this.#closeSession(session);
    for (const idle of this.#idle.splice(0)) this.#closeSession(idle);
    this.#wakeAll();
    this.#settled();
  }

  #closeSession(session: OpenSession): void {
    this.#open -= 1;
    ignoreErrors(() => this.#library().C_CloseSession(session.handle));
  }

  /** Wakes one waiter (a session or room for one is free), or lets close() go on once nothing is in use. */
  #settled(): void {
    this.#waiting.shift()?.();
    if (this.#inUse === 0) this.#drained?.();
  }

  #wakeAll(): void {
    for (const wake of this.#waiting.splice(0)) wake();
  }

  #library(): pkcs11.PKCS11 {
    this.#module ??= Pkcs11Module.acquire(this.#options.module);
    return this.#module.library;
  }

  async #openSession(): Promise<OpenSession> {
    const library = this.#library();
    const generation = this.#generation;
    this.#slot ??= this.#findSlot(library);
    const handle = library.C_OpenSession(this.#slot, pkcs11.CKF_SERIAL_SESSION | pkcs11.CKF_RW_SESSION);
    try {
      // Login is per application and token: only the first session, or the first after a logout, logs in.
      if (!LOGGED_IN_STATES.has(library.C_GetSessionInfo(handle).state)) await this.#login(library, handle);
      else if (!this.#enteredToken) this.#checkLoginPin(await this.#options.pin.read());
    } catch (error) {
      ignoreErrors(() => library.C_CloseSession(handle));
      throw error;
    }
    if (!this.#enteredToken) {
      this.#module?.enterToken(this.#options.tokenLabel);
      this.#enteredToken = true;
    }
    return { handle, generation };
  }

  async #login(library: pkcs11.PKCS11, session: pkcs11.Handle): Promise<void> {
    const { pin, tokenLabel } = this.#options;
    const value = await pin.read();
    try {
      library.C_Login(session, pkcs11.CKU_USER, value);
      this.#module!.rememberLogin(tokenLabel, value);
    } catch (error) {
      // Another session got there first.
      if (isPkcs11Error(error, new Set([pkcs11.CKR_USER_ALREADY_LOGGED_IN]))) return this.#checkLoginPin(value);
      if (!isPkcs11Error(error, PIN_REFUSED)) throw error;
      throw new KeyturnError(
        'ERR_CONFIG_INVALID',
        `pkcs11 token "${tokenLabel}" refused the user PIN from the ${pin.description} (${errorText(error)}): ` +
          `put the token's user PIN there (a locked PIN must be reset by the token's security officer)`,
        { field: pin.field, cause: error },
      );
    }
  }

  /**
   * The token is logged in already, by another custody of this process, and does not check this PIN:
   * keyturn does, so that a wrong one fails now rather than at whichever login comes after a restart.
   */
  #checkLoginPin(value: string): void {
    const { pin, tokenLabel } = this.#options;
    if (this.#module!.isLoginPin(tokenLabel, value) !== false) return;
    throw new KeyturnError(
      'ERR_CONFIG_INVALID',
      `pkcs11 token "${tokenLabel}" is logged in already with a user PIN other than the one in the ${pin.description}: ` +
        `every custody naming this token must give its user PIN (this one would be refused at the token's next login)`,
      { field: pin.field },
    );
  }

  #findSlot(library: pkcs11.PKCS11): pkcs11.Handle {
    const { tokenLabel, module } = this.#options;
    const present: string[] = [];
    for (const slot of library.C_GetSlotList(true)) {
      // Token labels are blank-padded to 32 bytes.
      const label = library.C_GetTokenInfo(slot).label.trimEnd();
      if (label === tokenLabel) return slot;
      if (label !== '') present.push(`"${label}"`);
    }
    throw new KeyturnError(
      'ERR_CUSTODY_UNAVAILABLE',
      `no token labelled "${tokenLabel}" is present in the PKCS#11 module ${module} (tokens present: ` +
        `${present.join(', ') || 'none'}); check custody.tokenLabel and that the token is connected and initialised`,
      { field: 'tokenLabel' },
    );
  }
}

/** For clearing up, which is best effort: the session or object may already be gone with the token, and an earlier error is the one to report. */
export function ignoreErrors(action: () => void): void {
  try {
    action();
  } catch {
    // nothing left to release
  }
}
