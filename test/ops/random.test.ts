import { describe, expect, it } from 'vitest';
import { Generator, defaultGenerator, manualSeed, rand, randn } from '../../lib/ops/random.js';
import * as ref from '../reference/random.js';
import { acceleratorBackends, backends, checkMemoryGuards, expectClose, expectIdentical } from '../helpers.js';

checkMemoryGuards();

const hex = (words: number[]): string[] => words.map((w) => w.toString(16).padStart(8, '0'));

describe('op random', () => {
  it('the reference Philox-4x32-10 reproduces the Random123 known-answer vectors', () => {
    expect(hex(ref.philox4x32_10([0, 0, 0, 0], [0, 0]))).toEqual(['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']);
    const ones = 0xffffffff;
    expect(hex(ref.philox4x32_10([ones, ones, ones, ones], [ones, ones]))).toEqual(['408f276d', '41c83b0e', 'a20bc7c6', '6d5451fd']);
    expect(hex(ref.philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]))).toEqual([
      'd16cfe09',
      '94fdcceb',
      '5001e420',
      '24126ea1',
    ]);
  });

  // Seeds and offsets above 2^32 exercise the high words of key and counter.
  const draws = [
    { seed: 1, offset: 0, n: 17 },
    { seed: 0x1234_5678_9abc, offset: 2 ** 32 - 5, n: 127 },
    { seed: 42, offset: 1000, n: 1 },
  ];

  for (const device of backends()) {
    it(`uniform matches the reference exactly and normal to rounding on ${device}`, () => {
      for (const { seed, offset, n } of draws) {
        const g = new Generator(seed, offset);
        const u = rand([n], { generator: g, low: -2, high: 3, device }).toArray();
        expectIdentical(u, Array.from({ length: n }, (_, i) => ref.uniform(seed, offset + i, -2, 3)), `uniform seed ${seed}`);
        const z = randn([n], { generator: new Generator(seed, offset), mean: 0.5, std: 2, device }).toArray();
        const expected = Array.from({ length: n }, (_, i) => ref.normal(seed, offset + i, 0.5, 2));
        expectClose(z, expected, { rtol: 1e-6, atol: 1e-6 }, `normal seed ${seed}`);
        expect(g.offset).toBe(offset + n);
      }
    });

    it(`samples have the right distribution on ${device}`, () => {
      const n = 70_001;
      const z = randn([n], { seed: 7, mean: 1, std: 3, device }).toArray();
      let s = 0;
      let ss = 0;
      for (const v of z) {
        s += v;
        ss += v * v;
      }
      const m = s / n;
      expect(Math.abs(m - 1)).toBeLessThan(0.05);
      expect(Math.abs(Math.sqrt(ss / n - m * m) - 3)).toBeLessThan(0.05);
      const u = rand([n], { seed: 7, low: 2, high: 4, device }).toArray();
      expect(u.every((v) => v >= 2 && v < 4)).toBe(true);
      expect(Math.abs(u.reduce((a, b) => a + b, 0) / n - 3)).toBeLessThan(0.01);
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} produces the same bits as cpu`, () => {
      for (const n of [1, 17, 4099]) {
        for (const kind of ['uniform', 'normal'] as const) {
          const draw = kind === 'uniform' ? rand : randn;
          const onCpu = draw([n], { generator: new Generator(99, 12_345) }).toArray();
          const onDevice = draw([n], { generator: new Generator(99, 12_345), device }).toArray();
          expectIdentical(onDevice, onCpu, `${device} ${kind} n=${n}`);
        }
      }
    });
  }

  it('element i depends only on (seed, offset + i): two draws equal one longer draw', () => {
    const g = new Generator(5);
    const first = randn([40], { generator: g }).toArray();
    const second = randn([4, 15], { generator: g }).toArray();
    const whole = randn([100], { seed: 5 }).toArray();
    expectIdentical([...first, ...second], whole, 'split draw');
  });

  it('the global generator advances, manualSeed and setState reproduce', () => {
    manualSeed(1234);
    const a = randn([8]).toArray();
    const b = randn([8]).toArray();
    expect([...a]).not.toEqual([...b]);
    const saved = defaultGenerator().state();
    const c = rand([8]).toArray();
    manualSeed(1234);
    expectIdentical(randn([8]).toArray(), a, 'after manualSeed');
    defaultGenerator().setState(saved);
    expectIdentical(rand([8]).toArray(), c, 'after setState');
    const before = defaultGenerator().state();
    expectIdentical(randn([8], { seed: 1234 }).toArray(), a, 'explicit seed');
    expect(defaultGenerator().state()).toEqual(before);
  });

  it('names the argument in errors', () => {
    expect(() => randn([2], { seed: -1 })).toThrow(/randn: seed must be an integer in \[0, 2\^53\), got -1/);
    expect(() => rand([2], { low: 1, high: 0 })).toThrow(/rand: high must be finite and >= low \(1\), got 0/);
    expect(() => randn([2], { std: -1 })).toThrow(/randn: std must be finite and >= 0, got -1/);
    expect(() => randn([2], { seed: 1, generator: new Generator() })).toThrow(/randn: pass either seed or generator, not both/);
    expect(() => new Generator(1.5)).toThrow(/Generator: seed must be an integer/);
    expect(() => rand([-1])).toThrow(/rand: shape must be an array of integers >= 0, got \[-1\]/);
  });
});
