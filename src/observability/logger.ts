import pino, { type Logger } from 'pino';

/**
 * Paths pino replaces with "[redacted]" wherever a logged object carries them: private JWK members
 * and anything named like a key or secret. keyturn never logs key material on purpose; this is the net.
 */
const REDACTED_PATHS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k', 'privateJwk', 'privateKey', 'sealed', 'kek', 'password']
  .flatMap((name) => [name, `*.${name}`]);

export type { Logger };

/**
 * The process logger: JSON lines with stable field names (`keySetId`, `kid`, `workflowId`, `activity`).
 * Long-running processes log to stdout; commands whose stdout is their result (`migrate --json`) pass
 * `toStderr` so the two never mix.
 */
export function createLogger(options: { level?: string; name?: string; toStderr?: boolean } = {}): Logger {
  return pino(
    {
      name: options.name ?? 'keyturn',
      level: options.level ?? process.env.LOG_LEVEL ?? 'info',
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    },
    options.toStderr ? pino.destination({ fd: 2, sync: true }) : undefined,
  );
}
