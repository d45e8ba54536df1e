/**
 * keyturn's public surface for the services that issue tokens: `import { KeyRing } from 'keyturn'`.
 * Named re-exports only; everything else is internal.
 */
export { KeyRing } from './issuer/key-ring';
export type { KeyRingOptions, SignOptions, TokenClaims } from './issuer/key-ring';
export { Kek, KekRing, parseKekRing } from './crypto/kek';
export { KeyturnError } from './domain/errors';
export type { KeyturnErrorCode } from './domain/errors';
export type { SigningAlgorithm } from './domain/algorithms';
export type { PublicJwk } from './crypto/generate';
