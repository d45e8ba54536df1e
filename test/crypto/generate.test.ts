import { PRIVATE_JWK_MEMBERS } from '../../src/domain/private-jwk';
import { SignJWT, calculateJwkThumbprint, importJWK, jwtVerify } from 'jose';
import { SIGNING_ALGORITHMS } from '../../src/domain/algorithms';
import { assertPublicOnly, generateSigningKey, toPublicJwk } from '../../src/crypto/generate';

const EXPECTED_KTY = { ES256: 'EC', RS256: 'RSA', PS256: 'RSA', EdDSA: 'OKP' } as const;

describe('generateSigningKey', () => {
  test.each(SIGNING_ALGORITHMS)('%s: kid is the thumbprint and the public JWK is public only', async (alg) => {
    const key = await generateSigningKey(alg);

    expect(key.alg).toBe(alg);
    expect(key.kid).toBe(await calculateJwkThumbprint(key.publicJwk, 'sha256'));
    expect(key.publicJwk).toMatchObject({ kty: EXPECTED_KTY[alg], kid: key.kid, alg, use: 'sig' });
    expect(key.privateJwk).toMatchObject({ kid: key.kid, alg, use: 'sig' });
    expect(typeof key.privateJwk.d).toBe('string');
    for (const member of PRIVATE_JWK_MEMBERS) expect(key.publicJwk).not.toHaveProperty(member);
    expect(() => assertPublicOnly(key.publicJwk)).not.toThrow();
  });

  test.each(SIGNING_ALGORITHMS)('%s: a JWT signed with the private JWK verifies with the public JWK', async (alg) => {
    const key = await generateSigningKey(alg);

    const token = await new SignJWT({ sub: 'someone' })
      .setProtectedHeader({ alg, kid: key.kid })
      .setIssuedAt()
      .sign(await importJWK(key.privateJwk, alg));
    const { payload, protectedHeader } = await jwtVerify(token, await importJWK(key.publicJwk, alg), {
      algorithms: [alg],
    });

    expect(payload.sub).toBe('someone');
    expect(protectedHeader.kid).toBe(key.kid);
  });

  test('EdDSA keys are Ed25519 and RSA keys have a 2048-bit modulus', async () => {
    expect((await generateSigningKey('EdDSA')).publicJwk.crv).toBe('Ed25519');
    const rsa = await generateSigningKey('RS256');
    expect(Buffer.from(rsa.publicJwk.n ?? '', 'base64url').length * 8).toBe(2048);
  });

  test('each key gets its own kid', async () => {
    const [a, b] = await Promise.all([generateSigningKey('ES256'), generateSigningKey('ES256')]);
    expect(a.kid).not.toBe(b.kid);
  });
});

describe('toPublicJwk', () => {
  test.each(['ES256', 'RS256', 'EdDSA'] as const)('keeps only the public members of a private %s JWK', async (alg) => {
    const { privateJwk, publicJwk, kid } = await generateSigningKey(alg);
    expect(toPublicJwk(privateJwk, { kid, alg })).toEqual(publicJwk);
  });

  test('rejects key types keyturn does not sign with', () => {
    expect(() => toPublicJwk({ kty: 'oct', k: 'c2VjcmV0' }, { kid: 'x', alg: 'ES256' })).toThrow(TypeError);
  });
});

describe('assertPublicOnly', () => {
  test.each(PRIVATE_JWK_MEMBERS)('rejects a JWK carrying "%s" without revealing its value', (member) => {
    const secret = 'c2VjcmV0LXZhbHVl';
    const jwk = { kty: 'EC', kid: 'k1', [member]: secret };
    let thrown: unknown;
    try {
      assertPublicOnly(jwk);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(TypeError);
    expect((thrown as TypeError).message).not.toContain(secret);
  });
});
