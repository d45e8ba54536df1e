import { KeyturnError } from './errors';

/**
 * What a key set id may be, wherever one enters: `keysets.yaml`, the CLI, the client, the JWKS
 * server's URLs. An id names the workflow `keyset/<id>`, the URL `/keysets/<id>/jwks.json` and rows
 * in PostgreSQL, and these characters need no escaping in any of them. `.` and `..` are excluded
 * because HTTP clients resolve them away as path segments: their JWKS could never be fetched.
 */
const KEY_SET_ID = /^[A-Za-z0-9._-]{1,64}$/;

export const KEY_SET_ID_RULE = "1 to 64 ASCII letters, digits, '.', '_' or '-', other than '.' and '..'";

export function isKeySetId(value: unknown): value is string {
  return typeof value === 'string' && KEY_SET_ID.test(value) && value !== '.' && value !== '..';
}

/** Why `value` is no key set id, quoting it (shortened, escaped) for a one-line message; undefined when it is one. */
export function keySetIdProblem(value: unknown): string | undefined {
  if (isKeySetId(value)) return undefined;
  const shown =
    typeof value === 'string' && value.length > 64
      ? `${JSON.stringify(value.slice(0, 64))}… (${value.length} characters)`
      : JSON.stringify(value);
  return `${shown} is not a valid key set id: use ${KEY_SET_ID_RULE}`;
}

/** `value` when it is a key set id; otherwise throws ERR_KEYSET_ID_INVALID naming `field`. */
export function checkKeySetId(value: unknown, field: string): string {
  const problem = keySetIdProblem(value);
  if (problem === undefined) return value as string;
  throw new KeyturnError('ERR_KEYSET_ID_INVALID', `${field}: ${problem}`, { field });
}
