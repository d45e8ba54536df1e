import pino, { type Logger } from 'pino';

/**
 * Paths pino replaces with "[redacted]" wherever a logged object carries them: private JWK members
 * and anything named like a key or secret. keyturn never logs key material on purpose; this is the net.
 */
const REDACTED_PATHS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'privateJwk', 'privateKey', 'sealed', 'kek', 'password']
  .flatMap((name) => [name, `*.${name}`]);

export type { Logger };

/** The process logger: JSON lines with stable field names (`keySetId`, `kid`, `workflowId`, `activity`). */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino({
    name: options.name ?? 'keyturn',
    level: options.level ?? process.env.LOG_LEVEL ?? 'info',
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
  });
}
