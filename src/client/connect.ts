import { readFileSync } from 'node:fs';
import { Client, Connection, type TLSConfig } from '@temporalio/client';
import { toClientOptions, type ConfigDataSource } from '@temporalio/envconfig';
import type { Config } from '../config';
import { KeyturnError } from '../domain/errors';
import { readLiveInstance } from '../runtime/instance-file';
import type { TemporalProfile } from '../runtime/temporal-profile';
import { explainConnectionFailure, isConnectionFailure } from './connection-failure';

/** Where a Temporal server is, where that address came from (for error messages), and how to authenticate. */
export interface TemporalTarget {
  address: string;
  namespace: string;
  /** e.g. `from TEMPORAL_ADDRESS`, `from the Temporal profile "prod"`, `the dev server keyturn started`. */
  origin: string;
  /** TLS, API key and gRPC metadata; none (plaintext) for a dev server keyturn started itself. */
  profile?: TemporalProfile;
}

/** What the client's and the worker's connections both take: the address, TLS with its certificates read, the API key, gRPC metadata. */
export interface TemporalConnectionOptions {
  address: string;
  tls?: TLSConfig | boolean;
  apiKey?: string;
  metadata?: Record<string, string>;
}

/** The Temporal server the configuration names. */
export function temporalTargetFrom(config: Config): TemporalTarget {
  return {
    address: config.temporalAddress,
    namespace: config.temporalNamespace,
    origin:
      config.temporalProfile.addressOrigin ??
      'the default, as neither TEMPORAL_ADDRESS nor a Temporal profile names a server',
    profile: config.temporalProfile,
  };
}

/** Command line flags that name a Temporal server; they win over the environment. */
export interface TemporalFlags {
  address?: string;
  namespace?: string;
}

/**
 * The Temporal server an operator command talks to: `--address`, else TEMPORAL_ADDRESS or the
 * Temporal profile's address, else the keyturn instance running on the data folder (its
 * `instance.json`), else localhost:7233. The namespace follows the same order. TLS and the API key
 * come from Temporal's environment configuration whatever the address, except for a dev server
 * keyturn started, which is plaintext on loopback.
 */
export async function resolveTemporalTarget(config: Config, flags: TemporalFlags = {}): Promise<TemporalTarget> {
  const namespace = flags.namespace ?? (config.explicit.temporalNamespace ? config.temporalNamespace : undefined);
  const configured = temporalTargetFrom(config);
  if (flags.address)
    return {
      ...configured,
      address: flags.address,
      namespace: namespace ?? config.temporalNamespace,
      origin: 'from --address',
    };
  if (!config.explicit.temporalAddress) {
    const instance = await readLiveInstance(config.dataDir);
    if (instance) {
      return {
        address: instance.temporalAddress,
        namespace: namespace ?? instance.namespace,
        origin: `of the keyturn instance running on ${config.dataDir}`,
        // A Web UI in the file means keyturn started that dev server itself: plaintext on loopback.
        profile: instance.webUiUrl === null ? config.temporalProfile : undefined,
      };
    }
  }
  return { ...configured, namespace: namespace ?? config.temporalNamespace };
}

/**
 * The connection options for a target, certificate files read now: a file that cannot be read,
 * or is not PEM, is an ERR_CONFIG_INVALID naming its variable (and never quoting its content).
 */
export function temporalConnectionOptions(target: TemporalTarget): TemporalConnectionOptions {
  if (!target.profile) return { address: target.address };
  const settings = target.profile.reveal();
  const tls = settings.tls && {
    ...settings.tls,
    clientCert: readPem(settings.tls.clientCert, 'the client certificate', 'TEMPORAL_TLS_CLIENT_CERT', 'client_cert'),
    clientKey: readPem(settings.tls.clientKey, 'the client key', 'TEMPORAL_TLS_CLIENT_KEY', 'client_key'),
    serverCACert: readPem(
      settings.tls.serverCACert,
      'the server CA certificate',
      'TEMPORAL_TLS_SERVER_CA_CERT',
      'server_ca_cert',
    ),
  };
  const { connectionOptions } = toClientOptions({ ...settings, tls });
  return {
    address: target.address,
    tls: connectionOptions.tls ?? undefined,
    apiKey: connectionOptions.apiKey,
    metadata: settings.grpcMeta,
  };
}

/**
 * The one place a Temporal client is built. A server that does not answer within a few seconds,
 * or refuses the connection's TLS or credentials, becomes one error that says where keyturn looked
 * and what to set. Close it with `client.connection.close()`.
 */
export async function connectClient(target: TemporalTarget): Promise<Client> {
  const options = temporalConnectionOptions(target);
  try {
    const connection = await Connection.connect({ ...options, connectTimeout: '5s' });
    return new Client({ connection, namespace: target.namespace });
  } catch (error) {
    throw await explainConnectionFailure(target, options, error);
  }
}

/**
 * A client for the length of `use`, closed after. A server lost on the way, or refusing a call
 * (a credential without access to the namespace), is explained as a failed connection is.
 */
export async function withClient<T>(target: TemporalTarget, use: (client: Client) => Promise<T>): Promise<T> {
  const client = await connectClient(target);
  try {
    return await use(client);
  } catch (error) {
    throw isConnectionFailure(error)
      ? await explainConnectionFailure(target, temporalConnectionOptions(target), error)
      : error;
  } finally {
    await client.connection.close();
  }
}

/** A PEM source of the profile as data, `what` and where it was set named in any error. */
function readPem(
  source: ConfigDataSource | undefined,
  what: string,
  variable: string,
  tomlKey: string,
): ConfigDataSource | undefined {
  if (source === undefined) return undefined;
  const where =
    'path' in source
      ? `${source.path} (${variable}_PATH or the profile's tls.${tomlKey}_path)`
      : `${variable}_DATA (or the profile's tls.${tomlKey}_data)`;
  let data: Uint8Array;
  try {
    data =
      'path' in source
        ? readFileSync(source.path)
        : typeof source.data === 'string'
          ? Buffer.from(source.data)
          : source.data;
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (error as Error).message;
    throw new KeyturnError('ERR_CONFIG_INVALID', `cannot read ${what} ${where}: ${reason}`, {
      field: `${variable}_PATH`,
    });
  }
  if (!Buffer.from(data).includes('-----BEGIN ')) {
    throw new KeyturnError('ERR_CONFIG_INVALID', `${what} in ${where} is not PEM (a "-----BEGIN ..." block)`, {
      field: `${variable}_PATH`,
    });
  }
  return { data };
}
