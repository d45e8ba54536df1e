import { existsSync } from 'node:fs';
import { loadClientConfigProfile, type ClientConfigProfile } from '@temporalio/envconfig';
import { KeyturnError } from '../domain/errors';

const DEFAULT_CONFIG_FILE = '~/.config/temporalio/temporal.toml';

/**
 * Temporal's own environment configuration, read the way the `temporal` CLI and the Temporal SDKs
 * read it (`@temporalio/envconfig`): the TOML profile TEMPORAL_PROFILE names (else `default`) in
 * TEMPORAL_CONFIG_FILE (else ~/.config/temporalio/temporal.toml), each TEMPORAL_* variable
 * overriding its field. Only the TOML file is read here; certificate files are read when connecting,
 * so a process that never talks to Temporal never opens them. The API key, the client key and gRPC
 * metadata stay private: the profile prints without them.
 */
export class TemporalProfile {
  readonly #settings: ClientConfigProfile;
  readonly #addressFrom: string | undefined;
  /** The profile's name: TEMPORAL_PROFILE, else `default`. */
  readonly name: string;

  constructor(name: string, settings: ClientConfigProfile, addressFrom: string | undefined) {
    this.name = name;
    this.#settings = settings;
    this.#addressFrom = addressFrom;
  }

  get address(): string | undefined {
    return this.#settings.address;
  }

  get namespace(): string | undefined {
    return this.#settings.namespace;
  }

  /** Where the address came from, for messages: `from TEMPORAL_ADDRESS`, `from the Temporal profile "prod"`. */
  get addressOrigin(): string | undefined {
    return this.#addressFrom;
  }

  get hasApiKey(): boolean {
    return this.#settings.apiKey !== undefined;
  }

  get hasClientCertificate(): boolean {
    return this.#settings.tls?.clientCert !== undefined;
  }

  /** TLS is on when configured (any TEMPORAL_TLS_* setting or a `tls` table) or implied by an API key, unless turned off. */
  get usesTls(): boolean {
    const tls = this.#settings.tls;
    if (tls?.disabled === true) return false;
    return tls !== undefined || this.hasApiKey;
  }

  /** How keyturn authenticates, in words for logs: `mTLS`, `TLS with an API key`, `plaintext`, ... */
  get security(): string {
    const transport = this.hasClientCertificate && this.usesTls ? 'mTLS' : this.usesTls ? 'TLS' : 'plaintext';
    return this.hasApiKey ? `${transport} with an API key` : transport;
  }

  /** The settings with their secrets, for building a connection only. */
  reveal(): ClientConfigProfile {
    return this.#settings;
  }

  toJSON(): Record<string, unknown> {
    return { profile: this.name, address: this.address, namespace: this.namespace, security: this.security };
  }
}

/**
 * Reads Temporal's environment configuration from `env`. As everywhere in keyturn, a blank variable
 * counts as unset (compose files pass `VAR=`; envconfig alone would take a blank TEMPORAL_TLS as
 * "off"). A file, profile or pair of settings that cannot be used is an ERR_CONFIG_INVALID naming it.
 */
export function loadTemporalProfile(env: NodeJS.ProcessEnv): TemporalProfile {
  const vars = Object.fromEntries(
    Object.entries(env).flatMap(([name, value]) => (value?.trim() ? [[name, value.trim()]] : [])),
  );
  const name = vars.TEMPORAL_PROFILE ?? 'default';
  const file = vars.TEMPORAL_CONFIG_FILE;
  const fileText = file ?? `the Temporal config file (TEMPORAL_CONFIG_FILE, else ${DEFAULT_CONFIG_FILE})`;
  // envconfig ignores a missing file; one named on purpose is a mistake worth stopping for.
  if (file !== undefined && !existsSync(file)) {
    throw invalid('TEMPORAL_CONFIG_FILE', `TEMPORAL_CONFIG_FILE names ${file}, which does not exist`);
  }
  let settings: ClientConfigProfile;
  try {
    settings = loadClientConfigProfile({ overrideEnvVars: vars });
  } catch (error) {
    throw explainLoadError(error, name, fileText);
  }
  const tls = settings.tls;
  if (tls && (tls.clientCert === undefined) !== (tls.clientKey === undefined)) {
    const missing = tls.clientCert === undefined ? 'CERT' : 'KEY';
    throw invalid(
      `TEMPORAL_TLS_CLIENT_${missing}_PATH`,
      `mTLS needs a client certificate and its key: set TEMPORAL_TLS_CLIENT_${missing}_PATH ` +
        `(or TEMPORAL_TLS_CLIENT_${missing}_DATA, or the profile's tls.client_${missing.toLowerCase()}_path) as well`,
    );
  }
  const addressFrom =
    vars.TEMPORAL_ADDRESS !== undefined
      ? 'from TEMPORAL_ADDRESS'
      : settings.address !== undefined
        ? `from the Temporal profile "${name}"`
        : undefined;
  return new TemporalProfile(name, settings, addressFrom);
}

/** envconfig's errors in keyturn's words. A TOML parser's message quotes the line, which may hold an API key: only its position is kept. */
function explainLoadError(error: unknown, name: string, fileText: string): KeyturnError {
  const message = error instanceof Error ? error.message : String(error);
  if (/^Profile '.*' not found/.test(message)) {
    return invalid(
      'TEMPORAL_PROFILE',
      `TEMPORAL_PROFILE names the Temporal profile "${name}", which ${fileText} does not have`,
    );
  }
  const position = error as { line?: unknown; column?: unknown };
  if (typeof position.line === 'number' && typeof position.column === 'number') {
    return invalid(
      'TEMPORAL_CONFIG_FILE',
      `${fileText} is not valid TOML: line ${position.line}, column ${position.column}`,
    );
  }
  return invalid(
    'TEMPORAL_PROFILE',
    `the Temporal connection settings (profile "${name}" and TEMPORAL_* variables) cannot be used: ${message}`,
  );
}

function invalid(field: string, message: string): KeyturnError {
  return new KeyturnError('ERR_CONFIG_INVALID', message, { field });
}
