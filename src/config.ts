import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { durationToMs, DURATION_HINT } from './domain/duration';
import { DEFAULT_CEILINGS, type PolicyCeilings } from './domain/policy';
import { KeyturnError } from './domain/errors';
import { isKeySetId, KEY_SET_ID_RULE } from './domain/key-set-id';
import { defaultBurst, RATE_HINT, rateToPerSecond, type Rate } from './domain/rate';
import { loadTemporalProfile, type TemporalProfile } from './runtime/temporal-profile';
import type { DatabaseRoles } from './store/database-roles';

/** pino's levels; `silent` turns logging off. */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Everything keyturn reads from the environment, validated once at startup. */
export interface Config {
  /** `host:port` of the Temporal frontend: TEMPORAL_ADDRESS, else the Temporal profile's, else localhost:7233. */
  temporalAddress: string;
  temporalNamespace: string;
  /** Temporal's environment configuration (TEMPORAL_* variables over a TOML profile): TLS, API key, gRPC metadata. */
  temporalProfile: TemporalProfile;
  taskQueue: string;
  /** An external PostgreSQL; unset means the embedded one under `dataDir`. */
  databaseUrl?: string;
  /**
   * The roles `keyturn migrate` grants what the JWKS server, the worker and the signer need
   * (KEYTURN_JWKS_ROLE, KEYTURN_WORKER_ROLE, KEYTURN_SIGNER_ROLE).
   */
  databaseRoles: DatabaseRoles;
  /**
   * The raw value of KEYTURN_KEK (comma-separated base64 keys), checked by `parseKekRing` when it is
   * used. Kept under the name `kek` so the logger's redaction covers it should it ever be logged.
   */
  kek?: string;
  /** Absolute path of the local data folder: embedded PostgreSQL, the dev server's file, the KEK file, instance.json. */
  dataDir: string;
  /** Port of the embedded PostgreSQL. */
  pgPort: number;
  /** Port of the JWKS server (`keyturn serve`, and inside `keyturn dev`). */
  jwksPort: number;
  /**
   * Base URLs of this deployment's JWKS servers, each one a verifier may reach (every replica behind a
   * balancer: through the balancer the gate would see one replica's view); the propagation gate checks
   * them all when a policy names no `publishedAt`.
   */
  jwksUrls?: string[];
  /**
   * KEYTURN_PUBLIC_URL: the base URL verifiers reach the JWKS server at (behind a proxy, say), for the
   * discovery documents' `jwks_uri` and default issuer; unset, the URL the server listens on.
   */
  publicUrl?: string;
  /** KEYTURN_DEFAULT_KEYSET: the key set the JWKS server answers `/.well-known/*` for (default `default`). */
  defaultKeySetId: string;
  /** KEYTURN_ISSUER: the issuer of key sets whose policy names none; unset, the discovery document's base URL. */
  issuer?: string;
  /** Port of the worker's Prometheus endpoint (`/metrics`); in `keyturn dev` the JWKS server's serves everything. */
  metricsPort: number;
  /** Port of the Temporal SDK's own Prometheus exporter in the worker process (`temporal_*` metrics). */
  sdkMetricsPort: number;
  /**
   * KEYTURN_METRICS_PER_KEY_SET: every key set's series on /metrics (keys, ages, next transition,
   * counters, JWKS requests, view ages). Off, per-key-set series are only those of key sets an alert
   * is about, so a scrape stays the same size however many healthy key sets there are.
   */
  metricsPerKeySet: boolean;
  logLevel: LogLevel;
  alerts: AlertConfig;
  /** KEYTURN_MAX_TOKEN_TTL_CEILING and KEYTURN_MAX_ROTATION_PERIOD_CEILING: what no key set's policy may exceed. */
  ceilings: PolicyCeilings;
  signer: SignerConfig;
  /**
   * Which settings came from the environment (or the Temporal profile) rather than a default:
   * `keyturn dev` starts its own Temporal server only when no address is configured, and settings
   * found in a running instance's file yield to these.
   */
  explicit: { temporalAddress: boolean; temporalNamespace: boolean };
}

/** `keyturn signer`: where it listens, its TLS, and how fast a client may sign unless its own rate says otherwise. */
export interface SignerConfig {
  /** KEYTURN_SIGNER_PORT, default 8081. */
  port: number;
  /** KEYTURN_SIGNER_HOST, default 127.0.0.1: the signing API is for this machine's processes unless told otherwise. */
  host: string;
  /** KEYTURN_SIGNER_TLS_CERT_FILE and _KEY_FILE (PEM); with _CLIENT_CA_FILE, clients must show a certificate that CA issued. */
  tls?: { certFile: string; keyFile: string; clientCaFile?: string };
  /** KEYTURN_SIGNER_RATE (e.g. `100/s`) and KEYTURN_SIGNER_BURST (default two seconds' worth): each client's token bucket. */
  rate: Rate;
}

/** Where alerts go besides the log, and how often a lasting incident is announced again. */
export interface AlertConfig {
  /** SLACK_WEBHOOK_URL: a Slack incoming webhook. */
  slackWebhookUrl?: SecretUrl;
  /** ALERT_WEBHOOK_URL: any receiver of keyturn's JSON alert object. */
  webhookUrl?: SecretUrl;
  /** KEYTURN_UI_URL: the Temporal Web UI's base URL, for a link to the key set's workflow in each message. */
  uiUrl?: string;
  /** KEYTURN_ALERT_REMINDER: how long an open incident stays quiet before a reminder. */
  reminderMs: number;
  /** KEYTURN_ALERT_TIMEOUT: how long one delivery attempt may take. */
  timeoutMs: number;
  /** KEYTURN_OVERDUE_TOLERANCE: how long past its rotation period an active key may sign before the supervisor alerts. */
  overdueToleranceMs: number;
}

/**
 * A URL that is a credential (whoever knows a Slack incoming webhook's URL can post to the channel).
 * It prints as a placeholder everywhere, JSON and logs included; only `reveal()` gives the URL, to send to it.
 */
export class SecretUrl {
  readonly #url: string;

  constructor(url: string) {
    this.#url = url;
  }

  reveal(): string {
    return this.#url;
  }

  toString(): string {
    return '[secret URL]';
  }

  toJSON(): string {
    return '[secret URL]';
  }
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

// The value is never quoted back in the message: a webhook URL is a credential.
const httpUrl = (what: string) =>
  z.string().refine(isHttpUrl, { error: `must be an http(s) URL (${what}); the value is not shown here` });

const duration = (what: string, max?: { ms: number; text: string }) =>
  z.string().transform((value, ctx) => {
    const ms = durationToMs(value);
    if (ms === undefined || ms === 0)
      ctx.addIssue({ code: 'custom', message: `must be a duration (${what}): ${DURATION_HINT}` });
    else if (max && ms > max.ms) ctx.addIssue({ code: 'custom', message: `must be at most ${max.text} (${what})` });
    return ms ?? 0;
  });

/** An http(s) URL without query or fragment, kept without its trailing slashes so that paths can be appended. */
const baseUrl = (error: string) =>
  z
    .string()
    .regex(/^https?:\/\/[^\s/?#]+[^\s?#]*$/, { error })
    .transform((url) => url.replace(/\/+$/, ''));

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

const identifier = (what: string) =>
  z.string().regex(NAME, { error: `must be a ${what} name: letters, digits, '.', '_' or '-'` });

// Lower case only: the same name then works quoted and unquoted in the SQL a DBA is asked to run.
const roleName = (what: string) =>
  z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, {
    error: `must be the PostgreSQL role of ${what}: lower-case letters, digits and '_', at most 63`,
  });

/**
 * Variables that hold secrets. Each may come from a file instead, named by `<NAME>_FILE` (the
 * convention for Docker and Kubernetes secrets, which are mounted as files); setting both is an error.
 */
export const SECRET_VARIABLES = ['DATABASE_URL', 'KEYTURN_KEK', 'SLACK_WEBHOOK_URL', 'ALERT_WEBHOOK_URL'] as const;

// Each key is the variable's own name, so an issue's path names the variable to fix.
const schema = z.object({
  TEMPORAL_ADDRESS: z
    .string()
    .refine(isHostPort, {
      error: 'must be host:port, e.g. localhost:7233',
    })
    .optional(),
  TEMPORAL_NAMESPACE: identifier('Temporal namespace').optional(),
  KEYTURN_TASK_QUEUE: identifier('task queue').default('keyturn'),
  // The value is never quoted back: it may hold a password.
  DATABASE_URL: z
    .string()
    .refine(isPostgresUrl, {
      error: 'must be a postgres:// or postgresql:// URL, e.g. postgres://user:password@host:5432/keyturn',
    })
    .optional(),
  KEYTURN_KEK: z.string().optional(),
  KEYTURN_JWKS_ROLE: roleName('the JWKS server (keyturn serve), default keyturn_jwks').default('keyturn_jwks'),
  KEYTURN_WORKER_ROLE: roleName('the worker, default keyturn_worker').default('keyturn_worker'),
  KEYTURN_SIGNER_ROLE: roleName('the signing service (keyturn signer), default keyturn_signer').default(
    'keyturn_signer',
  ),
  KEYTURN_DATA_DIR: z.string().default('.keyturn'),
  KEYTURN_PG_PORT: port('the embedded PostgreSQL, default 5433').default(5433),
  PORT: port('the JWKS server, default 8080').default(8080),
  KEYTURN_JWKS_URL: z
    .string()
    .transform((value) => value.split(',').map((url) => url.trim()))
    .pipe(
      z.array(
        baseUrl(
          'must be the http(s) base URL of each JWKS server, separated by commas, e.g. http://jwks-1:8080,http://jwks-2:8080',
        ),
      ),
    )
    .optional(),
  KEYTURN_PUBLIC_URL: baseUrl(
    'must be the http(s) base URL verifiers reach the JWKS server at, without query or fragment, e.g. https://keys.example.com',
  ).optional(),
  KEYTURN_DEFAULT_KEYSET: z
    .string()
    .refine(isKeySetId, { error: `must be a key set id: ${KEY_SET_ID_RULE}` })
    .default('default'),
  KEYTURN_ISSUER: z.string().optional(),
  KEYTURN_METRICS_PORT: port("the worker's /metrics, default 9464").default(9464),
  KEYTURN_SDK_METRICS_PORT: port("the Temporal SDK's metrics, default 9465").default(9465),
  KEYTURN_METRICS_PER_KEY_SET: z
    .enum(['true', 'false'], { error: "must be true or false (every key set's series on /metrics, default false)" })
    .default('false')
    .transform((value) => value === 'true'),
  SLACK_WEBHOOK_URL: httpUrl('a Slack incoming webhook').optional(),
  ALERT_WEBHOOK_URL: httpUrl('a receiver of JSON alerts').optional(),
  KEYTURN_UI_URL: httpUrl('the Temporal Web UI, e.g. http://localhost:8233')
    .transform((url) => url.replace(/\/+$/, ''))
    .optional(),
  KEYTURN_ALERT_REMINDER: duration('between reminders of an open incident, default 4h').default(4 * 3_600_000),
  KEYTURN_ALERT_TIMEOUT: duration('of one alert delivery, default 10s', { ms: 30_000, text: '30s' }).default(10_000),
  KEYTURN_OVERDUE_TOLERANCE: duration('past the rotation period before an active key is too old, default 1h').default(
    3_600_000,
  ),
  KEYTURN_MAX_TOKEN_TTL_CEILING: duration('the longest maxTokenTtl any key set may have, default 1d').default(
    DEFAULT_CEILINGS.maxTokenTtlMs,
  ),
  KEYTURN_MAX_ROTATION_PERIOD_CEILING: duration(
    'the longest rotationPeriod any key set may have, default 365d',
  ).default(DEFAULT_CEILINGS.rotationPeriodMs),
  KEYTURN_SIGNER_PORT: port('the signing service, default 8081').default(8081),
  KEYTURN_SIGNER_HOST: z.string().default('127.0.0.1'),
  KEYTURN_SIGNER_TLS_CERT_FILE: z.string().optional(),
  KEYTURN_SIGNER_TLS_KEY_FILE: z.string().optional(),
  KEYTURN_SIGNER_TLS_CLIENT_CA_FILE: z.string().optional(),
  KEYTURN_SIGNER_RATE: z
    .string()
    .transform((value, ctx) => {
      const perSecond = rateToPerSecond(value);
      if (perSecond === undefined)
        ctx.addIssue({
          code: 'custom',
          message: `must be a rate (each signing client's, default 100/s): ${RATE_HINT}`,
        });
      return perSecond ?? 0;
    })
    .default(100),
  KEYTURN_SIGNER_BURST: z.coerce
    .number({ error: "must be a whole number of requests (a signing client's burst)" })
    .int({ error: "must be a whole number of requests (a signing client's burst)" })
    .min(1, { error: "must be at least 1 (a signing client's burst)" })
    .optional(),
  LOG_LEVEL: z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` }).default('info'),
});

/**
 * Reads and checks keyturn's environment variables. Empty values count as unset (compose files
 * often pass `VAR=`), and so does an empty secret file. A bad value throws one ERR_CONFIG_INVALID
 * naming every variable at fault; a secret's value is never quoted.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, overrides: ConfigOverrides = {}): Config {
  const setting = (name: string) => env[name]?.trim() || undefined;
  const input: Record<string, string | undefined> = Object.fromEntries(
    Object.keys(schema.shape).map((name) => [name, setting(name)]),
  );
  const problems: { variable: string; message: string }[] = [];
  const fromFile = new Map<string, string>();
  for (const name of SECRET_VARIABLES) {
    const file = setting(`${name}_FILE`);
    if (file === undefined) continue;
    if (input[name] !== undefined) {
      problems.push({ variable: `${name}_FILE`, message: `and ${name} are both set: keep one` });
      continue;
    }
    try {
      input[name] = readFileSync(file, 'utf8').trim() || undefined;
      fromFile.set(name, file);
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      problems.push({ variable: `${name}_FILE`, message: `names ${file}, which cannot be read (${reason})` });
    }
  }
  const parsed = schema.safeParse(input);
  for (const issue of parsed.error?.issues ?? []) {
    const name = String(issue.path[0]);
    const file = fromFile.get(name);
    problems.push(
      file === undefined
        ? { variable: name, message: issue.message }
        : { variable: `${name}_FILE`, message: `names ${file}, whose content ${issue.message}` },
    );
  }
  if (!parsed.success || problems.length > 0) {
    throw new KeyturnError(
      'ERR_CONFIG_INVALID',
      `invalid environment: ${problems.map((p) => `${p.variable} ${p.message}`).join('; ')}`,
      {
        field: problems[0].variable,
      },
    );
  }
  const values = parsed.data;
  const signerTls = [values.KEYTURN_SIGNER_TLS_CERT_FILE, values.KEYTURN_SIGNER_TLS_KEY_FILE];
  if (signerTls.filter((file) => file !== undefined).length === 1) {
    throw new KeyturnError(
      'ERR_CONFIG_INVALID',
      'invalid environment: KEYTURN_SIGNER_TLS_CERT_FILE and KEYTURN_SIGNER_TLS_KEY_FILE go together: set both for TLS, or neither',
      {
        field:
          values.KEYTURN_SIGNER_TLS_CERT_FILE === undefined
            ? 'KEYTURN_SIGNER_TLS_CERT_FILE'
            : 'KEYTURN_SIGNER_TLS_KEY_FILE',
      },
    );
  }
  if (values.KEYTURN_SIGNER_TLS_CLIENT_CA_FILE !== undefined && values.KEYTURN_SIGNER_TLS_CERT_FILE === undefined) {
    throw new KeyturnError(
      'ERR_CONFIG_INVALID',
      'invalid environment: KEYTURN_SIGNER_TLS_CLIENT_CA_FILE asks for client certificates, which need TLS: set KEYTURN_SIGNER_TLS_CERT_FILE and KEYTURN_SIGNER_TLS_KEY_FILE too',
      { field: 'KEYTURN_SIGNER_TLS_CLIENT_CA_FILE' },
    );
  }
  const roles = [values.KEYTURN_JWKS_ROLE, values.KEYTURN_WORKER_ROLE, values.KEYTURN_SIGNER_ROLE];
  if (new Set(roles).size < roles.length && values.KEYTURN_JWKS_ROLE !== values.KEYTURN_WORKER_ROLE) {
    throw new KeyturnError(
      'ERR_CONFIG_INVALID',
      `invalid environment: KEYTURN_SIGNER_ROLE ${values.KEYTURN_SIGNER_ROLE} is also the JWKS server's or the worker's role: the signing service gets a role of its own, which reads what it signs with and nothing more`,
      { field: 'KEYTURN_SIGNER_ROLE' },
    );
  }
  if (values.KEYTURN_JWKS_ROLE === values.KEYTURN_WORKER_ROLE) {
    throw new KeyturnError(
      'ERR_CONFIG_INVALID',
      `invalid environment: KEYTURN_JWKS_ROLE and KEYTURN_WORKER_ROLE are both ${values.KEYTURN_JWKS_ROLE}: the JWKS server's role must not be one that can read private keys`,
      { field: 'KEYTURN_JWKS_ROLE' },
    );
  }
  const temporalProfile = loadTemporalProfile(env);
  checkTemporalProfile(temporalProfile);
  return {
    temporalAddress: temporalProfile.address ?? 'localhost:7233',
    temporalNamespace: temporalProfile.namespace ?? 'default',
    temporalProfile,
    taskQueue: values.KEYTURN_TASK_QUEUE,
    databaseUrl: values.DATABASE_URL,
    databaseRoles: {
      jwks: values.KEYTURN_JWKS_ROLE,
      worker: values.KEYTURN_WORKER_ROLE,
      signer: values.KEYTURN_SIGNER_ROLE,
    },
    kek: values.KEYTURN_KEK,
    dataDir: path.resolve(overrides.dataDir ?? values.KEYTURN_DATA_DIR),
    pgPort: overrides.pgPort ?? values.KEYTURN_PG_PORT,
    jwksPort: overrides.jwksPort ?? values.PORT,
    jwksUrls: values.KEYTURN_JWKS_URL,
    publicUrl: values.KEYTURN_PUBLIC_URL,
    defaultKeySetId: values.KEYTURN_DEFAULT_KEYSET,
    issuer: values.KEYTURN_ISSUER,
    metricsPort: values.KEYTURN_METRICS_PORT,
    sdkMetricsPort: values.KEYTURN_SDK_METRICS_PORT,
    metricsPerKeySet: values.KEYTURN_METRICS_PER_KEY_SET,
    logLevel: values.LOG_LEVEL,
    ceilings: {
      maxTokenTtlMs: values.KEYTURN_MAX_TOKEN_TTL_CEILING,
      rotationPeriodMs: values.KEYTURN_MAX_ROTATION_PERIOD_CEILING,
    },
    signer: {
      port: values.KEYTURN_SIGNER_PORT,
      host: values.KEYTURN_SIGNER_HOST,
      tls:
        values.KEYTURN_SIGNER_TLS_CERT_FILE === undefined || values.KEYTURN_SIGNER_TLS_KEY_FILE === undefined
          ? undefined
          : {
              certFile: values.KEYTURN_SIGNER_TLS_CERT_FILE,
              keyFile: values.KEYTURN_SIGNER_TLS_KEY_FILE,
              clientCaFile: values.KEYTURN_SIGNER_TLS_CLIENT_CA_FILE,
            },
      rate: {
        perSecond: values.KEYTURN_SIGNER_RATE,
        burst: values.KEYTURN_SIGNER_BURST ?? defaultBurst(values.KEYTURN_SIGNER_RATE),
      },
    },
    alerts: {
      slackWebhookUrl: values.SLACK_WEBHOOK_URL === undefined ? undefined : new SecretUrl(values.SLACK_WEBHOOK_URL),
      webhookUrl: values.ALERT_WEBHOOK_URL === undefined ? undefined : new SecretUrl(values.ALERT_WEBHOOK_URL),
      uiUrl: values.KEYTURN_UI_URL,
      reminderMs: values.KEYTURN_ALERT_REMINDER,
      timeoutMs: values.KEYTURN_ALERT_TIMEOUT,
      overdueToleranceMs: values.KEYTURN_OVERDUE_TOLERANCE,
    },
    explicit: {
      temporalAddress: temporalProfile.address !== undefined,
      temporalNamespace: temporalProfile.namespace !== undefined,
    },
  };
}

/** A profile file's address and namespace get the checks their variables get (a variable set overrides the file). */
function checkTemporalProfile(profile: TemporalProfile): void {
  const problems = [
    profile.address !== undefined &&
      !isHostPort(profile.address) &&
      `address "${profile.address}" must be host:port, e.g. localhost:7233`,
    profile.namespace !== undefined &&
      !NAME.test(profile.namespace) &&
      `namespace "${profile.namespace}" must be a namespace name: letters, digits, '.', '_' or '-'`,
  ].filter(Boolean);
  if (problems.length > 0) {
    throw new KeyturnError('ERR_CONFIG_INVALID', `invalid Temporal profile "${profile.name}": ${problems.join('; ')}`, {
      field: 'TEMPORAL_PROFILE',
    });
  }
}

function isHostPort(value: string): boolean {
  const match = HOST_PORT.exec(value);
  return match !== null && Number(match[2]) <= 65535;
}

function isPostgresUrl(value: string): boolean {
  try {
    return ['postgres:', 'postgresql:'].includes(new URL(value).protocol);
  } catch {
    return false;
  }
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return ['http:', 'https:'].includes(url.protocol) && url.hostname !== '';
  } catch {
    return false;
  }
}
