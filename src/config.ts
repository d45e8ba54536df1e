import path from 'node:path';
import { z } from 'zod';
import { KeyturnError } from './domain/errors';

/** pino's levels; `silent` turns logging off. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Everything keyturn reads from the environment, validated once at startup. */
export interface Config {
  /** `host:port` of the Temporal frontend. */
  temporalAddress: string;
  temporalNamespace: string;
  taskQueue: string;
  /** An external PostgreSQL; unset means the embedded one under `dataDir`. */
  databaseUrl?: string;
  /**
   * The raw value of KEYTURN_KEK (comma-separated base64 keys), checked by `parseKekRing` when it is
   * used. Kept under the name `kek` so the logger's redaction covers it should it ever be logged.
   */
  kek?: string;
  /** Absolute path of the folder for embedded data: PostgreSQL, the Temporal dev server's file, the KEK file. */
  dataDir: string;
  /** Port of the embedded PostgreSQL. */
  pgPort: number;
  /** Port of the JWKS server (`keyturn serve`, and inside `keyturn dev`). */
  jwksPort: number;
  /** Base URL where this deployment serves its JWKS; the propagation gate checks it when a policy names no `publishedAt`. */
  jwksUrl?: string;
  logLevel: LogLevel;
  /**
   * Which settings came from the environment rather than a default: `keyturn dev` starts its own
   * Temporal server only when TEMPORAL_ADDRESS is not set, and settings found in a running
   * instance's file yield to these.
   */
  explicit: { temporalAddress: boolean; temporalNamespace: boolean };
}

/** Values a command line flag may set in place of its variable (a flag wins over the environment). */
export type ConfigOverrides = Partial<Pick<Config, 'dataDir' | 'pgPort' | 'jwksPort'>>;

const HOST_PORT = /^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]/]+):(\d{1,5})$/;

const port = (hint: string) =>
  z.coerce
    .number({ error: `must be a port number (${hint})` })
    .int({ error: `must be a whole port number (${hint})` })
    .min(1, { error: `must be between 1 and 65535 (${hint})` })
    .max(65535, { error: `must be between 1 and 65535 (${hint})` });

const identifier = (what: string) =>
  z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { error: `must be a ${what} name: letters, digits, '.', '_' or '-'` });

// Each key is the variable's own name, so an issue's path names the variable to fix.
const schema = z.object({
  TEMPORAL_ADDRESS: z
    .string()
    .refine((v) => HOST_PORT.test(v) && Number(HOST_PORT.exec(v)![2]) <= 65535, {
      error: 'must be host:port, e.g. localhost:7233',
    })
    .optional(),
  TEMPORAL_NAMESPACE: identifier('Temporal namespace').optional(),
  KEYTURN_TASK_QUEUE: identifier('task queue').default('keyturn'),
  // The value is never quoted back: it may hold a password.
  DATABASE_URL: z
    .string()
    .refine(isPostgresUrl, { error: 'must be a postgres:// or postgresql:// URL, e.g. postgres://user:password@host:5432/keyturn' })
    .optional(),
  KEYTURN_KEK: z.string().optional(),
  KEYTURN_DATA_DIR: z.string().default('.keyturn'),
  KEYTURN_PG_PORT: port('the embedded PostgreSQL, default 5433').default(5433),
  PORT: port('the JWKS server, default 8080').default(8080),
  KEYTURN_JWKS_URL: z
    .string()
    .regex(/^https?:\/\/[^\s/?#]+[^\s?#]*$/, { error: 'must be the http(s) base URL of the JWKS server, e.g. https://keys.example.com' })
    .transform((url) => url.replace(/\/+$/, ''))
    .optional(),
  LOG_LEVEL: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }).default('info'),
});

/**
 * Reads and checks keyturn's environment variables. Empty values count as unset (compose files
 * often pass `VAR=`). A bad value throws one ERR_CONFIG_INVALID naming every variable at fault.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: ConfigOverrides = {}): Config {
  const input = Object.fromEntries(
    Object.keys(schema.shape).map((name) => [name, env[name]?.trim() ? env[name].trim() : undefined]),
  );
  const parsed = schema.safeParse(input);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${String(issue.path[0])} ${issue.message}`);
    throw new KeyturnError('ERR_CONFIG_INVALID', `invalid environment: ${problems.join('; ')}`, {
      field: String(parsed.error.issues[0]?.path[0]),
    });
  }
  const values = parsed.data;
  return {
    temporalAddress: values.TEMPORAL_ADDRESS ?? 'localhost:7233',
    temporalNamespace: values.TEMPORAL_NAMESPACE ?? 'default',
    taskQueue: values.KEYTURN_TASK_QUEUE,
    databaseUrl: values.DATABASE_URL,
    kek: values.KEYTURN_KEK,
    dataDir: path.resolve(overrides.dataDir ?? values.KEYTURN_DATA_DIR),
    pgPort: overrides.pgPort ?? values.KEYTURN_PG_PORT,
    jwksPort: overrides.jwksPort ?? values.PORT,
    jwksUrl: values.KEYTURN_JWKS_URL,
    logLevel: values.LOG_LEVEL,
    explicit: {
      temporalAddress: values.TEMPORAL_ADDRESS !== undefined,
      temporalNamespace: values.TEMPORAL_NAMESPACE !== undefined,
    },
  };
}

function isPostgresUrl(value: string): boolean {
  try {
    return ['postgres:', 'postgresql:'].includes(new URL(value).protocol);
  } catch {
    return false;
  }
}
