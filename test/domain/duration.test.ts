import { KeyturnError } from '../../src/domain/errors';
import { durationToMs, formatDuration, parseDuration } from '../../src/domain/duration';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

describe('parseDuration / formatDuration', () => {
  test.each([
    ['30d', 30 * DAY],
    ['12h', 12 * HOUR],
    ['15m', 15 * MINUTE],
    ['90s', 90 * SECOND],
    ['500ms', 500],
  ])('%s is %d ms and formats back to itself', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
    expect(formatDuration(ms)).toBe(text);
  });

  test.each([
    ['720h', '30d'],
    ['1440m', '1d'],
    ['60s', '1m'],
    ['1000ms', '1s'],
    ['36h', '36h'],
    ['1500ms', '1500ms'],
  ])('%s formats in the largest exact unit: %s', (text, normalised) => {
    expect(formatDuration(parseDuration(text))).toBe(normalised);
  });

  test('zero is a duration (the policy, not the parser, refuses it)', () => {
    expect(parseDuration('0s')).toBe(0);
    expect(formatDuration(0)).toBe('0ms');
  });

  test.each(['', '5', '1.5h', '-1d', '1w', '30 d', 'd', '30dd', 30, 1.5, undefined, null, {}])(
    'rejects %p with ERR_DURATION_INVALID naming the field',
    (value) => {
      let thrown: unknown;
      try {
        parseDuration(value, 'rotationPeriod');
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(KeyturnError);
      expect(thrown).toMatchObject({ code: 'ERR_DURATION_INVALID', field: 'rotationPeriod' });
      expect((thrown as Error).message).toMatch(/^rotationPeriod: /);
      expect(durationToMs(value)).toBeUndefined();
    },
  );

  test('the field defaults to "duration"', () => {
    expect(() => parseDuration('soon')).toThrow(
      expect.objectContaining({ code: 'ERR_DURATION_INVALID', field: 'duration' }),
    );
  });

  test('the longest duration is 100 years: every time planned from a policy stays a date', () => {
    expect(durationToMs('36500d')).toBe(36_500 * DAY);
    expect(durationToMs(`${36_500 * 24}h`)).toBe(36_500 * DAY);
    // 99999999d fits a safe integer, but now plus that is past the last date JavaScript knows.
    for (const value of ['36501d', '99999999d', '999999999999d', '99999999999999999d', `${'9'.repeat(400)}ms`]) {
      expect(durationToMs(value)).toBeUndefined();
      expect(() => parseDuration(value, 'retirement')).toThrow(
        expect.objectContaining({
          code: 'ERR_DURATION_INVALID',
          field: 'retirement',
          message: expect.stringContaining('at most 36500d'),
        }),
      );
    }
  });

  test.each([-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])('formatDuration(%p) is a TypeError', (ms) => {
    expect(() => formatDuration(ms)).toThrow(TypeError);
  });
});
