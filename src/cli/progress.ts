/** A long operation's count so far. */
export interface Progress {
  done: number;
  total: number;
}

/** Operations on fewer items than this finish before a progress line would help: they print none. */
const PROGRESS_FROM_ITEMS = 100;

/** How often the terminal's line is redrawn at most. */
const REDRAW_MS = 200;

export interface ProgressOutput {
  write(text: string): unknown;
  isTTY?: boolean;
}

/**
 * Shows how far a long operation is, on `out` (stderr by default, so that stdout keeps the result
 * and `--json`): how many of how many are done, the rate and what is left. On a terminal, one line
 * redrawn in place; otherwise (a log, a pipe) one line per tenth done. Operations on fewer than
 * PROGRESS_FROM_ITEMS items show nothing.
 */
export function progressPrinter(
  what: string,
  out: ProgressOutput = process.stderr,
  now: () => number = Date.now,
): (progress: Progress) => void {
  let startedAt: number | undefined;
  let lastDrawn = -Infinity;
  let lastTenth = 0;
  return ({ done, total }) => {
    if (total < PROGRESS_FROM_ITEMS) return;
    const at = now();
    startedAt ??= at;
    const finished = done >= total;
    const line = () => describeProgress(what, done, total, at - startedAt!);
    if (out.isTTY) {
      if (!finished && at - lastDrawn < REDRAW_MS) return;
      lastDrawn = at;
      out.write(`\r\x1b[2K${line()}${finished ? '\n' : ''}`);
      return;
    }
    const tenth = Math.floor((done * 10) / total);
    if (tenth <= lastTenth) return;
    lastTenth = tenth;
    out.write(`${line()}\n`);
  };
}

/** `what: 1,200 of 10,000 done (12%), 850/s, 8,800 left, about 10 s`. */
export function describeProgress(what: string, done: number, total: number, elapsedMs: number): string {
  const count = (n: number) => n.toLocaleString('en-US');
  const rate = elapsedMs > 0 ? (done * 1000) / elapsedMs : 0;
  const left = total - done;
  const parts = [`${what}: ${count(done)} of ${count(total)} done (${Math.floor((done * 100) / total)}%)`];
  if (rate > 0) parts.push(`${rate >= 10 ? count(Math.round(rate)) : rate.toFixed(1)}/s`);
  if (left > 0) parts.push(`${count(left)} left${rate > 0 ? `, about ${roughSeconds(left / rate)}` : ''}`);
  else parts.push(`in ${roughSeconds(elapsedMs / 1000)}`);
  return parts.join(', ');
}

function roughSeconds(seconds: number): string {
  if (seconds < 90) return `${Math.max(1, Math.round(seconds))} s`;
  return `${Math.round(seconds / 60)} min`;
}
