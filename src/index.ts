/**
 * keyturn as a library: `import { KeySetClient, KeyRing, startJwksServer } from 'keyturn'`.
 *
 * - {@link KeySetClient} drives key sets through Temporal, as the `keyturn` CLI does: apply a
 *   policy, rotate, revoke, pause, resume, decommission, read the status, verify.
 * - {@link KeyRing} signs tokens in an issuer with each key set's active key, straight from PostgreSQL.
 * - {@link startJwksServer} serves the key sets' JWKS and discovery documents.
 *
 * Each export is named here on purpose; everything else in the package is internal and may change
 * in any release.
 *
 * @packageDocumentation
 */

// Driving key sets through Temporal.
export { KeySetClient } from './client/key-set-client';
export type {
  ApplyRequest,
  KeySetApplyResult,
  KeySetClientConnectOptions,
  KeySetClientOptions,
  VerifyKeySetOptions,
  VisibleKeySet,
} from './client/key-set-client';
export type { KeySetVerification } from './client/verify';
export type { Violation, ViolationCode } from './domain/invariants';
export type {
  DecommissionRequest,
  PolicyUpdate,
  PolicyUpdateResult,
  RecommissionRequest,
  RevocationResult,
  RotationRequest,
  RotationResult,
} from './workflows/messages';
export type { KeySetStatus, LastError, PendingRotation } from './domain/key-set-state';
export { KEY_STATES, LIVE_STATES } from './domain/lifecycle';
export type { ForcedRotation, KeyState, KeyTimeline, LiveKeyState, ScheduledTransition } from './domain/lifecycle';

// Policies.
export { DEFAULT_POLICY, OPTIONAL_POLICY_FIELDS, validatePolicy } from './domain/policy';
export type { KeySetPolicy, PolicyCeilings, PolicyPatch } from './domain/policy';
export { formatDuration, parseDuration } from './domain/duration';
export { SIGNING_ALGORITHMS } from './domain/algorithms';
export type { SigningAlgorithm } from './domain/algorithms';

// Signing tokens.
export { KeyRing } from './issuer/key-ring';
export type { KeyRingOptions, SignOptions, TokenClaims } from './issuer/key-ring';
export { keySetIssuer } from './domain/issuer';
export type { DeploymentIssuer } from './domain/issuer';
export { Kek, KekRing, parseKekRing } from './crypto/kek';
export type { PublicJwk } from './crypto/generate';
export type { SealedPrivateKey } from './crypto/envelope';

// Where private keys are held.
export { CustodyRegistry } from './custody/custody-registry';
export type { CustodyFactory, CustodyRegistryOptions } from './custody/custody-registry';
export type {
  CustodyKey,
  CustodyKeyProperties,
  HeldKey,
  KeyCustody,
  KeyOwner,
  SignatureFunction,
} from './custody/key-custody';
export { CUSTODY_ALGORITHMS, CUSTODY_BACKENDS } from './domain/custody-settings';
export type {
  AwsKmsCustodySettings,
  CustodyBackend,
  CustodySettings,
  Pkcs11CustodySettings,
  SealedCustodySettings,
} from './domain/custody-settings';

// Serving the JWKS.
export { startJwksServer } from './jwks/server';
export type { JwksServerOptions, RunningJwksServer } from './jwks/server';
export { createLogger } from './logger';
export type { Logger, LoggerOptions } from './logger';
export { createMetricsRegistry } from './observability/metrics';

// Errors.
export { KeyturnError, PolicyError } from './domain/errors';
export type { KeyturnErrorCode, KeyturnErrorDetails, PolicyViolation } from './domain/errors';
