import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ProgressBar } from '../../lib/cli/progress.js';

function sink(isTTY: boolean): { stream: NodeJS.WriteStream; text: () => string } {
  let text = '';
  const stream = new Writable({
    write(chunk, _encoding, done) {
      text += String(chunk);
      done();
    },
  }) as unknown as NodeJS.WriteStream;
  (stream as { isTTY: boolean }).isTTY = isTTY;
  return { stream, text: () => text };
}

describe('progress bar', () => {
  it('prints a plain line every N steps off a terminal, with loss, steps/s and ETA', () => {
    const out = sink(false);
    const bar = new ProgressBar({ total: 10, label: 'train', every: 5, stream: out.stream });
    for (let i = 0; i < 10; i++) bar.tick({ loss: 0.5 - i * 0.01 });
    const lines = out.text().trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/^train {2}\[#{12}\.{12}\] {2} 5\/10 {2}loss 0\.4600 {2}[\d.]+ steps\/s {2}ETA \d+s$/);
    expect(lines[1]).toMatch(/10\/10 {2}loss 0\.4100/);
  });

  it('redraws one line on a terminal', () => {
    const out = sink(true);
    const bar = new ProgressBar({ total: 3, stream: out.stream });
    bar.tick({ loss: 1 });
    bar.tick({ loss: 2e-5 });
    bar.finish();
    expect(out.text().split('\r')).toHaveLength(3);
    expect(out.text()).toMatch(/loss 2\.000e-5/);
    expect(out.text().endsWith('\n')).toBe(true);
    expect(() => new ProgressBar({ total: -1 })).toThrow(/total must be an integer >= 0/);
  });
});
