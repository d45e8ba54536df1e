import {
  IllegalStateError,
  type LogLevel as TemporalLogLevel,
  type LogMetadata,
  type Logger as TemporalLogger,
} from '@temporalio/common';
import { makeTelemetryFilterString, Runtime } from '@temporalio/worker';
import type { Logger } from '../logger';

/** The Temporal SDK's logger interface, writing into pino under `component: "temporal"`. */
function temporalLoggerFor(logger: Logger): TemporalLogger {
  const child = logger.child({ component: 'temporal' });
  const log = (level: TemporalLogLevel, message: string, meta: LogMetadata = {}) => {
    // pino serialises an Error under `err` only; the SDK passes it as `error`.
    const { error, ...rest } = meta;
    const fields = error instanceof Error ? { ...rest, err: error } : meta;
    child[pinoLevel[level]](fields, message);
  };
  return {
    log,
    trace: (message, meta) => log('TRACE', message, meta),
    debug: (message, meta) => log('DEBUG', message, meta),
    info: (message, meta) => log('INFO', message, meta),
    warn: (message, meta) => log('WARN', message, meta),
    error: (message, meta) => log('ERROR', message, meta),
  };
}

/**
 * Installs the SDK's native runtime for this process: every SDK log line (worker, workflow and
 * activity loggers, and the native core's own, forwarded) goes into pino, so a keyturn process writes
 * one JSON stream; with `metricsBindAddress`, the SDK's own metrics (`temporal_*`: task slots, poll
 * latencies, workflow and activity counts) are served for Prometheus at `http://<address>/metrics`.
 * Signal handling stays with keyturn (`shutdownSignals: []`): it stops the worker before the servers
 * the worker depends on. The runtime can be installed once per process; returns false if it already
 * was (as in tests), and the first installation's options hold.
 */
export function installTemporalRuntime(logger: Logger, options: { metricsBindAddress?: string } = {}): boolean {
  const verbose = logger.isLevelEnabled('debug');
  try {
    Runtime.install({
      logger: temporalLoggerFor(logger),
      shutdownSignals: [],
      telemetryOptions: {
        logging: {
          filter: makeTelemetryFilterString({ core: verbose ? 'DEBUG' : 'WARN', other: 'ERROR' }),
          forward: {},
        },
        ...(options.metricsBindAddress ? { metrics: { prometheus: { bindAddress: options.metricsBindAddress } } } : {}),
      },
    });
    return true;
  } catch (error) {
    if (error instanceof IllegalStateError) return false;
    throw error;
  }
}

const pinoLevel = { TRACE: 'trace', DEBUG: 'debug', INFO: 'info', WARN: 'warn', ERROR: 'error' } as const;
