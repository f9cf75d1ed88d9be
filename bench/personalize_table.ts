// The personalisation table of the README, shared by `bench personalize` (its rows) and
// `bench dsd` (the DSD rows below them): the markers around it, and how the DSD rows are kept
// when one bench rewrites the part the other wrote.
import path from 'node:path';
import { packageRoot } from '../lib/native.js';
import { flagValue, type MachineInfo } from './harness.js';

export const markerStart = '<!-- personalize-table:start -->';
export const markerEnd = '<!-- personalize-table:end -->';
/** The line under the DSD rows that says how they were made. */
export const dsdNote = 'DSD rows: ';

/** What every row of the table measures (lib/train/personalize/measure.ts), by method. */
export interface MeasuredRow {
  method: string;
  identity: number;
  adherence: number;
  diversity: number;
}

/** The options both benches share: identities, contexts, seeds per context, the base. */
export function tableArgs(args: readonly string[]): { count: number; contexts: number; n: number; base: string } {
  return {
    count: Number(flagValue(args, '--identities') ?? 8),
    contexts: Number(flagValue(args, '--contexts') ?? 4),
    n: Number(flagValue(args, '--n') ?? 4),
    base: path.resolve(flagValue(args, '--ckpt') ?? path.join(packageRoot, 'models', 'base-tiny')),
  };
}

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
