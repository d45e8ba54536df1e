import { describeProgress, progressPrinter } from '../../src/cli/progress';

/** An output that keeps what is written, as a terminal or as a pipe. */
function output(isTTY: boolean) {
  const written: string[] = [];
  return { written, out: { isTTY, write: (text: string) => written.push(text) } };
}

describe('progress of a long operation', () => {
  test('in a log or a pipe: one line per tenth done, with the count, the rate and what is left', () => {
    const { written, out } = output(false);
    let now = 0;
    const print = progressPrinter('key sets applied', out, () => now);
    for (let done = 0; done <= 1_000; done++) {
      print({ done, total: 1_000 });
      now += 10;
    }
    expect(written).toHaveLength(10);
    expect(written[0]).toBe('key sets applied: 100 of 1,000 done (10%), 100/s, 900 left, about 9 s\n');
    expect(written[9]).toBe('key sets applied: 1,000 of 1,000 done (100%), 100/s, in 10 s\n');
  });

  test('on a terminal: one line redrawn in place, at most five times a second, ended once all are done', () => {
    const { written, out } = output(true);
    let now = 0;
    const print = progressPrinter('key sets applied', out, () => now);
    for (let done = 0; done <= 500; done++) {
      print({ done, total: 500 });
      now += 10;
    }
    expect(written.length).toBeGreaterThan(20);
    expect(written.length).toBeLessThan(30);
    for (const line of written) expect(line.startsWith('\r\x1b[2K')).toBe(true);
    expect(written.slice(0, -1).some((line) => line.endsWith('\n'))).toBe(false);
    expect(written.at(-1)).toBe('\r\x1b[2Kkey sets applied: 500 of 500 done (100%), 100/s, in 5 s\n');
  });

  test('an operation on a few items prints nothing', () => {
    const { written, out } = output(false);
    const print = progressPrinter('key sets applied', out);
    for (let done = 0; done <= 99; done++) print({ done, total: 99 });
    expect(written).toEqual([]);
  });

  test('rates and times read well from slow to fast', () => {
    expect(describeProgress('x', 3, 200, 2_000)).toBe('x: 3 of 200 done (1%), 1.5/s, 197 left, about 2 min');
    expect(describeProgress('x', 0, 200, 0)).toBe('x: 0 of 200 done (0%), 200 left');
    expect(describeProgress('x', 9_000, 10_000, 3_000)).toBe(
      'x: 9,000 of 10,000 done (90%), 3,000/s, 1,000 left, about 1 s',
    );
  });
});
