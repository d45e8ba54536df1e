import { formatStatus } from '../../src/cli/output';
import { describeCustody } from '../../src/domain/custody-settings';
import { PolicyError } from '../../src/domain/errors';
import {
  DEFAULT_POLICY,
  changedPolicyFields,
  policyTimings,
  validatePolicy,
  type KeySetPolicy,
} from '../../src/domain/policy';

/** A policy whose whole lifecycle fits in half a minute, for demos and live tests. */
const SECONDS_POLICY: KeySetPolicy = {
  algorithm: 'ES256',
  rotationPeriod: '20s',
  prepublish: '5s',
  gracePeriod: '5s',
  retirement: '2s',
  maxTokenTtl: '3s',
  jwksMaxAge: '2s',
  clockSkew: '1s',
};

/** Runs validatePolicy, expecting a PolicyError. */
function policyError(input: unknown, options?: Parameters<typeof validatePolicy>[1]): PolicyError {
  let thrown: unknown;
  try {
    validatePolicy(input, options);
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(PolicyError);
  expect(thrown).toMatchObject({ code: 'ERR_POLICY_INVALID' });
  return thrown as PolicyError;
}

describe('validatePolicy rejects', () => {
  test.each<[string, Record<string, unknown>, string[]]>([
    ['an unknown algorithm', { algorithm: 'HS256' }, ['algorithm']],
    ['an algorithm of the wrong case', { algorithm: 'es256' }, ['algorithm']],
    ['a zero retirement', { retirement: '0s' }, ['retirement']],
    ['a zero maxTokenTtl', { maxTokenTtl: '0ms' }, ['maxTokenTtl']],
    ['a malformed duration', { gracePeriod: '5 days' }, ['gracePeriod']],
    ['a number for a duration', { jwksMaxAge: 900 }, ['jwksMaxAge']],
    ['gracePeriod < maxTokenTtl', { gracePeriod: '30m', maxTokenTtl: '1h' }, ['gracePeriod']],
    ['prepublish < jwksMaxAge', { prepublish: '10m', jwksMaxAge: '15m' }, ['prepublish']],
    ['prepublish == rotationPeriod', { rotationPeriod: '5d', prepublish: '5d' }, ['prepublish']],
    ['prepublish > rotationPeriod', { rotationPeriod: '4d' }, ['prepublish']],
    ['a misspelt field', { rotationperiod: '7d' }, ['rotationperiod']],
    ['an issuer that is not a URL', { issuer: 'keyturn' }, ['issuer']],
    ['an empty publishedAt', { publishedAt: [] }, ['publishedAt']],
    [
      'a publishedAt entry that is not a URL',
      { publishedAt: ['https://a.example/jwks.json', 'ftp://b'] },
      ['publishedAt[1]'],
    ],
    [
      'several faults at once',
      { algorithm: 'none', retirement: '1w', gracePeriod: '1m', prepublish: '1m', colour: 'blue' },
      ['colour', 'algorithm', 'retirement', 'gracePeriod', 'prepublish'],
    ],
  ])('%s', (_, input, fields) => {
    const error = policyError(input);
    expect(error.violations.map((v) => v.field).sort()).toEqual([...fields].sort());
    expect(error.field).toBe(error.violations[0].field);
    // One message lists every fault, so that one `apply` shows all that is wrong.
    for (const v of error.violations) expect(error.message).toContain(`${v.field}: ${v.message}`);
  });

  test('messages name the field, the value and the rule', () => {
    const messages = (input: Record<string, unknown>) =>
      Object.fromEntries(policyError(input).violations.map((v) => [v.field, v.message]));

    expect(messages({ gracePeriod: '30m', maxTokenTtl: '2h' }).gracePeriod).toEqual(
      expect.stringMatching(/30m.*maxTokenTtl 2h plus clockSkew 30s.*gracePeriod >= maxTokenTtl \+ clockSkew/),
    );
    expect(messages({ prepublish: '10m', jwksMaxAge: '1h' }).prepublish).toEqual(
      expect.stringMatching(/10m.*jwksMaxAge 1h.*prepublish >= jwksMaxAge/),
    );
    expect(messages({ rotationPeriod: '3d' }).prepublish).toEqual(
      expect.stringMatching(/5d.*rotationPeriod 3d.*prepublish < rotationPeriod/),
    );
    expect(messages({ algorithm: 'HS256' }).algorithm).toEqual(
      expect.stringMatching(/"HS256".*ES256, RS256, PS256, EdDSA/),
    );
    expect(messages({ retirement: '0s' }).retirement).toMatch(/0s.*zero/);
    expect(messages({ retirement: '1w' }).retirement).toMatch(/"1w".*e\.g\. 30d/);
    expect(messages({ rotationperiod: '7d' }).rotationperiod).toMatch(/unknown field.*rotationPeriod/);
  });

  test('the key set id appears in the error', () => {
    const error = policyError({ algorithm: 'HS256' }, { keySetId: 'payments' });
    expect(error.keySetId).toBe('payments');
    expect(error.message).toContain('"payments"');
  });

  test.each([null, 'ES256', 42, ['ES256']])('a non-object %p', (input) => {
    expect(policyError(input).violations.map((v) => v.field)).toEqual(['policy']);
  });

  test('a patch that breaks an invariant together with the base it is applied to', () => {
    // maxTokenTtl 10s is fine on its own, but the base's gracePeriod is only 5s.
    const error = policyError({ maxTokenTtl: '10s' }, { base: SECONDS_POLICY });
    expect(error.violations.map((v) => v.field)).toEqual(['gracePeriod']);
  });
});

describe('validatePolicy accepts', () => {
  test('the seed policy, unchanged', () => {
    expect(validatePolicy({ ...DEFAULT_POLICY })).toEqual(DEFAULT_POLICY);
    expect(validatePolicy({})).toEqual(DEFAULT_POLICY);
  });

  test('a seconds-scale policy', () => {
    expect(validatePolicy(SECONDS_POLICY)).toEqual(SECONDS_POLICY);
    expect(policyTimings(SECONDS_POLICY)).toEqual({
      rotationPeriodMs: 20_000,
      prepublishMs: 5_000,
      gracePeriodMs: 5_000,
      retirementMs: 2_000,
      maxTokenTtlMs: 3_000,
      jwksMaxAgeMs: 2_000,
      clockSkewMs: 1_000,
    });
  });

  test.each(['ES256', 'RS256', 'PS256', 'EdDSA'])('algorithm %s', (algorithm) => {
    expect(validatePolicy({ algorithm }).algorithm).toBe(algorithm);
  });

  test('an issuer and the JWKS URLs a next key must appear at', () => {
    const policy = validatePolicy({ issuer: 'https://login.example', publishedAt: ['https://cdn.example/jwks.json'] });
    expect(policy).toEqual({
      ...DEFAULT_POLICY,
      issuer: 'https://login.example',
      publishedAt: ['https://cdn.example/jwks.json'],
    });
    expect(changedPolicyFields(DEFAULT_POLICY, policy).sort()).toEqual(['issuer', 'publishedAt']);
  });

  test('partial input is filled from the seed policy', () => {
    expect(validatePolicy({ algorithm: 'EdDSA', rotationPeriod: '90d' })).toEqual({
      ...DEFAULT_POLICY,
      algorithm: 'EdDSA',
      rotationPeriod: '90d',
    });
  });

  test('partial input is filled from a base', () => {
    expect(validatePolicy({ rotationPeriod: '1m' }, { base: SECONDS_POLICY })).toEqual({
      ...SECONDS_POLICY,
      rotationPeriod: '1m',
    });
  });

  test('durations are normalised to their shortest exact spelling', () => {
    expect(
      validatePolicy({ rotationPeriod: '720h', prepublish: '120h', jwksMaxAge: '900s', maxTokenTtl: ' 60m ' }),
    ).toEqual({
      ...DEFAULT_POLICY,
      rotationPeriod: '30d',
      prepublish: '5d',
      jwksMaxAge: '15m',
      maxTokenTtl: '1h',
    });
  });

  test('the boundaries of the invariants: gracePeriod == maxTokenTtl + clockSkew, prepublish == jwksMaxAge', () => {
    const policy = { ...SECONDS_POLICY, gracePeriod: '4s', prepublish: '2s' };
    expect(validatePolicy(policy)).toEqual(policy);
  });

  test('gracePeriod == maxTokenTtl leaves no margin for clock skew, and is refused', () => {
    expect(policyError({ ...SECONDS_POLICY, gracePeriod: '3s' }).violations.map((v) => v.field)).toEqual([
      'gracePeriod',
    ]);
  });

  test('null removes an optional field; left out, it stays as the base has it', () => {
    const base = validatePolicy({ issuer: 'https://login.example', publishedAt: ['https://cdn.example/jwks.json'] });
    expect(validatePolicy({ issuer: null }, { base })).toEqual({
      ...DEFAULT_POLICY,
      publishedAt: ['https://cdn.example/jwks.json'],
    });
    expect(validatePolicy({ publishedAt: null, issuer: null }, { base })).toEqual(DEFAULT_POLICY);
    expect(validatePolicy({}, { base })).toEqual(base);
  });

  test('a base stored before clockSkew existed takes the seed margin', () => {
    const older: Partial<KeySetPolicy> = { ...DEFAULT_POLICY };
    delete older.clockSkew;
    expect(validatePolicy({}, { base: older as KeySetPolicy })).toEqual(DEFAULT_POLICY);
  });

  test('the input is not modified', () => {
    const input = { rotationPeriod: '720h' };
    validatePolicy(input);
    expect(input).toEqual({ rotationPeriod: '720h' });
  });
});

describe('deployment ceilings', () => {
  const ceilings = { maxTokenTtlMs: 3_600_000, rotationPeriodMs: 90 * 86_400_000 };

  test('a field above its ceiling is at fault, with the ceiling and the setting named', () => {
    const error = policyError({ maxTokenTtl: '3650d', gracePeriod: '3651d', rotationPeriod: '1000d' }, { ceilings });
    expect(Object.fromEntries(error.violations.map((v) => [v.field, v.message]))).toEqual({
      maxTokenTtl: "3650d is above this deployment's ceiling 1h (KEYTURN_MAX_TOKEN_TTL_CEILING on the worker)",
      rotationPeriod:
        "1000d is above this deployment's ceiling 90d (KEYTURN_MAX_ROTATION_PERIOD_CEILING on the worker)",
    });
  });

  test('at the ceiling is allowed; without ceilings nothing is capped', () => {
    expect(validatePolicy({ maxTokenTtl: '1h', rotationPeriod: '90d' }, { ceilings })).toMatchObject({
      maxTokenTtl: '1h',
      rotationPeriod: '90d',
    });
    expect(validatePolicy({ maxTokenTtl: '2h', gracePeriod: '6d' })).toMatchObject({ maxTokenTtl: '2h' });
  });
});

describe('changedPolicyFields', () => {
  test('lists exactly the fields that differ', () => {
    expect(changedPolicyFields(DEFAULT_POLICY, { ...DEFAULT_POLICY })).toEqual([]);
    expect(changedPolicyFields(DEFAULT_POLICY, { ...DEFAULT_POLICY, algorithm: 'RS256', gracePeriod: '6d' })).toEqual([
      'algorithm',
      'gracePeriod',
    ]);
    expect(changedPolicyFields(DEFAULT_POLICY, SECONDS_POLICY).sort()).toEqual(
      ['rotationPeriod', 'prepublish', 'retirement', 'maxTokenTtl', 'jwksMaxAge', 'gracePeriod', 'clockSkew'].sort(),
    );
  });

  test('compares normalised policies, so a respelt duration is no change', () => {
    expect(changedPolicyFields(DEFAULT_POLICY, validatePolicy({ rotationPeriod: '720h' }))).toEqual([]);
  });
});

describe('custody', () => {
  const pkcs11 = { backend: 'pkcs11', module: '/usr/lib/softhsm/libsofthsm2.so', tokenLabel: 'keyturn', pinEnv: 'PIN' };

  test('sealed, named or left out, is the default and is not stored', () => {
    expect(validatePolicy({ custody: 'sealed' })).toEqual(DEFAULT_POLICY);
    expect(validatePolicy({ custody: { backend: 'sealed' } })).toEqual(DEFAULT_POLICY);
    expect(validatePolicy({})).not.toHaveProperty('custody');
  });

  test('a backend by name or with its settings is kept as settings', () => {
    expect(validatePolicy({ custody: 'aws-kms' }).custody).toEqual({ backend: 'aws-kms' });
    expect(validatePolicy({ custody: { backend: 'aws-kms', region: 'eu-west-1' } }).custody).toEqual({
      backend: 'aws-kms',
      region: 'eu-west-1',
    });
    expect(validatePolicy({ algorithm: 'RS256', custody: pkcs11 }).custody).toEqual(pkcs11);
  });

  test('an algorithm the backend cannot hold, unknown or missing settings: each refused, naming its field', () => {
    const violations = (input: object) => {
      try {
        validatePolicy(input);
      } catch (error) {
        return (error as PolicyError).violations.map((v) => [v.field, v.message]);
      }
      throw new Error('accepted');
    };
    expect(violations({ algorithm: 'EdDSA', custody: 'aws-kms' })).toEqual([
      ['custody', 'aws-kms cannot hold EdDSA keys; use algorithm ES256, RS256, PS256 or another custody'],
    ]);
    expect(violations({ custody: 'vault' })[0][0]).toBe('custody');
    // A secret in the wrong place is not repeated in the refusal.
    expect(violations({ custody: { backend: 'hsm', pin: '271828' } })).toEqual([
      [
        'custody',
        '"hsm" is not a custody: give one of sealed, aws-kms, pkcs11, or an object with backend and its settings',
      ],
    ]);
    expect(violations({ custody: { backend: 'aws-kms', endpoint: 'http://x' } })).toEqual([
      ['custody.endpoint', 'unknown setting of aws-kms; its settings are backend, region'],
    ]);
    expect(violations({ custody: 'pkcs11' }).map(([field]) => field)).toEqual([
      'custody.module',
      'custody.tokenLabel',
      'custody.pinFile',
    ]);
    expect(violations({ custody: { ...pkcs11, pinFile: '/run/pin' } }).map(([field]) => field)).toEqual([
      'custody.pinFile',
    ]);
    expect(violations({ custody: { ...pkcs11, tokenLabel: ' ' } }).map(([field]) => field)).toEqual([
      'custody.tokenLabel',
    ]);
  });

  test('null removes it (back to sealed); a change of custody is a changed field', () => {
    const withKms = validatePolicy({ custody: 'aws-kms' });
    expect(validatePolicy({ custody: null }, { base: withKms })).not.toHaveProperty('custody');
    expect(validatePolicy({}, { base: withKms }).custody).toEqual({ backend: 'aws-kms' });
    expect(changedPolicyFields(DEFAULT_POLICY, withKms)).toEqual(['custody']);
  });

  test("is described in an operator's words, naming where a PIN is read from and never a PIN", () => {
    expect(describeCustody(undefined)).toBe('sealed (in PostgreSQL, under the KEK)');
    expect(describeCustody({ backend: 'aws-kms' })).toBe("aws-kms (the AWS chain's region)");
    expect(describeCustody({ backend: 'aws-kms', region: 'eu-west-1' })).toBe('aws-kms (region eu-west-1)');
    expect(describeCustody(validatePolicy({ algorithm: 'RS256', custody: pkcs11 }).custody)).toBe(
      'pkcs11 (token "keyturn", module /usr/lib/softhsm/libsofthsm2.so, PIN from $PIN)',
    );
    const policy = validatePolicy({
      custody: { backend: 'pkcs11', module: pkcs11.module, tokenLabel: 'keyturn', pinFile: '/run/keyturn/pin' },
    });
    const status = { keySetId: 'k', policy, paused: null, decommissioned: null, keys: [], nextTransition: null };
    const shown = formatStatus({ ...status, rotation: null, lastError: null, pendingCommands: 0, inFlight: null }, 0);
    expect(shown).toMatch(
      /^policy: .*, custody pkcs11 \(token "keyturn", module \S+, PIN from \/run\/keyturn\/pin\)$/m,
    );
  });
});
