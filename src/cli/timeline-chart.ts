import type { TimelinePeriod, TimelinePhase, TimelineRow } from '../domain/timeline';

/**
 * `keyturn status <id> --timeline` and `--mermaid`: a key set's timeline rows (src/domain/timeline.ts)
 * drawn as a Gantt chart in the terminal, or written as a Mermaid `gantt` block. Pure: the caller
 * says how wide, whether in colour, and when now is.
 */

/** Blocks for what has happened, lines for what is planned; one look per phase. */
const GLYPHS: Record<TimelinePhase, { past: string; planned: string }> = {
  next: { past: '▒', planned: '╌' },
  active: { past: '█', planned: '━' },
  grace: { past: '▓', planned: '┅' },
  retired: { past: '░', planned: '┈' },
};
const COLORS: Record<TimelinePhase, number> = { next: 36, active: 32, grace: 33, retired: 90 };
const LABEL_WIDTH = 12;
const NOW_MARK = '▲';

export interface ChartOptions {
  now: number;
  /** Columns of the whole chart, the kid labels included. */
  width: number;
  color: boolean;
}

/** The chart: one row per key, a time axis with dates under it, and a legend. */
export function renderTimelineChart(rows: readonly TimelineRow[], options: ChartOptions): string {
  const periods = rows.flatMap((row) => row.periods);
  if (periods.length === 0) return 'no keys to draw';
  const from = Math.min(...periods.map((p) => p.start));
  const to = Math.max(...periods.map((p) => p.end), options.now);
  const columns = Math.max(options.width - LABEL_WIDTH, 20);
  const column = (at: number) => Math.min(Math.floor(((at - from) / (to - from)) * columns), columns - 1);
  const paint = (glyph: string, period: TimelinePeriod) =>
    options.color ? `\u001b[${period.planned ? '2;' : ''}${COLORS[period.phase]}m${glyph}\u001b[0m` : glyph;

  const lines = rows.map((row) => {
    const cells: string[] = Array.from({ length: columns }, () => ' ');
    // What happened is drawn last, so that a period shorter than a column still gets one, even beside a planned one.
    for (const period of [...row.periods].sort((a, b) => Number(b.planned) - Number(a.planned))) {
      const glyphs = GLYPHS[period.phase];
      const first = column(period.start);
      // Columns [first, the end's): the next period starts where this one stops, and none is left without a column.
      const last = Math.max(first, column(period.end) - (period.end >= to ? 0 : 1));
      for (let c = first; c <= last; c += 1) cells[c] = paint(period.planned ? glyphs.planned : glyphs.past, period);
    }
    return `${label(row.kid)}${cells.join('')}`.trimEnd();
  });

  const format = dateFormat(to - from);
  const axis: string[] = Array.from({ length: columns }, () => '─');
  const dates: string[] = Array.from({ length: columns }, () => ' ');
  const labelLength = format(from).length;
  for (let c = 0; c + labelLength <= columns; c += labelLength + 2) {
    axis[c] = '┬';
    [...format(from + (c / columns) * (to - from))].forEach((char, i) => (dates[c + i] = char));
  }
  axis[column(options.now)] = NOW_MARK;
  const legend =
    Object.entries(GLYPHS)
      .map(([phase, glyph]) => `${glyph.past}${glyph.planned} ${phase}`)
      .join('  ') + `   (blocks: happened, lines: planned; ${NOW_MARK} now, UTC)`;
  return [
    ...lines,
    `${' '.repeat(LABEL_WIDTH)}${axis.join('')}`,
    `${' '.repeat(LABEL_WIDTH)}${dates.join('').trimEnd()}`,
    legend,
  ].join('\n');
}

/** The same rows as a Mermaid gantt block: a section per key, past periods marked done. */
export function renderTimelineMermaid(keySetId: string, rows: readonly TimelineRow[]): string {
  const at = (ms: number) => new Date(ms).toISOString().slice(0, 19).replace('T', ' ');
  return [
    'gantt',
    `    title Key set ${keySetId}: past and planned key periods (UTC)`,
    '    dateFormat YYYY-MM-DD HH:mm:ss',
    '    axisFormat %Y-%m-%d',
    ...rows.flatMap((row) => [
      `    section ${row.kid ?? 'key to come'}`,
      ...row.periods.map((p) => `    ${p.phase} :${p.planned ? '' : 'done, '}${at(p.start)}, ${at(p.end)}`),
    ]),
  ].join('\n');
}

/** A kid's start, the width of the label column; the key not generated yet says so. */
function label(kid: string | undefined): string {
  const text =
    kid === undefined ? '(to come)' : kid.length > LABEL_WIDTH - 2 ? `${kid.slice(0, LABEL_WIDTH - 3)}…` : kid;
  return text.padEnd(LABEL_WIDTH);
}

/** Dates for a span of two weeks or more, down to the minute for a day or more, seconds below. */
function dateFormat(spanMs: number): (ms: number) => string {
  const iso = (ms: number) => new Date(ms).toISOString();
  if (spanMs >= 14 * 86_400_000) return (ms) => iso(ms).slice(0, 10);
  if (spanMs >= 86_400_000) return (ms) => iso(ms).slice(5, 16).replace('T', ' ');
  return (ms) => iso(ms).slice(11, 19);
}
