import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { KeyturnError } from '../../src/domain/errors';
import { loadOrCreateKekFile, parseKekRing } from '../../src/crypto/kek';

const kekA = randomBytes(32);
const kekB = randomBytes(32);
const fingerprint = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex').slice(0, 16);

/** Every printable form of a key that must never show up in output. */
const revealed = (text: string, ...keys: Buffer[]) =>
  keys.some((key) =>
    [key.toString('base64'), key.toString('base64url'), key.toString('hex')].some((form) => text.includes(form)),
  );

function keyturnError(fn: () => unknown): KeyturnError {
  try {
    fn();
  } catch (error) {
    if (error instanceof KeyturnError) return error;
    throw error;
  }
  throw new Error('expected a KeyturnError');
}

describe('parseKekRing', () => {
  test('one KEK is current and is found by its fingerprint', () => {
    const ring = parseKekRing(kekA.toString('base64'));
    expect(ring.current.id).toBe(fingerprint(kekA));
    expect(ring.current.id).toMatch(/^[0-9a-f]{16}$/);
    expect(ring.get(ring.current.id)).toBe(ring.current);
    expect(ring.ids).toEqual([ring.current.id]);
  });

  test('several KEKs: the first is current, all are found, ids are stable and distinct', () => {
    const value = ` ${kekA.toString('base64')} , ${kekB.toString('base64')}\n`;
    const ring = parseKekRing(value);
    expect(ring.current.id).toBe(fingerprint(kekA));
    expect(ring.ids).toEqual([fingerprint(kekA), fingerprint(kekB)]);
    expect(ring.get(fingerprint(kekB))?.id).toBe(fingerprint(kekB));
    expect(ring.get('0000000000000000')).toBeUndefined();
    expect(parseKekRing(value).ids).toEqual(ring.ids);
  });

  test.each([
    ['unset', undefined],
    ['empty', ''],
    ['blank', '  \n'],
  ])('%s → ERR_KEK_MISSING', (_, value) => {
    expect(keyturnError(() => parseKekRing(value)).code).toBe('ERR_KEK_MISSING');
  });

  test.each([
    ['too short', () => randomBytes(16).toString('base64')],
    ['too long', () => randomBytes(33).toString('base64')],
    ['not base64', () => `${kekA.toString('base64').slice(0, -2)}!=`],
    ['base64url', () => Buffer.from('fb'.repeat(16), 'hex').toString('base64url')],
    ['missing padding', () => kekA.toString('base64').replace(/=+$/, '')],
    ['an empty entry', () => `${kekA.toString('base64')},`],
    ['a repeated KEK', () => `${kekA.toString('base64')},${kekB.toString('base64')},${kekA.toString('base64')}`],
  ])('%s → ERR_KEK_INVALID without echoing the value', (_, value) => {
    const bad = value();
    const error = keyturnError(() => parseKekRing(`${kekB.toString('base64')},${bad}`));
    expect(error.code).toBe('ERR_KEK_INVALID');
    expect(error.field).toBe('KEYTURN_KEK');
    for (const entry of bad.split(',').filter(Boolean)) expect(error.message).not.toContain(entry);
    expect(revealed(error.message, kekA, kekB)).toBe(false);
  });

  test('JSON.stringify and util.inspect show ids, never key bytes', () => {
    const ring = parseKekRing(`${kekA.toString('base64')},${kekB.toString('base64')}`);
    const outputs = [
      JSON.stringify(ring),
      JSON.stringify(ring.current),
      JSON.stringify({ ...ring }),
      inspect(ring, { showHidden: true, depth: Infinity }),
      inspect(ring.current, { showHidden: true, depth: Infinity }),
      inspect(ring.current.key, { showHidden: true, depth: Infinity }),
      String(ring),
    ];
    for (const output of outputs) expect(revealed(output, kekA, kekB)).toBe(false);
    expect(JSON.parse(JSON.stringify(ring))).toEqual({ current: fingerprint(kekA), ids: ring.ids });
    expect(inspect(ring)).toContain(fingerprint(kekB));
  });
});

describe('loadOrCreateKekFile', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'keyturn-kek-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('creates a 0600 file with a random KEK, then reads the same KEK back', async () => {
    const path = join(dir, 'nested', 'dir', 'kek');
    const first = await loadOrCreateKekFile(path);
    expect(first.created).toBe(true);
    if (process.platform !== 'win32') expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(Buffer.from((await readFile(path, 'utf8')).trim(), 'base64')).toHaveLength(32);

    const second = await loadOrCreateKekFile(path);
    expect(second.created).toBe(false);
    expect(second.ring.current.id).toBe(first.ring.current.id);
  });

  test('concurrent first calls agree on one KEK', async () => {
    const path = join(dir, 'kek');
    const results = await Promise.all([1, 2, 3, 4].map(() => loadOrCreateKekFile(path)));
    expect(results.filter((result) => result.created)).toHaveLength(1);
    expect(new Set(results.map((result) => result.ring.current.id)).size).toBe(1);
  });

  test('reads an existing KEK file', async () => {
    const path = join(dir, 'kek');
    await writeFile(path, `${kekA.toString('base64')}\n`);
    const { ring, created } = await loadOrCreateKekFile(path);
    expect(created).toBe(false);
    expect(ring.current.id).toBe(fingerprint(kekA));
  });

  test.each([
    ['an empty', ''],
    ['a malformed', 'hello'],
  ])('%s file → ERR_KEK_INVALID', async (_, content) => {
    const path = join(dir, 'kek');
    await writeFile(path, content);
    await expect(loadOrCreateKekFile(path)).rejects.toMatchObject({ code: 'ERR_KEK_INVALID', field: path });
  });
});
