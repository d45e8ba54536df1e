import type { Logger } from '../logger';

export interface ShutdownRequest {
  /** Resolves with the signal's name (or `abort`) once shutdown is asked for. */
  requested: Promise<string>;
  /** Stops listening; call it once shutdown is complete. */
  dispose(): void;
}

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * Waits for SIGINT or SIGTERM (or `abort`, for tests and embedding). The first asks for a graceful
 * shutdown; a second one, for someone tired of waiting, exits at once with 130.
 */
export function onShutdownRequest(logger: Logger, abort?: AbortSignal): ShutdownRequest {
  let asked = false;
  let resolve!: (reason: string) => void;
  const requested = new Promise<string>((settle) => (resolve = settle));
  const onSignal = (signal: NodeJS.Signals) => {
    if (asked) {
      logger.warn({ signal }, 'second signal: exiting without waiting for shutdown to finish');
      process.exit(130);
    }
    asked = true;
    logger.info({ signal }, 'shutting down (press Ctrl-C again to exit at once)');
    resolve(signal);
  };
  const onAbort = () => {
    asked = true;
    resolve('abort');
  };
  for (const signal of SIGNALS) process.on(signal, onSignal);
  if (abort?.aborted) onAbort();
  abort?.addEventListener('abort', onAbort, { once: true });
  return {
    requested,
    dispose() {
      for (const signal of SIGNALS) process.removeListener(signal, onSignal);
      abort?.removeEventListener('abort', onAbort);
    },
  };
}
