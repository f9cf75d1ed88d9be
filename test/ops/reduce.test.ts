import { describe, expect, it } from 'vitest';
import { fromArray } from '../../lib/tensor.js';
import { expand, mean, sum } from '../../lib/ops/reduce.js';
import * as ref from '../reference/reduce.js';
import { acceleratorBackends, backends, checkMemoryGuards, expectClose, expectIdentical, numericGradient, randomArray, rng, toF64 } from '../helpers.js';

checkMemoryGuards();

interface Case {
  shape: number[];
  axes?: number | number[];
}
// Row sums, column sums, long rows and columns (the split paths), non-adjacent and negative axes.
const cases: Case[] = [
  { shape: [1] },
  { shape: [4099] },
  { shape: [17, 127], axes: 1 },
  { shape: [17, 127], axes: 0 },
  { shape: [3, 70_001], axes: -1 },
  { shape: [70_001, 3], axes: 0 },
  { shape: [2, 3, 4, 5], axes: [0, 2] },
  { shape: [2, 3, 4, 5], axes: [1, 2] },
  { shape: [4, 4099, 2], axes: 1 },
  { shape: [5, 6], axes: [] },
];
const size = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);
const axesOf = (c: Case): number[] => {
  const list = c.axes === undefined ? c.shape.map((_, i) => i) : typeof c.axes === 'number' ? [c.axes] : c.axes;
  return list.map((a) => (a < 0 ? a + c.shape.length : a));
};
/**
 * A float32 sum of n terms in [-1, 1] carries rounding error growing like sqrt(n) ulps of its
 * partial sums, and the sum itself can be small (the terms cancel): the absolute tolerance
 * grows with sqrt(n) so long reductions on a backend that accumulates in float still pass.
 */
const sumTolerance = (c: Case) => {
  const n = axesOf(c).reduce((count, axis) => count * c.shape[axis]!, 1);
  return { rtol: 1e-5, atol: Math.max(1e-5, 1e-6 * Math.sqrt(n)) };
};

describe('op reduce', () => {
  for (const device of backends()) {
    it(`sum and mean match the float64 reference on ${device}`, () => {
      const random = rng();
      for (const c of cases) {
        const x = randomArray(size(c.shape), random);
        const axes = axesOf(c);
        const kept = c.shape.map((d, i) => (axes.includes(i) ? 1 : d));
        const dropped = c.shape.filter((_, i) => !axes.includes(i));
        const t = fromArray(x, c.shape, { device });
        const s = sum(t, c.axes);
        expect(s.shape).toEqual(dropped);
        expectClose(s.toArray(), ref.reduce(x, c.shape, axes, false), sumTolerance(c), `sum ${c.shape} over ${axes}`);
        const m = mean(t, c.axes, { keepDims: true });
        expect(m.shape).toEqual(kept);
        expectClose(m.toArray(), ref.reduce(x, c.shape, axes, true), { rtol: 1e-5, atol: 1e-6 }, `mean ${c.shape} over ${axes}`);
      }
    });

    it(`empty reductions give 0 (sum) and NaN (mean) on ${device}`, () => {
      const t = fromArray([], [3, 0], { device });
      expect([...sum(t, 1).toArray()]).toEqual([0, 0, 0]);
      expect([...mean(t, 1).toArray()].every(Number.isNaN)).toBe(true);
      expect(sum(t, 0).shape).toEqual([0]);
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu`, () => {
      const random = rng();
      for (const c of cases) {
        const x = randomArray(size(c.shape), random);
        const onCpu = sum(fromArray(x, c.shape), c.axes).toArray();
        const onDevice = sum(fromArray(x, c.shape, { device }), c.axes).toArray();
        expectClose(onDevice, onCpu, sumTolerance(c), `${device} vs cpu ${c.shape}`);
      }
    });

    // Long rows and long columns with few outputs: the reduced axis is split over many blocks
    // (up to 1056), whose partial sums once met in float atomics in whatever order they finished.
    it(`gives bit-identical sums and means on two runs on ${device}`, () => {
      const random = rng();
      const split: Case[] = [
        { shape: [3, 70_001], axes: -1 },
        { shape: [70_001, 3], axes: 0 },
        { shape: [4, 4099, 2], axes: 1 },
      ];
      for (const c of split) {
        const x = fromArray(randomArray(size(c.shape), random), c.shape, { device });
        for (const reduceWith of [sum, mean]) {
          const first = reduceWith(x, c.axes).toArray();
          const second = reduceWith(x, c.axes).toArray();
          expectIdentical(second, first, `${reduceWith.name} ${c.shape} over ${c.axes}, second run vs first`);
        }
      }
    });
  }

  it('the backward of sum and mean (expand) matches finite differences', () => {
    const random = rng();
    const shape = [3, 4, 5];
    const x = toF64(randomArray(60, random));
    for (const isMean of [false, true]) {
      const dy = randomArray(15, random);
      const dx = expand(fromArray(dy, [3, 1, 5]), shape, { scale: isMean ? 1 / 4 : 1 }).toArray();
      expectClose(dx, numericGradient(() => ref.reduce(x, shape, [1], isMean), x, dy), { rtol: 1e-5, atol: 1e-6 }, `mean=${isMean}`);
    }
  });

  it('names the argument in errors', () => {
    const x = fromArray([1, 2, 3, 4, 5, 6], [2, 3]);
    expect(() => sum(x, 2)).toThrow(/sum: axis 2 is out of range for 2 dims/);
    expect(() => mean(x, [0, -2])).toThrow(/mean: axes \[0, -2\] name an axis twice/);
    expect(() => sum(x, 0.5)).toThrow(/sum: axis must be an integer/);
    expect(() => sum(fromArray([1], [1], { dtype: 'bf16' }) as never)).toThrow(/sum: x has dtype bf16, expected f32/);
  });
});

describe('op broadcast', () => {
  const expansions: Array<{ from: number[]; to: number[] }> = [
    { from: [1], to: [17] },
    { from: [3, 1], to: [3, 127] },
    { from: [1, 5], to: [4099, 5] },
    { from: [2, 1, 3, 1], to: [2, 4, 3, 5] },
    { from: [5], to: [2, 3, 5] },
    { from: [1, 1, 7], to: [70_001 % 13, 11, 7] },
    { from: [2, 3], to: [2, 3] },
  ];
  for (const device of backends()) {
    it(`expand matches the float64 reference on ${device}`, () => {
      const random = rng();
      for (const { from, to } of expansions) {
        const x = randomArray(size(from), random);
        const padded = [...Array<number>(to.length - from.length).fill(1), ...from];
        const y = expand(fromArray(x, from, { device }), to, { scale: 1.5 });
        expect(y.shape).toEqual(to);
        expectClose(y.toArray(), ref.expand(x, padded, to, 1.5), { rtol: 1e-6 }, `expand ${from} -> ${to}`);
      }
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu exactly`, () => {
      const x = randomArray(3 * 17, rng());
      const onCpu = expand(fromArray(x, [3, 1, 17]), [3, 129, 17]).toArray();
      const onDevice = expand(fromArray(x, [3, 1, 17], { device }), [3, 129, 17]).toArray();
      expectClose(onDevice, onCpu, { rtol: 0, atol: 0 }, `${device} vs cpu`);
    });
  }

  it('the backward of expand (sum over the expanded axes) matches finite differences', () => {
    const random = rng();
    const x = toF64(randomArray(6, random));
    const dy = randomArray(2 * 4 * 3 * 5, random);
    const dx = sum(fromArray(dy, [2, 4, 3, 5]), [1, 3]).toArray();
    expectClose(dx, numericGradient(() => ref.expand(x, [2, 1, 3, 1], [2, 4, 3, 5]), x, dy), { rtol: 1e-5, atol: 1e-6 }, 'dx');
  });

  it('names the argument in errors', () => {
    expect(() => expand(fromArray([1, 2], [2]), [3])).toThrow(/expand: x \[2\] cannot be expanded to \[3\]: dim 0 is 2, expected 1 or 3/);
    expect(() => expand(fromArray([1, 2], [1, 2]), [2])).toThrow(/expand: x has 2 dims, more than the 1 of shape \[2\]/);
    expect(() => expand(fromArray([1]), [-1])).toThrow(/expand: shape must be an array of integers >= 0/);
  });
});
