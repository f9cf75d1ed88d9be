// The personalisation table of the README, shared by `bench personalize` (its rows) and
// `bench dsd` (the DSD rows below them): the markers around it, and how the DSD rows are kept
// when one bench rewrites the part the other wrote.
import type { MachineInfo } from './harness.js';

export const markerStart = '<!-- personalize-table:start -->';
export const markerEnd = '<!-- personalize-table:end -->';
/** The line under the DSD rows that says how they were made. */
export const dsdNote = 'DSD rows: ';

/** What both benches return besides their rows. */
export interface TableBenchResult<Row> {
  machine: MachineInfo;
  command: string;
  identities: number;
  contexts: number;
  n: number;
  rows: Row[];
}

/** The personalisation table section with its DSD rows (and their note) replaced by `rows`. */
export function withDsdRows(section: string, rows: readonly string[], note: string): string {
  const lines = section.split('\n').filter((l) => !l.startsWith('| DSD') && !l.startsWith(dsdNote));
  const lastRow = lines.reduce((last, l, i) => (l.startsWith('|') ? i : last), -1);
  if (lastRow < 0) throw new Error('bench: the personalisation section of README.md holds no table');
  lines.splice(lastRow + 1, 0, ...rows, '', note);
  return lines.join('\n').replace(/\n+$/, '\n');
}
