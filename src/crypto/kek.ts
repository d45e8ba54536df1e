import { createHash, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { inspect } from 'node:util';
import { KeyturnError } from '../domain/errors';

const KEK_ENV = 'KEYTURN_KEK';

/** A KEK is an AES-256 key. */
const KEK_BYTES = 32;

/**
 * Canonical padded base64, as `openssl rand -base64 32` prints it. Checked up front because
 * Buffer.from(…, 'base64') silently skips characters it does not understand.
 */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * One key-encryption key. Its id is a fingerprint of the key, so KEKs need no names and a sealed
 * key records which KEK opens it. The bytes live in a KeyObject behind a private field, and
 * JSON.stringify and util.inspect show only the id.
 */
export class Kek {
  /** First 16 hex characters of the SHA-256 of the key bytes. */
  readonly id: string;
  readonly #key: KeyObject;

  /** Copies `bytes` (exactly 32); the caller may zero its buffer afterwards. */
  constructor(bytes: Uint8Array) {
    if (bytes.length !== KEK_BYTES) throw new TypeError(`a KEK must be ${KEK_BYTES} bytes, got ${bytes.length}`);
    this.id = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
    this.#key = createSecretKey(bytes);
  }

  /** The AES-256 key, for the envelope. A KeyObject never prints its bytes. */
  get key(): KeyObject {
    return this.#key;
  }

  toJSON(): { id: string } {
    return { id: this.id };
  }

  [inspect.custom](): string {
    return `Kek { id: '${this.id}' }`;
  }
}

/** The configured KEKs: `current` seals new keys; every KEK in the ring opens the keys it sealed. */
export class KekRing {
  /** The KEK that seals new keys: the first one configured. */
  readonly current: Kek;
  readonly #byId: ReadonlyMap<string, Kek>;

  /** `keks` must be non-empty; the first becomes `current`. */
  constructor(keks: readonly Kek[]) {
    const [current] = keks;
    if (current === undefined) throw new TypeError('a KEK ring needs at least one KEK');
    this.current = current;
    this.#byId = new Map(keks.map((kek) => [kek.id, kek]));
  }

  /** The ids of all KEKs, current first. */
  get ids(): string[] {
    return [...this.#byId.keys()];
  }

  /** The KEK with this id, if it is configured. */
  get(id: string): Kek | undefined {
    return this.#byId.get(id);
  }

  toJSON(): { current: string; ids: string[] } {
    return { current: this.current.id, ids: this.ids };
  }

  [inspect.custom](): string {
    return `KekRing { current: '${this.current.id}', ids: [${this.ids.map((id) => `'${id}'`).join(', ')}] }`;
  }
}

/**
 * Parses the value of KEYTURN_KEK: one or more comma-separated base64 KEKs of 32 bytes each.
 * The first seals new keys; the rest stay to open keys sealed before a KEK rotation.
 * Throws ERR_KEK_MISSING when empty or unset, ERR_KEK_INVALID naming the faulty entry.
 */
export function parseKekRing(value: string | undefined): KekRing {
  if (value === undefined || value.trim() === '') {
    throw new KeyturnError(
      'ERR_KEK_MISSING',
      `${KEK_ENV} is not set: set it to a base64 32-byte key, e.g. the output of \`openssl rand -base64 32\``,
      { field: KEK_ENV },
    );
  }
  return parseEntries(value, KEK_ENV, KEK_ENV);
}

/**
 * Loads the KEK file the embedded setup uses in place of KEYTURN_KEK, creating it (mode 0600,
 * directories as needed) with a random KEK when it does not exist yet.
 */
export async function loadOrCreateKekFile(path: string): Promise<{ ring: KekRing; created: boolean }> {
  let text = await readIfExists(path);
  let created = false;
  if (text === undefined) {
    created = await createKekFile(path);
    text = await readFile(path, 'utf8');
  }
  const source = `KEK file ${path}`;
  if (text.trim() === '') {
    throw new KeyturnError(
      'ERR_KEK_INVALID',
      `${source} is empty: put a base64 32-byte key in it, or delete it to have one generated`,
      { field: path },
    );
  }
  return { ring: parseEntries(text, source, path), created };
}

function parseEntries(value: string, source: string, field: string): KekRing {
  const keks: Kek[] = [];
  for (const [index, raw] of value.split(',').entries()) {
    const invalid = (problem: string) =>
      new KeyturnError('ERR_KEK_INVALID', `entry ${index + 1} of ${source} ${problem}`, { field });
    const entry = raw.trim();
    if (entry === '') throw invalid('is empty');
    if (!BASE64.test(entry)) throw invalid('is not valid base64');
    const bytes = Buffer.from(entry, 'base64');
    try {
      if (bytes.length !== KEK_BYTES) {
        throw invalid(`decodes to ${bytes.length} bytes; a KEK must be exactly ${KEK_BYTES}`);
      }
      const kek = new Kek(bytes);
      const earlier = keks.findIndex((k) => k.id === kek.id);
      if (earlier >= 0) throw invalid(`repeats entry ${earlier + 1}`);
      keks.push(kek);
    } finally {
      bytes.fill(0);
    }
  }
  return new KekRing(keks);
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Writes a new random KEK to `path` unless another process got there first; true if this call
 * created it. The key goes to a temporary file that is then hard-linked into place, so a
 * concurrent reader never sees a half-written file and an existing file is never overwritten.
 */
async function createKekFile(path: string): Promise<boolean> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  const temporary = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const bytes = randomBytes(KEK_BYTES);
  try {
    await writeFile(temporary, `${bytes.toString('base64')}\n`, { mode: 0o600, flag: 'wx' });
    return await link(temporary, path).then(
      () => true,
      (error: NodeJS.ErrnoException) => {
        if (error.code === 'EEXIST') return false;
        throw error;
      },
    );
  } finally {
    bytes.fill(0);
    await unlink(temporary).catch(() => undefined);
  }
}
