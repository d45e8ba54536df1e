import { SIGNING_ALGORITHMS, isSigningAlgorithm, type SigningAlgorithm } from './algorithms';
import { checkCustody, type CustodySettings } from './custody-settings';
import { PolicyError, type PolicyViolation } from './errors';
import { DURATION_HINT, durationToMs, formatDuration, parseDuration } from './duration';

/** A key set's rotation policy, in the words of `keysets.yaml`: durations are strings such as `30d`. */
export interface KeySetPolicy {
  algorithm: SigningAlgorithm;
  /** How long a key signs before the next key is promoted. */
  rotationPeriod: string;
  /** How long before promotion the next key is generated and published. */
  prepublish: string;
  /** How long a demoted key still verifies. */
  gracePeriod: string;
  /** How long a retired key's private part is kept before it is destroyed. */
  retirement: string;
  /** The longest lifetime of a token signed with this key set. */
  maxTokenTtl: string;
  /** How long verifiers may cache the JWKS. */
  jwksMaxAge: string;
  /**
   * The margin for clocks that disagree (issuer, verifiers, Temporal) and for the key ring's switch to
   * a new key: a demoted key verifies at least this long after the last token it may have signed expires.
   */
  clockSkew: string;
  /**
   * The `iss` of tokens and the issuer in the discovery document; when absent, the deployment's
   * (KEYTURN_ISSUER, else the URL the discovery document is served under).
   */
  issuer?: string;
  /** JWKS URLs that must show a next key before it is promoted; the deployment's own when absent. */
  publishedAt?: string[];
  /**
   * Where the key set's private keys are generated and held: sealed in PostgreSQL when absent, AWS KMS or
   * a PKCS#11 token. A change takes effect from the next key generated; keys already made stay where they are.
   */
  custody?: CustodySettings;
}

/** The same policy with every duration in milliseconds, for scheduling. */
export interface PolicyTimings {
  rotationPeriodMs: number;
  prepublishMs: number;
  gracePeriodMs: number;
  retirementMs: number;
  maxTokenTtlMs: number;
  jwksMaxAgeMs: number;
  clockSkewMs: number;
}

/**
 * Limits a deployment sets on every key set's policy, whoever sends it: a policy update from anyone
 * who can reach Temporal, or a workflow started by hand, cannot exceed them. Set on the worker
 * (KEYTURN_MAX_TOKEN_TTL_CEILING, KEYTURN_MAX_ROTATION_PERIOD_CEILING) and enforced by the workflow;
 * the token ceiling by the key ring and the signing paths too.
 */
export interface PolicyCeilings {
  /** The longest `maxTokenTtl`: a ten-year token would outlive any key. */
  maxTokenTtlMs: number;
  /** The longest `rotationPeriod`: a key that never rotates is a key that leaks for good. */
  rotationPeriodMs: number;
}

export const DEFAULT_CEILINGS: Readonly<PolicyCeilings> = Object.freeze({
  maxTokenTtlMs: 86_400_000,
  rotationPeriodMs: 365 * 86_400_000,
});

/** The setting that sets each ceiling, for messages that say what to change. */
const CEILING_SETTINGS = {
  maxTokenTtl: 'KEYTURN_MAX_TOKEN_TTL_CEILING',
  rotationPeriod: 'KEYTURN_MAX_ROTATION_PERIOD_CEILING',
} as const;

/** The seed policy: 30 days active, published 5 days ahead, 5 days of grace, destroyed a day after retiring. */
export const DEFAULT_POLICY: Readonly<KeySetPolicy> = Object.freeze({
  algorithm: 'ES256',
  rotationPeriod: '30d',
  prepublish: '5d',
  gracePeriod: '5d',
  retirement: '1d',
  maxTokenTtl: '1h',
  jwksMaxAge: '15m',
  clockSkew: '30s',
});

const DURATION_FIELDS = [
  'rotationPeriod',
  'prepublish',
  'gracePeriod',
  'retirement',
  'maxTokenTtl',
  'jwksMaxAge',
  'clockSkew',
] as const satisfies readonly (keyof KeySetPolicy)[];
type DurationField = (typeof DURATION_FIELDS)[number];

/** The fields a policy may leave out; a patch removes one by setting it to null. */
export const OPTIONAL_POLICY_FIELDS = [
  'issuer',
  'publishedAt',
  'custody',
] as const satisfies readonly (keyof KeySetPolicy)[];

const POLICY_FIELDS: readonly string[] = ['algorithm', ...DURATION_FIELDS, ...OPTIONAL_POLICY_FIELDS];

/** Some fields of a policy to change; null removes an optional field. */
export type PolicyPatch = Partial<Omit<KeySetPolicy, (typeof OPTIONAL_POLICY_FIELDS)[number]>> & {
  [F in (typeof OPTIONAL_POLICY_FIELDS)[number]]?: KeySetPolicy[F] | null;
};

// URL parsing without the URL class, which the workflow sandbox does not promise.
const HTTP_URL = /^https?:\/\/[^\s/?#]+[^\s]*$/;

/**
 * Checks a policy, filling fields it leaves out from `base` (the seed policy by default), and returns
 * it normalised (`720h` becomes `30d`); an optional field set to null is removed. With `ceilings`, a
 * field above the deployment's ceiling is at fault too. Throws a PolicyError listing every field at
 * fault, so that one run of `apply` shows all that is wrong.
 */
export function validatePolicy(
  input: unknown,
  options: { keySetId?: string; base?: KeySetPolicy; ceilings?: PolicyCeilings } = {},
): KeySetPolicy {
  const { keySetId, base = DEFAULT_POLICY, ceilings } = options;
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new PolicyError([{ field: 'policy', message: 'must be an object of policy fields' }], keySetId);
  }
  const fields = input as Record<string, unknown>;
  const violations: PolicyViolation[] = Object.keys(fields)
    .filter((field) => !POLICY_FIELDS.includes(field))
    .map((field) => ({ field, message: `unknown field; policy fields are ${POLICY_FIELDS.join(', ')}` }));

  const algorithm = fields.algorithm ?? base.algorithm;
  if (!isSigningAlgorithm(algorithm)) {
    violations.push({
      field: 'algorithm',
      message: `${JSON.stringify(algorithm)} is not supported; use one of ${SIGNING_ALGORITHMS.join(', ')}`,
    });
  }

  const ms: Partial<Record<DurationField, number>> = {};
  for (const field of DURATION_FIELDS) {
    // A base stored before a field existed (clockSkew) takes the seed value.
    const value = fields[field] ?? base[field] ?? DEFAULT_POLICY[field];
    ms[field] = durationToMs(value);
    if (ms[field] === undefined) {
      violations.push({ field, message: `${JSON.stringify(value)} is not a duration; ${DURATION_HINT}` });
    } else if (ms[field] === 0) {
      violations.push({ field, message: `${value} must be longer than zero` });
    }
  }

  const { rotationPeriod, prepublish, gracePeriod, maxTokenTtl, jwksMaxAge, clockSkew } = ms;
  if (
    gracePeriod !== undefined &&
    maxTokenTtl !== undefined &&
    clockSkew !== undefined &&
    gracePeriod < maxTokenTtl + clockSkew
  ) {
    violations.push({
      field: 'gracePeriod',
      message:
        `${formatDuration(gracePeriod)} is shorter than maxTokenTtl ${formatDuration(maxTokenTtl)} plus clockSkew ${formatDuration(clockSkew)}; ` +
        'a token signed just before demotion must still verify on a clock that runs behind, so gracePeriod >= maxTokenTtl + clockSkew',
    });
  }
  if (prepublish !== undefined && jwksMaxAge !== undefined && prepublish < jwksMaxAge) {
    violations.push({
      field: 'prepublish',
      message: `${formatDuration(prepublish)} is shorter than jwksMaxAge ${formatDuration(jwksMaxAge)}; every verifier's cache must hold the next key before it signs, so prepublish >= jwksMaxAge`,
    });
  }
  if (prepublish !== undefined && rotationPeriod !== undefined && prepublish >= rotationPeriod) {
    violations.push({
      field: 'prepublish',
      message: `${formatDuration(prepublish)} is not shorter than rotationPeriod ${formatDuration(rotationPeriod)}; the next key is published during the active key's period, so prepublish < rotationPeriod`,
    });
  }

  if (ceilings !== undefined) {
    const above = (field: keyof typeof CEILING_SETTINGS, value: number | undefined, ceiling: number) => {
      if (value !== undefined && value > ceiling) {
        violations.push({
          field,
          message: `${formatDuration(value)} is above this deployment's ceiling ${formatDuration(ceiling)} (${CEILING_SETTINGS[field]} on the worker)`,
        });
      }
    };
    above('maxTokenTtl', maxTokenTtl, ceilings.maxTokenTtlMs);
    above('rotationPeriod', rotationPeriod, ceilings.rotationPeriodMs);
  }

  const issuer = 'issuer' in fields ? (fields.issuer ?? undefined) : base.issuer;
  if (issuer !== undefined && (typeof issuer !== 'string' || !HTTP_URL.test(issuer))) {
    violations.push({ field: 'issuer', message: `${JSON.stringify(issuer)} is not an http(s) URL` });
  }
  const publishedAt = 'publishedAt' in fields ? (fields.publishedAt ?? undefined) : base.publishedAt;
  if (publishedAt !== undefined) {
    if (!Array.isArray(publishedAt) || publishedAt.length === 0) {
      violations.push({ field: 'publishedAt', message: 'must be a non-empty list of JWKS URLs' });
    } else {
      publishedAt.forEach((url, i) => {
        if (typeof url !== 'string' || !HTTP_URL.test(url)) {
          violations.push({ field: `publishedAt[${i}]`, message: `${JSON.stringify(url)} is not an http(s) URL` });
        }
      });
    }
  }

  const custodyInput = 'custody' in fields ? (fields.custody ?? undefined) : base.custody;
  const custody =
    custodyInput === undefined || !isSigningAlgorithm(algorithm) ? undefined : checkCustody(custodyInput, algorithm);
  if (custody) violations.push(...custody.violations);

  if (violations.length > 0) throw new PolicyError(violations, keySetId);
  return {
    algorithm: algorithm as SigningAlgorithm,
    ...(Object.fromEntries(DURATION_FIELDS.map((f) => [f, formatDuration(ms[f]!)])) as Record<DurationField, string>),
    ...(issuer !== undefined && { issuer: issuer as string }),
    ...(publishedAt !== undefined && { publishedAt: [...(publishedAt as string[])] }),
    ...(custody?.settings !== undefined && { custody: custody.settings }),
  };
}

/** The durations of a validated policy in milliseconds. A policy stored before clockSkew existed has the seed's. */
export function policyTimings(policy: KeySetPolicy): PolicyTimings {
  return {
    rotationPeriodMs: parseDuration(policy.rotationPeriod, 'rotationPeriod'),
    prepublishMs: parseDuration(policy.prepublish, 'prepublish'),
    gracePeriodMs: parseDuration(policy.gracePeriod, 'gracePeriod'),
    retirementMs: parseDuration(policy.retirement, 'retirement'),
    maxTokenTtlMs: parseDuration(policy.maxTokenTtl, 'maxTokenTtl'),
    jwksMaxAgeMs: parseDuration(policy.jwksMaxAge, 'jwksMaxAge'),
    clockSkewMs: parseDuration(policy.clockSkew ?? DEFAULT_POLICY.clockSkew, 'clockSkew'),
  };
}

/** The fields whose values differ between two policies. */
export function changedPolicyFields(before: KeySetPolicy, after: KeySetPolicy): (keyof KeySetPolicy)[] {
  return (POLICY_FIELDS as (keyof KeySetPolicy)[]).filter(
    (field) => JSON.stringify(before[field]) !== JSON.stringify(after[field]),
  );
}
