import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';
import { PRIVATE_JWK_MEMBERS } from './domain/private-jwk';

/**
 * Paths pino replaces with "[redacted]" wherever a logged object carries them: private JWK members
 * and anything named like a key or secret. keyturn never logs key material on purpose; this is the net.
 */
const REDACTED_PATHS = [...PRIVATE_JWK_MEMBERS, 'privateJwk', 'privateKey', 'sealed', 'kek', 'password'].flatMap(
  (name) => [name, `*.${name}`],
);

export type { Logger };

/** How {@link createLogger} logs. */
export interface LoggerOptions {
  level?: string;
  name?: string;
  /** For commands whose stdout is their result (`migrate --json`), so the two never mix. */
  toStderr?: boolean;
  /** Coloured, one readable line per entry (pino-pretty) instead of JSON: for a person at a terminal. */
  pretty?: boolean;
}

/**
 * The process logger: JSON lines with stable field names (`keySetId`, `kid`, `workflowId`, `runId`,
 * `activity`, `attempt`), which log aggregators index as they are. Redaction applies before either format.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const fd = options.toStderr ? 2 : 1;
  return pino(
    {
      name: options.name ?? 'keyturn',
      level: options.level ?? 'info',
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    },
    options.pretty
      ? pretty({
          destination: fd,
          sync: true,
          colorize: true,
          translateTime: 'SYS:HH:MM:ss.l',
          ignore: 'pid,hostname,name',
        })
      : options.toStderr
        ? pino.destination({ fd, sync: true })
        : undefined,
  );
}
