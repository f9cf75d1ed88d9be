import { describe, expect, it } from 'vitest';
import { fromArray } from '../../lib/tensor.js';
import { scale } from '../../lib/ops/elementwise.js';
import * as ref from '../reference/elementwise.js';
import { acceleratorBackends, backends, checkMemoryGuards, expectClose, randomArray, rng } from '../helpers.js';

checkMemoryGuards();
const sizes = [1, 17, 127, 4099, 70_001];

describe('op scale', () => {
  for (const device of backends()) {
    it(`matches the float64 reference on ${device}`, () => {
      const random = rng();
      for (const n of sizes) {
        const x = randomArray(n, random);
        const y = scale(fromArray(x, [n], { device }), -1.75);
        expectClose(y.toArray(), ref.scale(x, -1.75), { rtol: 1e-6 }, `scale n=${n}`);
      }
    });
  }

  for (const device of acceleratorBackends()) {
    it(`${device} agrees with cpu, in place`, () => {
      const x = randomArray(1000, rng());
      const onCpu = scale(fromArray(x), 3).toArray();
      const t = fromArray(x, [1000], { device });
      expect(scale(t, 3, { out: t })).toBe(t);
      expectClose(t.toArray(), onCpu, { rtol: 0, atol: 0 }, `${device} vs cpu`);
    });
  }

  it('names the argument in errors', () => {
    expect(() => scale(fromArray([1, 2]), Number.NaN)).toThrow(/scale: alpha must be a number/);
    expect(() => scale(fromArray([1, 2], [2], { dtype: 'i32' }) as never, 2)).toThrow(/scale: x has dtype i32, expected f32/);
    expect(() => scale(fromArray([1, 2]), 2, { out: fromArray([1, 2, 3]) })).toThrow(/scale: out has shape \[3\], expected \[2\]/);
  });
});
