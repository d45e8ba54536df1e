import { randomBytes } from 'node:crypto';
import { KeyturnError } from '../../src/domain/errors';
import { openPrivateKey, sealPrivateKey } from '../../src/crypto/envelope';
import { generateSigningKey, type GeneratedSigningKey } from '../../src/crypto/generate';
import { parseKekRing } from '../../src/crypto/kek';

const kekA = randomBytes(32);
const kekB = randomBytes(32);
const ringA = parseKekRing(kekA.toString('base64'));
const ringB = parseKekRing(kekB.toString('base64'));
/** KEK B was rotated in; A stays to open what it sealed before. */
const ringBA = parseKekRing(`${kekB.toString('base64')},${kekA.toString('base64')}`);
const context = { keySetId: 'payments', kid: 'kid-1' };

let key: GeneratedSigningKey;
beforeAll(async () => {
  key = await generateSigningKey('ES256');
});

/** Runs `fn`, expecting a KeyturnError whose message shows neither a KEK nor the private key. */
function keyturnError(fn: () => unknown): KeyturnError {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(KeyturnError);
  const { message } = thrown as KeyturnError;
  for (const secret of [kekA.toString('base64'), kekB.toString('base64'), key.privateJwk.d ?? '']) {
    expect(message).not.toContain(secret);
  }
  return thrown as KeyturnError;
}

describe('sealPrivateKey / openPrivateKey', () => {
  test.each(['ES256', 'RS256', 'EdDSA'] as const)('%s private JWK round trips', async (alg) => {
    const { privateJwk } = await generateSigningKey(alg);
    const { kekId, sealed } = sealPrivateKey(privateJwk, ringA, context);
    expect(kekId).toBe(ringA.current.id);
    expect(openPrivateKey(sealed, kekId, ringA, context)).toEqual(privateJwk);
  });

  test('layout: version byte, then a fresh IV each time', () => {
    const first = sealPrivateKey(key.privateJwk, ringA, context).sealed;
    const second = sealPrivateKey(key.privateJwk, ringA, context).sealed;
    expect(first[0]).toBe(1);
    expect(first.length).toBeGreaterThan(1 + 12 + 16);
    expect(first.subarray(1, 13).equals(second.subarray(1, 13))).toBe(false);
  });

  test('the sealed bytes do not contain the private key', () => {
    const { sealed } = sealPrivateKey(key.privateJwk, ringA, context);
    const d = key.privateJwk.d ?? '';
    expect(d).not.toBe('');
    expect(sealed.includes(Buffer.from(d))).toBe(false);
    expect(sealed.includes(Buffer.from(d, 'base64url'))).toBe(false);
    expect(sealed.includes(Buffer.from(JSON.stringify(key.privateJwk)))).toBe(false);
  });

  test('a ring without the sealing KEK → ERR_KEK_UNKNOWN', () => {
    const { kekId, sealed } = sealPrivateKey(key.privateJwk, ringA, context);
    const error = keyturnError(() => openPrivateKey(sealed, kekId, ringB, context));
    expect(error).toMatchObject({ code: 'ERR_KEK_UNKNOWN', keySetId: 'payments', kid: 'kid-1' });
  });

  test('after a KEK rotation the old KEK still opens, and the new one seals', () => {
    const old = sealPrivateKey(key.privateJwk, ringA, context);
    expect(openPrivateKey(old.sealed, old.kekId, ringBA, context)).toEqual(key.privateJwk);

    const resealed = sealPrivateKey(key.privateJwk, ringBA, context);
    expect(resealed.kekId).toBe(ringB.current.id);
    expect(openPrivateKey(resealed.sealed, resealed.kekId, ringB, context)).toEqual(key.privateJwk);
  });

  test.each([
    ['version byte', 0],
    ['IV', 5],
    ['tag', 20],
    ['ciphertext', 40],
    ['last byte', -1],
  ])('a flipped bit in the %s → ERR_KEY_DECRYPTION_FAILED', (_, position) => {
    const { kekId, sealed } = sealPrivateKey(key.privateJwk, ringA, context);
    const tampered = Buffer.from(sealed);
    const index = position < 0 ? tampered.length + position : position;
    tampered[index] = (tampered[index] ?? 0) ^ 0x01;
    const error = keyturnError(() => openPrivateKey(tampered, kekId, ringA, context));
    expect(error).toMatchObject({ code: 'ERR_KEY_DECRYPTION_FAILED', keySetId: 'payments', kid: 'kid-1' });
  });

  test.each([
    ['truncated', (sealed: Buffer) => sealed.subarray(0, sealed.length - 1)],
    ['header only', (sealed: Buffer) => sealed.subarray(0, 29)],
    ['empty', () => Buffer.alloc(0)],
  ])('a %s blob → ERR_KEY_DECRYPTION_FAILED', (_, cut) => {
    const { kekId, sealed } = sealPrivateKey(key.privateJwk, ringA, context);
    expect(keyturnError(() => openPrivateKey(cut(sealed), kekId, ringA, context)).code).toBe(
      'ERR_KEY_DECRYPTION_FAILED',
    );
  });

  test.each([
    ['key set', { keySetId: 'billing', kid: 'kid-1' }],
    ['kid', { keySetId: 'payments', kid: 'kid-2' }],
    ['boundary', { keySetId: 'paymentskid-', kid: '1' }],
  ])('opening under another %s → ERR_KEY_DECRYPTION_FAILED', (_, other) => {
    const { kekId, sealed } = sealPrivateKey(key.privateJwk, ringA, context);
    expect(keyturnError(() => openPrivateKey(sealed, kekId, ringA, other)).code).toBe('ERR_KEY_DECRYPTION_FAILED');
  });
});
