import { calculateJwkThumbprint, type JWK } from 'jose';
import { SIGNING_ALGORITHMS } from '../../src/domain/algorithms';
import { generateSigningKey } from '../../src/crypto/generate';
import { jwkThumbprint, kidMatches } from '../../src/crypto/kid';

test.each(SIGNING_ALGORITHMS)(
  "%s: the thumbprint is jose's RFC 7638 SHA-256 thumbprint, of the public half of a private JWK too",
  async (alg) => {
    const { publicJwk, privateJwk, kid } = await generateSigningKey(alg);
    const expected = await calculateJwkThumbprint(publicJwk, 'sha256');
    expect(jwkThumbprint(publicJwk)).toBe(expected);
    expect(jwkThumbprint(privateJwk)).toBe(expected);
    expect(kid).toBe(expected);
    expect(kidMatches(publicJwk, kid)).toBe(true);
  },
);

test("RFC 7638 §3.1's example key has the RFC's thumbprint", () => {
  const jwk = {
    kty: 'RSA',
    n:
      '0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMst' +
      'n64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91' +
      'CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw',
    e: 'AQAB',
    alg: 'RS256',
    kid: '2011-04-29',
  };
  expect(jwkThumbprint(jwk)).toBe('NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs');
});

test('a kid that is not the thumbprint does not match: another key, an edited member, a missing one', async () => {
  const [a, b] = await Promise.all([generateSigningKey('ES256'), generateSigningKey('ES256')]);
  expect(kidMatches(b.publicJwk, a.kid)).toBe(false);
  expect(kidMatches({ ...a.publicJwk, x: b.publicJwk.x }, a.kid)).toBe(false);
  // Members outside the thumbprint (kid, alg, use) are not hashed.
  expect(kidMatches({ ...a.publicJwk, kid: 'other', alg: 'RS256', use: 'enc' } as JWK, a.kid)).toBe(true);
  const withoutY = { ...a.publicJwk, y: undefined };
  expect(jwkThumbprint(withoutY)).toBeUndefined();
  expect(kidMatches(withoutY, a.kid)).toBe(false);
});

test.each([{}, { kty: 'oct', k: 'c2VjcmV0' }, { kty: 'constructor' }, { kty: 'EC', crv: 'P-256', x: 1, y: 'y' }])(
  '%j has no thumbprint',
  (jwk) => {
    expect(jwkThumbprint(jwk)).toBeUndefined();
  },
);
