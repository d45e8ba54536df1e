import type { ViolationCode } from '../domain/invariants';
import { WORKFLOW_STOPPED_INCIDENT, type Alert } from '../domain/incidents';

/** Each broken invariant in a few words, for the first line of a supervisor alert. */
export const VIOLATION_TITLES: Record<ViolationCode, string> = {
  NO_ACTIVE_KEY: 'no active key: nothing can sign',
  SEVERAL_ACTIVE_KEYS: 'more than one active key',
  SEVERAL_NEXT_KEYS: 'more than one next key',
  STATE_MISMATCH: "the workflow and PostgreSQL disagree on a key's state",
  TIME_MISMATCH: "the workflow and PostgreSQL disagree on a key's times",
  UNKNOWN_TO_WORKFLOW: 'PostgreSQL holds a live key the workflow does not know',
  MISSING_FROM_DATABASE: 'the workflow tracks a key PostgreSQL does not hold',
  PRIVATE_PART_KEPT: 'a destroyed or revoked key kept its private part',
  KID_MISMATCH: 'a key whose kid is not the thumbprint of its public key',
  OVERDUE: 'a scheduled transition is overdue',
  ACTIVE_KEY_TOO_OLD: 'the active key is older than its rotation period allows',
};

const VERIFY = (id: string) =>
  `\`keyturn verify ${id}\` compares the workflow, PostgreSQL and the JWKS; \`keyturn status ${id}\` shows the keys`;

/** What to check for a KeyturnError code or an invariant code. */
const BY_CODE: Record<string, (id: string) => string> = {
  ERR_KEK_MISSING: () =>
    "the worker's KEYTURN_KEK: the worker cannot seal or open private keys without it; set it and restart the worker",
  ERR_KEK_INVALID: () => 'KEYTURN_KEK must be base64 32-byte keys, comma-separated; fix it and restart the worker',
  ERR_KEK_UNKNOWN: () =>
    'KEYTURN_KEK lacks the KEK named in the error (a rolled KEK must stay in the list until every key is rewrapped); add it back and restart the worker',
  ERR_KEY_DECRYPTION_FAILED: () =>
    "a stored private key does not open with its KEK: was KEYTURN_KEK changed? Put the original key back in the worker's KEYTURN_KEK",
  ERR_CUSTODY_UNAVAILABLE: () =>
    "the key custody named in the error (AWS KMS: the worker's AWS credentials, region and network path to KMS; PKCS#11: the token, its module and PIN): the step is retried until it answers",
  ERR_CUSTODY_KEY_MISSING: (id) =>
    `the key is gone from its KMS or token (deleted there, or the wrong account or token): \`keyturn status ${id}\`; revoke it (\`keyturn revoke ${id} <kid> --reason ...\`) and a new key replaces it`,
  ERR_CUSTODY_ALGORITHM_UNSUPPORTED: () =>
    "the key set's custody cannot hold its algorithm: change the policy's algorithm or custody in keysets.yaml and run `keyturn apply -f keysets.yaml`",
  ERR_CONFIG_INVALID: () =>
    'the setting named in the error (a refused PKCS#11 PIN, say: not retried at once, as an HSM may lock a PIN tried again and again): fix it; the step is tried again after its backoff',
  ERR_KEY_STATE_CONFLICT: VERIFY,
  ERR_KID_UNKNOWN: VERIFY,
  ERR_KEYSET_NOT_FOUND: (id) =>
    `the key set is not registered in PostgreSQL: \`keyturn apply -f keysets.yaml\` registers it; check DATABASE_URL points at the right database (\`keyturn status ${id}\`)`,
  ERR_POLICY_INVALID: () => "the key set's policy: correct it in keysets.yaml and run `keyturn apply -f keysets.yaml`",
  NO_ACTIVE_KEY: (id) =>
    `\`keyturn status ${id}\`: is the workflow running and not failing? \`keyturn rotate ${id} --reason ...\` promotes a key`,
  SEVERAL_ACTIVE_KEYS: VERIFY,
  SEVERAL_NEXT_KEYS: VERIFY,
  STATE_MISMATCH: VERIFY,
  TIME_MISMATCH: (id) => `${VERIFY(id)}; the audit trail tells who changed the key, and when`,
  UNKNOWN_TO_WORKFLOW: VERIFY,
  MISSING_FROM_DATABASE: VERIFY,
  PRIVATE_PART_KEPT: (id) =>
    `a key that should be erased still has its private part, sealed in PostgreSQL or in its KMS or token: ${VERIFY(id)}; the audit trail shows when it was destroyed or revoked`,
  KID_MISMATCH: (id) =>
    `the key's stored public key was changed outside keyturn (\`keyturn audit ${id}\` shows every change keyturn made; the database's logs tell who made another): JWKS servers leave the key out and key rings do not sign with it; revoke it (\`keyturn revoke ${id} <kid> --reason ...\`) and a new key replaces it`,
  OVERDUE: (id) =>
    `is the worker running, and the key set not paused or failing? \`keyturn status ${id}\` and the workflow in the Web UI`,
  ACTIVE_KEY_TOO_OLD: (id) =>
    `\`keyturn status ${id}\`: a paused key set needs \`keyturn resume ${id}\`, a failing one its last error fixed; \`keyturn rotate ${id} --reason ...\` rotates now`,
};

/** What to check when a step of the key set workflow keeps failing, by step. */
const BY_STEP: Record<string, (id: string) => string> = {
  propagation: (id) =>
    `every JWKS URL of the key set (its policy's publishedAt, else KEYTURN_JWKS_URL) must list the next key: check the JWKS server and any CDN in front of it; the promotion waits until then (\`keyturn status ${id}\`)`,
  supervisor: (id) => `\`keyturn status ${id}\` and the workflow in the Web UI`,
};

const STOPPED = (id: string) =>
  `the key set's workflow had stopped (terminated, failed or timed out): see why in the Web UI; it runs again, \`keyturn status ${id}\` shows its state`;

/** The first thing an operator should check about `alert`, with the commands to run. */
export function hintFor(alert: Pick<Alert, 'keySetId' | 'incident' | 'step' | 'code'>): string {
  const id = alert.keySetId;
  if (alert.incident === WORKFLOW_STOPPED_INCIDENT) return STOPPED(id);
  const byCode = alert.code === undefined ? undefined : BY_CODE[alert.code];
  if (byCode) return byCode(id);
  const byStep = BY_STEP[alert.step];
  if (byStep) return byStep(id);
  // Every other step is a PostgreSQL transaction: an outage is by far the likeliest cause.
  return `check PostgreSQL reachability from the worker (DATABASE_URL) and the worker's log; \`keyturn status ${id}\` shows the last error; the step is retried after a backoff`;
}
