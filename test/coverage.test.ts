// Op coverage by execution. The addon counts every op call per (op, backend); each test process
// writes its counts when its file ends (test/setup/op_calls.ts), and this file, the `coverage`
// project of vitest.config.ts, runs after the whole `suite` project and requires that every
// (op, backend) pair compiled into the test binary ran at least once, on every backend that is
// available here (cuda only where a GPU is). Run on its own, or after a run that wrote no counts,
// the execution checks are skipped: they mean something only after the suite.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { native } from '../lib/native.js';
import type { OpCallsRecord } from './setup/op_calls.js';

function readRecords(dir: string | undefined): OpCallsRecord[] {
  if (!dir || !existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .map((f) => JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as OpCallsRecord);
}

describe('op coverage', () => {
  const table = native.opTable();
  const built = native.devices().map((d) => d.type);
  const available = new Set<string>(native.devices().filter((d) => d.available).map((d) => d.type));
  // This process ran no op yet; only the suite's processes count.
  const records = readRecords(process.env.REALTUNE_OP_CALLS_DIR);
  const calls = (op: string, backend: string): number =>
    records.reduce((total, r) => total + (r.calls[op]?.[backend] ?? 0), 0);

  it('the test binary carries cpu and cuda-emu', () => {
    expect(built).toContain('cpu');
    expect(built).toContain('cuda-emu');
  });

  for (const op of Object.keys(table)) {
    it(`${op} is implemented on every backend built in`, () => {
      expect([...table[op]!].sort()).toEqual([...built].sort());
    });
    for (const backend of table[op]!) {
      const reason = records.length === 0 ? 'no op call counts from a suite run' : !available.has(backend) ? `${backend} is not available here` : '';
      it.skipIf(reason !== '')(`${op} ran on ${backend} during the suite${reason ? ` (skipped: ${reason})` : ''}`, () => {
        expect(
          calls(op, backend),
          `op ${op} never ran on ${backend} in the suite's ${records.length} test processes: no test exercises this (op, backend) pair`,
        ).toBeGreaterThan(0);
      });
    }
  }
});
