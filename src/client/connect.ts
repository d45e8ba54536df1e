import { Client, Connection } from '@temporalio/client';
import type { Config } from '../config';
import { readLiveInstance } from '../runtime/instance-file';

/** Where a Temporal server is, and where that address came from (for error messages). */
export interface TemporalTarget {
  address: string;
  namespace: string;
  /** e.g. `TEMPORAL_ADDRESS`, `the default localhost:7233`, `the dev server keyturn started`. */
  origin: string;
}

/** The Temporal server the configuration names. */
export function temporalTargetFrom(config: Config): TemporalTarget {
  return {
    address: config.temporalAddress,
    namespace: config.temporalNamespace,
    origin: config.explicit.temporalAddress ? 'from TEMPORAL_ADDRESS' : 'the default, as TEMPORAL_ADDRESS is not set',
  };
}

/** Command line flags that name a Temporal server; they win over the environment. */
export interface TemporalFlags {
  address?: string;
  namespace?: string;
}

/**
 * The Temporal server an operator command talks to: `--address`, else TEMPORAL_ADDRESS, else the
 * keyturn instance running on the data folder (its `instance.json`), else localhost:7233. The
 * namespace follows the same order (`--namespace`, TEMPORAL_NAMESPACE, the instance's, `default`).
 */
export async function resolveTemporalTarget(config: Config, flags: TemporalFlags = {}): Promise<TemporalTarget> {
  const namespace = flags.namespace ?? (config.explicit.temporalNamespace ? config.temporalNamespace : undefined);
  if (flags.address) return { address: flags.address, namespace: namespace ?? config.temporalNamespace, origin: 'from --address' };
  if (!config.explicit.temporalAddress) {
    const instance = await readLiveInstance(config.dataDir);
    if (instance) {
      return {
        address: instance.temporalAddress,
        namespace: namespace ?? instance.namespace,
        origin: `of the keyturn instance running on ${config.dataDir}`,
      };
    }
  }
  return { ...temporalTargetFrom(config), namespace: namespace ?? config.temporalNamespace };
}

/**
 * The one place a Temporal client is built. A server that does not answer within a few seconds
 * becomes one error that says where keyturn looked and what to do. Close it with
 * `client.connection.close()`.
 */
export async function connectClient(target: TemporalTarget): Promise<Client> {
  try {
    const connection = await Connection.connect({ address: target.address, connectTimeout: '5s' });
    return new Client({ connection, namespace: target.namespace });
  } catch (error) {
    throw temporalUnreachable(target, error);
  }
}

/** The error for a Temporal server that cannot be reached, shared with the worker's native connection. */
export function temporalUnreachable(target: TemporalTarget, cause: unknown): Error {
  const message = cause instanceof Error ? cause.message : String(cause);
  // The native connection reports a refused port as a nested Rust error; say it plainly.
  const reason = /connection refused|ECONNREFUSED/i.test(message)
    ? 'connection refused'
    : /deadline/i.test(message)
      ? 'no answer within 5 seconds'
      : message;
  return new Error(
    `cannot reach Temporal at ${target.address} (${target.origin}): ${reason}. ` +
      'Start one with `keyturn dev`, or set TEMPORAL_ADDRESS to a running server',
    { cause },
  );
}
