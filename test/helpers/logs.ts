import { Writable } from 'node:stream';
import pino from 'pino';
import type { Logger } from '../../src/logger';

/** A logger at debug level whose lines are kept, so tests can search everything that was logged. */
export function capturingLogger(): { logger: Logger; text(): string } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, sink), text: () => lines.join('') };
}
