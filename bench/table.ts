import os from 'node:os';

export interface Row {
  measure: string;
  result: string;
  reference: string;
  figure: string;
  target: string;
  /** undefined: a reference row without a target. */
  pass: boolean | undefined;
}

/** The markdown table of every row, preceded by the machine it ran on. */
export function renderTable(rows: readonly Row[]): string {
  const cpus = os.cpus();
  const machine =
    `Machine: ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${cpus.length} cores, ` +
    `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, ${os.type()} ${os.release()} ${os.arch()}, Node ${process.version}`;
  const header = ['Measure', 'keyturn', 'Reference', 'Figure', 'Target', 'Result'];
  const body = rows.map((r) => [
    r.measure,
    r.result,
    r.reference,
    r.figure,
    r.target,
    r.pass === undefined ? '–' : r.pass ? 'pass' : 'FAIL',
  ]);
  const line = (cells: string[]) => `| ${cells.map((c) => c.replaceAll('|', '\\|')).join(' | ')} |`;
  return [machine, '', line(header), line(header.map(() => '---')), ...body.map(line)].join('\n');
}
