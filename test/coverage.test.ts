// Every op in the native op table must be tested (a `describe('op <name>'` in test/) and
// implemented on every backend built into the test binary.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { native } from '../lib/native.js';

function testSources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    if (statSync(p).isDirectory()) return testSources(p);
    return p.endsWith('.test.ts') ? [readFileSync(p, 'utf8')] : [];
  });
}

describe('op coverage', () => {
  const table = native.opTable();
  const sources = testSources(path.join(__dirname)).join('\n');
  const built = native.devices().map((d) => d.type);

  it('the test binary carries cpu and cuda-emu', () => {
    expect(built).toContain('cpu');
    expect(built).toContain('cuda-emu');
  });

  for (const op of Object.keys(table)) {
    it(`${op} has a test`, () => {
      expect(sources.includes(`describe('op ${op}'`), `no describe('op ${op}', ...) in test/`).toBe(true);
    });
    it(`${op} is implemented on every backend built in`, () => {
      expect([...table[op]!].sort()).toEqual([...built].sort());
    });
  }
});
