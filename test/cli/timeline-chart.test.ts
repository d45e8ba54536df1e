import type { TimelinePeriod, TimelineRow } from '../../src/domain/timeline';
import { renderTimelineChart, renderTimelineMermaid } from '../../src/cli/timeline-chart';

// The renderers on fixed rows (what src/domain/timeline.ts gives for the seed policy, 10 days into an
// active key's period, with the grace key before it): exact strings.

const DAY = 86_400_000;
const DAY0 = Date.UTC(2026, 10, 1);
const now = DAY0 + 10 * DAY;
const period = (
  phase: TimelinePeriod['phase'],
  start: number,
  end: number,
  planned = DAY0 + start * DAY >= now,
): TimelinePeriod => ({
  phase,
  start: DAY0 + start * DAY,
  end: DAY0 + end * DAY,
  planned,
});
const OLD = 'AAAAold-key-kid-xxxxxxxxxxxxxxxxxxxxxxxxxxxx';
const ACTIVE = 'BBBBactive-kid-xxxxxxxxxxxxxxxxxxxxxxxxxxxx';
const rows: TimelineRow[] = [
  {
    kid: OLD,
    periods: [period('next', -35, -30), period('active', -30, 0), period('grace', 0, 5), period('retired', 5, 6)],
  },
  {
    kid: ACTIVE,
    periods: [
      period('next', -5, 0),
      period('active', 0, 10),
      period('active', 10, 30),
      period('grace', 30, 35),
      period('retired', 35, 36),
    ],
  },
  {
    kid: undefined,
    periods: [period('next', 25, 30), period('active', 30, 60), period('grace', 60, 65), period('retired', 65, 66)],
  },
];

test('the chart: a row per key, blocks for what happened and lines for what is planned, dates under a time axis', () => {
  expect(renderTimelineChart(rows, { now, width: 100, color: false })).toBe(
    [
      'AAAAold-k…  ▒▒▒▒██████████████████████████▓▓▓▓░',
      'BBBBactiv…                            ▒▒▒▒█████████━━━━━━━━━━━━━━━━━┅┅┅┅┈',
      '(to come)                                                       ╌╌╌╌━━━━━━━━━━━━━━━━━━━━━━━━━━┅┅┅┅┅┈',
      '            ┬───────────┬───────────┬───────────┬──▲────────┬───────────┬───────────┬───────────────',
      '            2026-09-27  2026-10-10  2026-10-24  2026-11-07  2026-11-21  2026-12-04  2026-12-18',
      '▒╌ next  █━ active  ▓┅ grace  ░┈ retired   (blocks: happened, lines: planned; ▲ now, UTC)',
    ].join('\n'),
  );
});

test('it fits the width given, and colours only when asked', () => {
  const narrow = renderTimelineChart(rows, { now, width: 60, color: false }).split('\n');
  expect(Math.max(...narrow.slice(0, -1).map((line) => [...line].length))).toBe(60);
  expect(narrow.join('')).not.toContain('\u001b');
  const coloured = renderTimelineChart(rows, { now, width: 60, color: true });
  // Active green; planned dimmed.
  expect(coloured).toContain('\u001b[32m█\u001b[0m');
  expect(coloured).toContain('\u001b[2;32m━\u001b[0m');
});

test('spans under two weeks show times, not dates', () => {
  const short: TimelineRow[] = [
    { kid: 'k', periods: [{ phase: 'active', start: DAY0, end: DAY0 + 3 * 3_600_000, planned: false }] },
  ];
  expect(
    renderTimelineChart(short, { now: DAY0 + 3_600_000, width: 40, color: false })
      .split('\n')[2]
      .trim(),
  ).toBe('00:00:00  01:04:17  02:08:34');
});

test('the Mermaid gantt block: a section per key, past periods done', () => {
  expect(renderTimelineMermaid('web', rows.slice(1, 2))).toBe(
    [
      'gantt',
      '    title Key set web: past and planned key periods (UTC)',
      '    dateFormat YYYY-MM-DD HH:mm:ss',
      '    axisFormat %Y-%m-%d',
      `    section ${ACTIVE}`,
      '    next :done, 2026-10-27 00:00:00, 2026-11-01 00:00:00',
      '    active :done, 2026-11-01 00:00:00, 2026-11-11 00:00:00',
      '    active :2026-11-11 00:00:00, 2026-12-01 00:00:00',
      '    grace :2026-12-01 00:00:00, 2026-12-06 00:00:00',
      '    retired :2026-12-06 00:00:00, 2026-12-07 00:00:00',
    ].join('\n'),
  );
});
