import { generateKeyPairSync, sign, verify } from 'node:crypto';
import { derToJoseSignature } from '../../src/crypto/ecdsa-signature';

/** A DER ECDSA-Sig-Value around the two INTEGER contents given (sign bytes included as given). */
function der(r: Buffer, s: Buffer): Buffer {
  const integer = (value: Buffer) => Buffer.concat([Buffer.from([0x02, value.length]), value]);
  const body = Buffer.concat([integer(r), integer(s)]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}

const filled = (length: number, byte: number) => Buffer.alloc(length, byte);

test("node's DER signatures, converted, verify as JOSE's r‖s (P-1363): 300 of them, so r and s of every length DER gives", () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const lengths = new Set<number>();
  for (let i = 0; i < 300; i++) {
    const message = Buffer.from(`message ${i}`);
    const signature = sign('sha256', message, privateKey);
    lengths.add(signature.length);
    const jose = derToJoseSignature(signature, 32);
    expect(jose).toHaveLength(64);
    expect(verify('sha256', message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, jose)).toBe(true);
  }
  // 70 to 72 bytes: r and s with and without DER's leading 0x00.
  expect([...lengths].sort()).toEqual(expect.arrayContaining([70, 71, 72]));
});

test('drops the leading 0x00 DER puts before an integer whose top bit is set', () => {
  const r = filled(32, 0x80);
  const s = filled(32, 0xff);
  const converted = derToJoseSignature(
    der(Buffer.concat([Buffer.from([0]), r]), Buffer.concat([Buffer.from([0]), s])),
    32,
  );
  expect(converted).toEqual(Buffer.concat([r, s]));
});

test('left-pads short integers to the curve size', () => {
  const converted = derToJoseSignature(der(filled(31, 0x11), Buffer.from([0x05])), 32);
  expect(converted).toEqual(Buffer.concat([Buffer.from([0]), filled(31, 0x11), filled(31, 0), Buffer.from([0x05])]));
});

test('reads the long length form (0x81), as a larger curve would need', () => {
  const r = filled(66, 0x01);
  const s = filled(66, 0x02);
  const integers = Buffer.concat([Buffer.from([0x02, 66]), r, Buffer.from([0x02, 66]), s]);
  const signature = Buffer.concat([Buffer.from([0x30, 0x81, integers.length]), integers]);
  expect(derToJoseSignature(signature, 66)).toEqual(Buffer.concat([r, s]));
});

test.each([
  ['not a SEQUENCE', Buffer.from([0x31, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])],
  ['a SEQUENCE length that does not match', Buffer.from([0x30, 0x07, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])],
  ['bytes after s', Buffer.from([0x30, 0x09, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01])],
  ['a negative r', der(Buffer.from([0x80]), Buffer.from([0x01]))],
  ['an empty s', der(Buffer.from([0x01]), Buffer.alloc(0))],
  ['an r longer than the curve', der(filled(33, 0x01), Buffer.from([0x01]))],
  ['an integer running past the end', Buffer.from([0x30, 0x04, 0x02, 0x05, 0x01, 0x01])],
  ['nothing', Buffer.alloc(0)],
])('refuses %s', (_what, signature) => {
  expect(() => derToJoseSignature(signature, 32)).toThrow(/^not a DER-encoded ECDSA signature/);
});
