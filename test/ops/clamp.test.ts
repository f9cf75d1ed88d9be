import { describe, expect, it } from 'vitest';
import { clamp } from '../../lib/ops/clamp.js';
import { fromArray } from '../../lib/tensor.js';
import { acceleratorBackends, backends, checkMemoryGuards, expectClose, expectIdentical, randomArray, rng } from '../helpers.js';

checkMemoryGuards();

describe('op clamp', () => {
  for (const device of backends()) {
    it(`matches the reference on ${device} for odd sizes`, () => {
      const random = rng();
      for (const n of [1, 17, 127, 70_001]) {
        const x = randomArray(n, random, 3);
        const expected = Float64Array.from(x, (v) => Math.min(Math.max(v, -1), 1.5));
        expectClose(clamp(fromArray(x, [n], { device }), -1, 1.5).toArray(), expected, { rtol: 0, atol: 0 }, `clamp n=${n}`);
      }
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu in place`, () => {
      const x = randomArray(999, rng(), 2);
      const t = fromArray(x, [999], { device });
      clamp(t, -0.5, 0.5, { out: t });
      expectIdentical(t.toArray(), clamp(fromArray(x), -0.5, 0.5).toArray(), `${device} vs cpu`);
    });
  }

  it('rejects lo > hi and mismatched out', () => {
    expect(() => clamp(fromArray([1]), 2, 1)).toThrow(/clamp: hi must be >= lo \(2\), got 1/);
    expect(() => clamp(fromArray([1, 2]), 0, 1, { out: fromArray([1]) })).toThrow(/clamp: out has shape \[1\], expected \[2\]/);
  });
});
