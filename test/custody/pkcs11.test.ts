import { inspect } from 'node:util';
import { importJWK, jwtVerify } from 'jose';
import * as pkcs11 from 'pkcs11js';
import { jwkThumbprint } from '../../src/crypto/kid';
import type { CustodyKey, HeldKey, SignatureFunction } from '../../src/custody/key-custody';
import { Pkcs11Custody } from '../../src/custody/pkcs11';
import { Pkcs11Module } from '../../src/custody/pkcs11-module';
import type { SigningAlgorithm } from '../../src/domain/algorithms';
import { KeyturnError } from '../../src/domain/errors';
import { createSoftHsmToken, type SoftHsmToken } from '../helpers/softhsm';

let token: SoftHsmToken;
let custody: Pkcs11Custody;
/** The test's own share of the module, to look at the token beside the custody. */
let inspector: Pkcs11Module;

beforeAll(async () => {
  token = await createSoftHsmToken('keyturn-custody');
  custody = new Pkcs11Custody(token.settings);
  inspector = Pkcs11Module.acquire(token.module);
});

afterAll(async () => {
  await custody?.close();
  inspector?.release();
  await token?.close();
});

function slotOf(library: pkcs11.PKCS11): pkcs11.Handle {
  const slot = library.C_GetSlotList(true).find((s) => library.C_GetTokenInfo(s).label.trimEnd() === token.label);
  if (slot === undefined) throw new Error(`token ${token.label} not found`);
  return slot;
}

/** Runs `look` on a logged-in session of the test's own. */
function onToken<T>(look: (library: pkcs11.PKCS11, session: pkcs11.Handle) => T): T {
  const library = inspector.library;
  const session = library.C_OpenSession(slotOf(library), pkcs11.CKF_SERIAL_SESSION);
  try {
    try {
      library.C_Login(session, pkcs11.CKU_USER, token.pin);
    } catch (error) {
      if (!(error instanceof pkcs11.Pkcs11Error && error.code === pkcs11.CKR_USER_ALREADY_LOGGED_IN)) throw error;
    }
    return look(library, session);
  } finally {
    library.C_CloseSession(session);
  }
}

function find(template: pkcs11.Template): pkcs11.Handle[] {
  return onToken((library, session) => {
    library.C_FindObjectsInit(session, template);
    try {
      return library.C_FindObjects(session, 1000);
    } finally {
      library.C_FindObjectsFinal(session);
    }
  });
}

function attribute(object: pkcs11.Handle, type: number): Buffer {
  return onToken((library, session) => library.C_GetAttributeValue(session, object, [{ type }])[0].value);
}

function held(key: CustodyKey, keySetId: string): HeldKey {
  return { keySetId, kid: key.kid, alg: key.alg, handle: key.handle };
}

async function signJwt(sign: SignatureFunction, key: CustodyKey, claims: object): Promise<string> {
  const header = Buffer.from(JSON.stringify({ alg: key.alg, kid: key.kid, typ: 'JWT' })).toString('base64url');
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  const signingInput = `${header}.${payload}`;
  const signature = await sign(Buffer.from(signingInput));
  return `${signingInput}.${signature.toString('base64url')}`;
}

async function verify(jwt: string, key: CustodyKey): Promise<unknown> {
  const { payload } = await jwtVerify(jwt, await importJWK(key.publicJwk, key.alg));
  return payload;
}

async function rejection(promise: Promise<unknown>): Promise<KeyturnError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(KeyturnError);
  return error as KeyturnError;
}

// First, while nothing in this process is logged in to the token: PKCS#11 login is per application, and
// a second login answers "already logged in" whatever PIN it brings (keyturn's own check of that is below).
test('a wrong PIN fails clearly, naming where the PIN came from and not the PIN', async () => {
  const wrongPin = 'not-the-pin-4711';
  process.env.KEYTURN_TEST_WRONG_PIN = wrongPin;
  const wrong = new Pkcs11Custody({ ...token.settings, pinFile: undefined, pinEnv: 'KEYTURN_TEST_WRONG_PIN' });
  try {
    const error = await rejection(wrong.generate('ES256', { keySetId: 'wrong-pin' }));
    expect(error.code).toBe('ERR_CONFIG_INVALID');
    expect(error.field).toBe('pinEnv');
    expect(error.message).toContain('KEYTURN_TEST_WRONG_PIN');
    expect(error.message).toContain('CKR_PIN_INCORRECT');
    const printed = inspect(error, { depth: 10 }) + JSON.stringify(error);
    expect(printed).not.toContain(wrongPin);
    expect(printed).not.toContain(token.pin);
  } finally {
    await wrong.close();
    delete process.env.KEYTURN_TEST_WRONG_PIN;
  }
});

test('a PIN source missing, empty or ambiguous is a configuration error naming the field', async () => {
  const { pinFile, ...withoutPin } = token.settings;
  expect(() => new Pkcs11Custody(withoutPin)).toThrow(
    expect.objectContaining({ code: 'ERR_CONFIG_INVALID', field: 'pinFile' }),
  );
  expect(() => new Pkcs11Custody({ ...withoutPin, pinFile, pinEnv: 'PIN' })).toThrow(
    expect.objectContaining({ code: 'ERR_CONFIG_INVALID' }),
  );
  for (const [settings, field] of [
    [{ ...withoutPin, pinEnv: 'KEYTURN_TEST_UNSET_PIN' }, 'pinEnv'],
    [{ ...withoutPin, pinFile: `${pinFile}.absent` }, 'pinFile'],
  ] as const) {
    const unconfigured = new Pkcs11Custody(settings);
    const error = await rejection(unconfigured.generate('ES256', { keySetId: 'no-pin' }));
    expect(error).toMatchObject({ code: 'ERR_CONFIG_INVALID', field });
    await unconfigured.close();
  }
});

test('a token that is not there is unavailable, naming the label looked for and the tokens present', async () => {
  const absent = new Pkcs11Custody({ ...token.settings, tokenLabel: 'no-such-token' });
  try {
    const error = await rejection(absent.generate('RS256', { keySetId: 'absent' }));
    expect(error).toMatchObject({ code: 'ERR_CUSTODY_UNAVAILABLE', keySetId: 'absent' });
    expect(error.message).toContain('"no-such-token"');
    expect(error.message).toContain(`"${token.label}"`);
  } finally {
    await absent.close();
  }
});

describe.each<SigningAlgorithm>(['ES256', 'RS256', 'PS256'])('%s', (alg) => {
  const keySetId = `payments-${alg.toLowerCase()}`;
  let key: CustodyKey;
  let sign: SignatureFunction;

  beforeAll(async () => {
    key = await custody.generate(alg, { keySetId });
    sign = await custody.signer(held(key, keySetId));
  });

  test('generates on the token a key named by its thumbprint', () => {
    expect(key.alg).toBe(alg);
    expect(key.kid).toBe(jwkThumbprint(key.publicJwk));
    expect(key.publicJwk).toMatchObject({ kid: key.kid, alg, use: 'sig', kty: alg === 'ES256' ? 'EC' : 'RSA' });
    expect(Object.keys(key.publicJwk).sort()).toEqual(
      alg === 'ES256' ? ['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y'] : ['alg', 'e', 'kid', 'kty', 'n', 'use'],
    );
    expect(key.handle).toMatch(/^[0-9a-f]{32}$/);
  });

  test('signs JWTs that verify with the public JWK, many at once', async () => {
    const jwts = await Promise.all(Array.from({ length: 12 }, (_, n) => signJwt(sign, key, { sub: `user-${n}` })));
    const payloads = await Promise.all(jwts.map((jwt) => verify(jwt, key)));
    expect(payloads).toEqual(Array.from({ length: 12 }, (_, n) => ({ sub: `user-${n}` })));
    if (alg === 'ES256') expect(Buffer.from(jwts[0].split('.')[2], 'base64url')).toHaveLength(64);
  });

  test('keeps the private key labelled with key set and kid, sensitive and never extractable', async () => {
    const label = `keyturn:${keySetId}:${key.kid}`;
    const [privateKey, ...others] = find([
      { type: pkcs11.CKA_CLASS, value: pkcs11.CKO_PRIVATE_KEY },
      { type: pkcs11.CKA_LABEL, value: label },
    ]);
    expect(others).toEqual([]);
    expect(attribute(privateKey, pkcs11.CKA_ID).toString('hex')).toBe(key.handle);
    const flags = [pkcs11.CKA_TOKEN, pkcs11.CKA_PRIVATE, pkcs11.CKA_SENSITIVE, pkcs11.CKA_EXTRACTABLE, pkcs11.CKA_SIGN];
    expect(flags.map((type) => attribute(privateKey, type)[0])).toEqual([1, 1, 1, 0, 1]);
    expect(
      find([
        { type: pkcs11.CKA_CLASS, value: pkcs11.CKO_PUBLIC_KEY },
        { type: pkcs11.CKA_LABEL, value: label },
      ]),
    ).toHaveLength(1);

    const secret = alg === 'ES256' ? pkcs11.CKA_VALUE : pkcs11.CKA_PRIVATE_EXPONENT;
    expect(() => attribute(privateKey, secret)).toThrow('CKR_ATTRIBUTE_SENSITIVE');
    await expect(custody.properties(held(key, keySetId))).resolves.toEqual({ extractable: false });
  });

  test('destroys both objects, idempotently, and then signs no more', async () => {
    const byId = (objectClass: number) =>
      find([
        { type: pkcs11.CKA_CLASS, value: objectClass },
        { type: pkcs11.CKA_ID, value: Buffer.from(key.handle, 'hex') },
      ]);
    expect([...byId(pkcs11.CKO_PRIVATE_KEY), ...byId(pkcs11.CKO_PUBLIC_KEY)]).toHaveLength(2);

    await custody.destroy(held(key, keySetId));
    expect([...byId(pkcs11.CKO_PRIVATE_KEY), ...byId(pkcs11.CKO_PUBLIC_KEY)]).toEqual([]);
    await custody.destroy(held(key, keySetId));

    const missing = { code: 'ERR_CUSTODY_KEY_MISSING', keySetId, kid: key.kid };
    expect(await rejection(custody.signer(held(key, keySetId)))).toMatchObject(missing);
    expect(await rejection(signJwt(sign, key, { sub: 'after destroy' }))).toMatchObject(missing);
    expect(await rejection(custody.properties(held(key, keySetId)))).toMatchObject(missing);
  });
});

test('refuses EdDSA before touching the token', async () => {
  const before = find([]);
  const error = await rejection(custody.generate('EdDSA', { keySetId: 'edwards' }));
  expect(error).toMatchObject({ code: 'ERR_CUSTODY_ALGORITHM_UNSUPPORTED', keySetId: 'edwards', field: 'algorithm' });
  expect(error.message).toContain('EdDSA');
  expect(error.message).toContain('ES256, RS256, PS256');
  expect(find([])).toEqual(before);
});

test('signs on after its sessions are closed underneath it (logged out with them)', async () => {
  const keySetId = 'sessions';
  const key = await custody.generate('ES256', { keySetId });
  const sign = await custody.signer(held(key, keySetId));
  await verify(await signJwt(sign, key, { n: 1 }), key);

  inspector.library.C_CloseAllSessions(slotOf(inspector.library));
  const jwts = await Promise.all([1, 2, 3, 4, 5, 6].map((n) => signJwt(sign, key, { n })));
  expect(await Promise.all(jwts.map((jwt) => verify(jwt, key)))).toHaveLength(6);
  await custody.destroy(held(key, keySetId));
});

test('two custodies of one module share its initialisation and the token login; closing one leaves the other working', async () => {
  const keySetId = 'shared';
  const key = await custody.generate('RS256', { keySetId });
  const second = new Pkcs11Custody(token.settings);
  const signBySecond = await second.signer(held(key, keySetId));
  await verify(await signJwt(signBySecond, key, { by: 'second' }), key);
  await second.close();

  const sign = await custody.signer(held(key, keySetId));
  expect(await verify(await signJwt(sign, key, { by: 'first' }), key)).toEqual({ by: 'first' });
  await custody.destroy(held(key, keySetId));
});

test("a second custody of a token logged in already is refused unless its PIN is the token's, from whichever source", async () => {
  // Logged out, so that the next login is keyturn's (the test's own logins are not keyturn's to check against).
  inspector.library.C_CloseAllSessions(slotOf(inspector.library));
  const keySetId = 'second-pin';
  const key = await custody.generate('ES256', { keySetId });
  const wrongPin = 'not-the-pin-0815';
  process.env.KEYTURN_TEST_WRONG_PIN = wrongPin;
  process.env.KEYTURN_TEST_RIGHT_PIN = token.pin;
  const wrong = new Pkcs11Custody({ ...token.settings, pinFile: undefined, pinEnv: 'KEYTURN_TEST_WRONG_PIN' });
  const right = new Pkcs11Custody({ ...token.settings, pinFile: undefined, pinEnv: 'KEYTURN_TEST_RIGHT_PIN' });
  const privateKeys = () => find([{ type: pkcs11.CKA_CLASS, value: pkcs11.CKO_PRIVATE_KEY }]).length;
  const keysBefore = privateKeys();
  try {
    // The token does not check a PIN while logged in; without keyturn's check this generated a key.
    const error = await rejection(wrong.generate('ES256', { keySetId: 'wrong-second-pin' }));
    expect(error).toMatchObject({ code: 'ERR_CONFIG_INVALID', field: 'pinEnv' });
    expect(error.message).toContain('logged in already');
    expect(error.message).toContain('KEYTURN_TEST_WRONG_PIN');
    const printed = inspect(error, { depth: 10 }) + JSON.stringify(error);
    expect(printed).not.toContain(wrongPin);
    expect(printed).not.toContain(token.pin);
    expect(privateKeys()).toBe(keysBefore);

    const sign = await right.signer(held(key, keySetId));
    expect(await verify(await signJwt(sign, key, { by: 'right' }), key)).toEqual({ by: 'right' });
  } finally {
    await wrong.close();
    await right.close();
    delete process.env.KEYTURN_TEST_WRONG_PIN;
    delete process.env.KEYTURN_TEST_RIGHT_PIN;
  }
  await custody.destroy(held(key, keySetId));
});

test('signing fails clearly while the module is gone underneath it, and resumes once it is back', async () => {
  const keySetId = 'outage';
  const key = await custody.generate('ES256', { keySetId });
  const sign = await custody.signer(held(key, keySetId));
  const library = inspector.library;
  library.C_Finalize();
  try {
    const error = await rejection(signJwt(sign, key, { during: 'outage' }));
    expect(error).toMatchObject({ code: 'ERR_CUSTODY_UNAVAILABLE', keySetId, kid: key.kid });
    expect(error.message).toContain(`pkcs11 token "${token.label}" could not sign with key ${key.kid}`);
    expect(error.message).toContain('CKR_CRYPTOKI_NOT_INITIALIZED');
  } finally {
    library.C_Initialize({ flags: pkcs11.CKF_OS_LOCKING_OK });
  }
  // The custody's sessions died with the initialisation: it opens new ones and logs in again.
  expect(await verify(await signJwt(sign, key, { after: 'outage' }), key)).toEqual({ after: 'outage' });
  expect(inspect(custody, { depth: 10 })).not.toContain(token.pin);
  await custody.destroy(held(key, keySetId));
});
